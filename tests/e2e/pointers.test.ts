// End to end: the pointer-structures demo in headless Chromium with software WebGPU. A Web
// Worker builds each structure with virtual-address pointers, a replayable GPU kernel
// traverses it, and the worker checks it on the CPU; the page must pass with the GPU's answer
// equal to the CPU's, both read from #result's data-* attributes. Screenshots go to test-results/.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain, launchBrowser, runDemo, startServer, type Server } from './harness.ts';

describe('pointer structures in Chromium', () => {
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

  // Each structure's answer in words, as the page writes it (the numbers depend on the seed).
  const answers = {
    list: /^head rank 1023, Σ ranks 523776$/, // ranks 0..1023 on a 1,024-node list
    tree: /^max depth \d+, Σ path sums \d+$/,
    graph: /^reached \d+ of 1024 nodes, deepest level \d+, Σ levels \d+$/,
  };

  for (const [structure, answer] of Object.entries(answers)) {
    it(`${structure}: the GPU's traversal matches the CPU's`, async () => {
      const run = await runDemo(browser, `${server.url}pointers/?structure=${structure}&nodes=1024&seed=7`, `pointers-${structure}`);
      expect(run.status, explain(run)).toBe('pass');
      expect(run.crossOriginIsolated).toBe(true);
      expect(run.data.structure).toBe(structure);
      expect(run.data.gpuAnswer, explain(run)).toMatch(answer);
      expect(run.data.gpuAnswer).toBe(run.data.cpuAnswer);
      expect(run.data.mismatches).toBe('0');
      // The page shows the same answers in its text.
      const shown = await run.page.evaluate(() => ({
        gpu: document.getElementById('gpu-answer')?.textContent,
        cpu: document.getElementById('cpu-answer')?.textContent,
      }));
      expect(shown).toEqual({ gpu: run.data.gpuAnswer, cpu: run.data.cpuAnswer });
      // Nothing was moved before the kernel ran: the pool faulted in on the GPU, in rounds.
      expect(Number(run.data.faultRounds)).toBeGreaterThan(0);
      expect(Number(run.data.faultedPages)).toBeGreaterThanOrEqual(32); // at least the 32 pool pages
      // The CPU check touched every node, so the pool and node table ended in system RAM.
      expect(run.residency?.ram, explain(run)).toBe(33);
      await run.page.close();
    });
  }

  it('runs without prefetch at a phone width (390 px), without horizontal overflow', async () => {
    const run = await runDemo(browser, `${server.url}pointers/?structure=graph&nodes=1024&prefetch=off`, 'pointers-phone', { width: 390 });
    expect(run.status, explain(run)).toBe('pass');
    expect(run.data.gpuAnswer).toBe(run.data.cpuAnswer);
    const widths = await run.page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: innerWidth }));
    expect(widths.scroll, JSON.stringify(widths)).toBeLessThanOrEqual(widths.inner);
    await run.page.close();
  });

  it('rejects a bad query with a readable error', async () => {
    const run = await runDemo(browser, `${server.url}pointers/?structure=heap`, 'pointers-bad-query');
    expect(run.status).toBe('error');
    expect(run.text).toContain('?structure=heap');
    await run.page.close();
  });
});
