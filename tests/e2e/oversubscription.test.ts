// The oversubscription demo in headless Chromium: a 2 MiB working set through a 1 MiB device
// completes byte for byte with every eviction unit, evicts, moves more bytes than the device
// holds, and its live plot gathered points while it ran. Screenshots go to test-results/.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain, launchBrowser, runDemo, startServer, type Server } from './harness.ts';

describe('oversubscription demo in Chromium', () => {
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

  it('is linked from the gallery', async () => {
    expect(await (await fetch(server.url)).text()).toContain('href="./oversubscription/"');
  });

  const cases = [
    { evict: 4096, prefetch: 'on', width: 1280 },
    { evict: 65536, prefetch: 'on', width: 1280 },
    { evict: 2097152, prefetch: 'on', width: 390 }, // a phone's width
    { evict: 65536, prefetch: 'off', width: 1280 },
  ];
  for (const c of cases) {
    it(`streams 2x the device with ${c.evict / 1024} KiB eviction units, prefetch ${c.prefetch}`, async () => {
      const shot = `oversubscription-${c.evict / 1024}k-prefetch-${c.prefetch}`;
      const run = await runDemo(browser, `${server.url}oversubscription/?evict=${c.evict}&prefetch=${c.prefetch}`, shot, { width: c.width });
      try {
        expect(run.status, explain(run)).toBe('pass');
        expect(run.text).toMatch(/^result: correct/);
        const d = run.data;
        expect(d.granularity).toBe(String(c.evict));
        expect(d.prefetch).toBe(c.prefetch);
        expect(Number(d.workingSetBytes)).toBe(2 * Number(d.deviceBytes));
        expect(Number(d.evictions)).toBeGreaterThan(0);
        expect(Number(d.bytesMoved)).toBeGreaterThan(Number(d.deviceBytes));
        expect(Number(d.faults)).toBeGreaterThan(0);
        if (c.prefetch === 'off') expect(Number(d.prefetchedPages)).toBe(0);
        // the live plot: one point at the start, one per launch, one at the end at least
        expect(Number(d.samples)).toBeGreaterThanOrEqual(Number(d.launches) + 2);
        const plotted = await run.page.evaluate(() => document.querySelectorAll('#chart canvas').length);
        expect(plotted).toBeGreaterThan(0);
        // the residency map ended with every page home in RAM (the CPU read them all)
        expect(run.residency?.ram).toBe(512);
        // the page fits a phone: nothing wider than the viewport
        const overflow = await run.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        expect(overflow).toBeLessThanOrEqual(0);
        console.log(`oversubscription ${c.evict / 1024} KiB, prefetch ${c.prefetch}: ${JSON.stringify(d)}`);
      } finally {
        await run.page.close();
      }
    });
  }
});
