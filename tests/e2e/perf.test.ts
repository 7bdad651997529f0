// The perf page in headless Chromium: the bench runner of `npm run bench`, at the tiny test
// size, one repetition, goals and workloads. The page must finish with every goal G1-G12
// measured (a finite figure, a target, met or not) in its table and in window.__benchResult,
// show where the time goes (the phase table, the matrix's G5 column and their stacked bars),
// and draw its plots. No timing is asserted: the figures themselves belong to the bench.
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

  it('measures all twelve goals and where the time goes, and shows them with plots', async () => {
    const run = await runDemo(browser, `${server.url}perf/?mib=0.25&reps=1`, 'perf', { timeoutMs: 280_000 });
    expect(run.status, explain(run)).toBe('pass');
    const page = await run.page.evaluate(() => ({
      json: window.__benchResult ?? '',
      goalRows: document.querySelectorAll('#goals table.bench-goals tr.goal').length,
      thpRows: document.querySelectorAll('#goals table.bench-thp tbody tr').length,
      hostRows: document.querySelectorAll('#goals table.bench-host tbody tr').length,
      phaseRows: document.querySelectorAll('#phases table.bench-phases tbody tr').length,
      g5Rows: document.querySelectorAll('#phases table.bench-g5 tbody tr').length,
      plots: document.querySelectorAll('.uplot').length,
      captions: [...document.querySelectorAll('figure.bench-plot figcaption')].map((c) => c.textContent ?? ''),
    }));
    const result = JSON.parse(page.json) as {
      goals: Record<string, { ratio: number; target: string | number; met: boolean; error?: string; info?: Record<string, unknown> }>;
      adapter: unknown;
      runtime: string;
      workloads: { strategy: string; phaseShares?: Record<string, number> }[];
      g5Matrix: unknown[];
    };
    expect(result.runtime).toBe('browser');
    for (let g = 1; g <= 12; g++) {
      const goal = result.goals[`g${g}`];
      expect(goal, `goal g${g}`).toBeDefined();
      expect(goal!.error, `g${g}`).toBeUndefined();
      expect(Number.isFinite(goal!.ratio), `g${g} ratio ${goal!.ratio}`).toBe(true);
      expect(typeof goal!.met).toBe('boolean');
    }
    expect(['gpu-timestamps', 'host']).toContain(result.goals.g10!.info!.timing);
    expect(result.adapter).toBeTruthy();
    expect(page.goalRows).toBe(12);
    expect(page.thpRows).toBeGreaterThan(0);
    expect(page.hostRows).toBe(10); // G11: nine phases and the host total
    expect(page.phaseRows).toBe(result.workloads.filter((c) => c.phaseShares).length);
    expect(page.g5Rows).toBe(result.g5Matrix.length);
    expect(page.g5Rows).toBe(5); // triad, three gathers, stencil
    expect(page.captions).toContain('Where the time goes: phases as a share of each run');
    expect(page.plots).toBeGreaterThanOrEqual(3); // goals, workload times, phase shares
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
