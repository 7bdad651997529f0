// End to end in a real browser: headless Chromium (Debian's /usr/bin/chromium) with software
// WebGPU loads the gallery and the vector-add demo, served by `vite` and by `vite preview`
// after a build; results are read from the page (not merely "no error"), at a laptop and a
// phone width, and the page without cross-origin isolation must say so. Screenshots go to
// test-results/. Each other demo has its own file beside this one.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SHOTS, explain, launchBrowser, runDemo, startServer, type Server } from './harness.ts';

describe('gallery and vector add in Chromium', () => {
  let server: Server;
  let browser: Browser;
  beforeAll(async () => {
    server = await startServer();
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    server?.stop();
  });

  it('serves the gallery cross-origin isolated, with WebGPU, linking every demo', async () => {
    const res = await fetch(server.url);
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    const page = await browser.newPage();
    await page.goto(server.url);
    const g = await page.evaluate(() => ({
      isolated: globalThis.crossOriginIsolated,
      env: document.getElementById('env')?.className ?? '',
      links: [...document.querySelectorAll('.gallery a')].map((a) => a.getAttribute('href')),
    }));
    await page.close();
    expect(g.isolated).toBe(true);
    expect(g.env).toContain('env-ok');
    expect(g.links).toContain('./vector-add/');
    expect(g.links).toContain('./pointers/');
  });

  it('vector add: fault-driven, validated and explicit copies all compute c = a + b correctly', async () => {
    const run = await runDemo(browser, `${server.url}vector-add/?n=16384`, 'vector-add-dev');
    expect(run.status, explain(run)).toBe('pass');
    expect(run.text).toBe('result: all three correct (16384 elements)');
    expect(run.crossOriginIsolated).toBe(true);
    // One checked figure per strategy, and a timing for each.
    expect(run.data).toMatchObject({ faultDriven: 'correct', validated: 'correct', explicitCopies: 'correct', n: '16384', pagesPerArray: '16' });
    for (const key of ['faultDrivenMs', 'validatedMs', 'explicitCopiesMs']) expect(Number(run.data[key]), key).toBeGreaterThan(0);
    expect(Number(run.data.faultDrivenFaultRounds), 'the fault-driven run faulted its pages in').toBeGreaterThan(0);
    // The side-by-side table says the same: its result row, one cell per strategy.
    const table = await run.page.evaluate(() => {
      const rows = [...document.querySelectorAll('#comparison tr')].map((tr) => [...tr.children].map((c) => c.textContent?.trim()));
      return { head: rows[0], result: rows.find((r) => r[0] === 'result') };
    });
    expect(table.head).toEqual(['step', 'fault-driven', 'validated', 'explicit copies']);
    expect(table.result).toEqual(['result', 'correct', 'correct', 'correct']);
    // The live map at the end: a and b of both HMM strategies stay on the GPU (4 arrays of 16
    // pages); c of both came home when the CPU read it (2 arrays).
    expect(run.residency, explain(run)).toEqual({ device: 4 * 16, ram: 2 * 16 });
    await run.page.close();
  });

  it('vector add runs at a phone width (390 px) without horizontal overflow', async () => {
    const run = await runDemo(browser, `${server.url}vector-add/?n=4096`, 'vector-add-phone', { width: 390 });
    expect(run.status, explain(run)).toBe('pass');
    const widths = await run.page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: innerWidth }));
    expect(widths.scroll, JSON.stringify(widths)).toBeLessThanOrEqual(widths.inner);
    await run.page.close();
  });

  it('says clearly when the page is not cross-origin isolated, and ends in an error, not a crash', async () => {
    const page = await browser.newPage();
    // Serve the real responses, minus the COOP/COEP headers that make the page isolated.
    await page.route('**/*', async (route) => {
      const response = await route.fetch();
      const headers = { ...response.headers() };
      delete headers['cross-origin-opener-policy'];
      delete headers['cross-origin-embedder-policy'];
      await route.fulfill({ response, headers });
    });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}vector-add/?n=4096`);
    await page.waitForSelector('#result[data-status="error"]', { timeout: 60_000 });
    const seen = await page.evaluate(() => ({
      isolated: globalThis.crossOriginIsolated,
      env: document.getElementById('env')?.textContent ?? '',
      envClass: document.getElementById('env')?.className ?? '',
      result: document.getElementById('result')?.textContent ?? '',
    }));
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'vector-add-not-isolated.png'), fullPage: true });
    await page.close();
    expect(seen.isolated).toBe(false);
    expect(seen.envClass).toContain('env-bad');
    expect(seen.env).toContain('This page is not cross-origin isolated.');
    expect(seen.env).toContain('Cross-Origin-Embedder-Policy');
    expect(seen.result).toBe('error: this page cannot run here (see above)');
    expect(errors).toEqual([]);
  });
});

describe('a production build in Chromium', () => {
  it('vector add computes a correct result from `vite build` served by `vite preview`', async () => {
    const server = await startServer('preview');
    const browser = await launchBrowser();
    try {
      const res = await fetch(server.url);
      expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
      const run = await runDemo(browser, `${server.url}vector-add/?n=4096`, 'vector-add-preview');
      expect(run.status, explain(run)).toBe('pass');
      expect(run.text).toBe('result: all three correct (4096 elements)');
      await run.page.close();
      // The pointers demo's worker is a separate bundle in a build: it must load there too.
      const pointers = await runDemo(browser, `${server.url}pointers/?structure=list&nodes=1024`, 'pointers-preview');
      expect(pointers.status, explain(pointers)).toBe('pass');
      expect(pointers.data.gpuAnswer).toBe(pointers.data.cpuAnswer);
      await pointers.page.close();
    } finally {
      await browser.close();
      server.stop();
    }
  });
});
