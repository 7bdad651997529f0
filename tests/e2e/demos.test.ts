// End to end in a real browser: headless Chromium (Debian's /usr/bin/chromium) with software
// WebGPU loads the gallery and the vector-add demo, served by `vite` and by `vite preview`
// after a build; results are read from the page (not merely "no error"). Screenshots go to
// test-results/. Each other demo has its own file beside this one.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain, launchBrowser, runDemo, startServer, type Server } from './harness.ts';

describe('gallery and vector add in Chromium', () => {
  let server: Server;
  let browser: Browser;
  beforeAll(async () => {
    server = await startServer(5191);
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
  });

  it('vector add computes a correct result on the dev server', async () => {
    const run = await runDemo(browser, `${server.url}vector-add/?n=16384`, 'vector-add-dev');
    expect(run.status, explain(run)).toBe('pass');
    expect(run.text).toBe('result: correct (16384 elements)');
    expect(run.crossOriginIsolated).toBe(true);
    await run.page.close();
  });
});

describe('a production build in Chromium', () => {
  it('vector add computes a correct result from `vite build` served by `vite preview`', async () => {
    const server = await startServer(5192, 'preview');
    const browser = await launchBrowser();
    try {
      const res = await fetch(server.url);
      expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
      const run = await runDemo(browser, `${server.url}vector-add/?n=4096`, 'vector-add-preview');
      expect(run.status, explain(run)).toBe('pass');
      expect(run.text).toBe('result: correct (4096 elements)');
    } finally {
      await browser.close();
      server.stop();
    }
  });
});
