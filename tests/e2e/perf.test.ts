// The perf page in headless Chromium: the bench runner of `npm run bench`, at a tiny size, one
// repetition. The page must finish with every goal G1-G10 measured (a finite ratio, a target,
// met or not) in its table and in window.__benchResult, and draw its plots. No timing is
// asserted: the figures themselves belong to the bench, not to a test.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain, launchBrowser, runDemo, startServer, type Server } from './harness.ts';

describe('perf page in Chromium', () => {
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

  it('measures all ten goals and shows them with plots', async () => {
    const run = await runDemo(browser, `${server.url}perf/?mib=1&reps=1&only=goals`, 'perf', { timeoutMs: 280_000 });
    expect(run.status, explain(run)).toBe('pass');
    const page = await run.page.evaluate(() => ({
      json: window.__benchResult ?? '',
      rows: document.querySelectorAll('#goals tr').length,
      plots: document.querySelectorAll('.uplot').length,
    }));
    const result = JSON.parse(page.json) as { goals: Record<string, { ratio: number; target: string | number; met: boolean }>; adapter: unknown };
    for (let g = 1; g <= 10; g++) {
      const goal = result.goals[`g${g}`];
      expect(goal, `goal g${g}`).toBeDefined();
      expect(Number.isFinite(goal!.ratio), `g${g} ratio ${goal!.ratio}`).toBe(true);
      expect(typeof goal!.met).toBe('boolean');
    }
    expect(result.adapter).toBeTruthy();
    expect(page.rows).toBeGreaterThanOrEqual(11); // a header and ten goals
    expect(page.plots).toBeGreaterThan(0);
    await run.page.close();
  });

  it('is linked from the gallery', async () => {
    const page = await browser.newPage();
    await page.goto(server.url);
    const links = await page.evaluate(() => [...document.querySelectorAll('.gallery a')].map((a) => a.getAttribute('href')));
    await page.close();
    expect(links).toContain('./perf/');
  });
});
