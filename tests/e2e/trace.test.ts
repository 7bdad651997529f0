// The trace demo in headless Chromium: a small workload runs with the TraceLog on, the page
// draws its timeline and per-kind totals, and the download button gives Chrome trace-event
// JSON that parses here, with every kind the workload must produce. Screenshots go to
// test-results/.
import { readFile } from 'node:fs/promises';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain, launchBrowser, runDemo, startServer, type Server } from './harness.ts';

const KINDS = ['kernel', 'gpu-fault-round', 'prefetch', 'migrate-to-device', 'evict', 'migrate-to-system', 'cpu-fault', 'thrash'];

interface ChromeTrace {
  traceEvents: { name: string; ph: string; ts: number; dur?: number; tid: number; args?: Record<string, unknown> }[];
  displayTimeUnit: string;
}

describe('trace demo in Chromium', () => {
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
    expect(await (await fetch(server.url)).text()).toContain('href="./trace/"');
  });

  it('draws the timeline and downloads a Perfetto trace with every expected kind', async () => {
    const run = await runDemo(browser, `${server.url}trace/`, 'trace');
    try {
      expect(run.status, explain(run)).toBe('pass');
      const d = run.data;
      const events = Number(d.events);
      expect(events).toBeGreaterThan(0);
      expect(Number(d.exportEvents)).toBe(events);
      expect(Number(d.flowEvents)).toBeGreaterThan(0); // fault rounds linked to the moves they caused
      expect(Number(d.flowEvents) % 2).toBe(0); // each flow starts and finishes
      expect(Number(d.counterEvents)).toBeGreaterThan(0); // resident pages, bytes moved
      for (const k of KINDS) expect(d.kinds!.split(','), `kind ${k}`).toContain(k);

      // the timeline drew every event, one lane per kind
      const canvas = await run.page.evaluate(() => {
        const c = document.querySelector<HTMLCanvasElement>('#timeline canvas');
        return { events: c?.dataset.events, lanes: c?.dataset.lanes, height: c?.clientHeight ?? 0 };
      });
      expect(Number(canvas.events)).toBe(events);
      for (const k of KINDS) expect(canvas.lanes!.split(',')).toContain(k);
      expect(canvas.height).toBeGreaterThan(KINDS.length * 20);
      const totals = await run.page.evaluate(() => document.querySelectorAll('#totals tbody tr').length);
      expect(totals).toBe(canvas.lanes!.split(',').length);

      // the download is the Chrome trace-event JSON
      const [download] = await Promise.all([run.page.waitForEvent('download'), run.page.click('#download')]);
      expect(download.suggestedFilename()).toBe('webgpu-hmm-trace.json');
      const trace = JSON.parse(await readFile((await download.path())!, 'utf8')) as ChromeTrace;
      expect(Array.isArray(trace.traceEvents)).toBe(true);
      const real = trace.traceEvents.filter((e) => e.ph === 'X' || e.ph === 'i'); // flows and counters are extra
      expect(real.length).toBe(events);
      const names = new Set(real.map((e) => e.name));
      for (const k of KINDS) expect([...names], `kind ${k} in the download`).toContain(k);
      // spans are complete events with a duration, instants are thread-scoped; lanes are named
      expect(real.filter((e) => e.name === 'migrate-to-device').every((e) => e.ph === 'X' && typeof e.dur === 'number')).toBe(true);
      expect(real.filter((e) => e.name === 'thrash').every((e) => e.ph === 'i')).toBe(true);
      const lanes = trace.traceEvents.filter((e) => e.name === 'thread_name').map((e) => e.args?.name);
      expect(lanes).toEqual(expect.arrayContaining(['cpu', 'gpu0']));
      const counts = Object.fromEntries([...names].map((n) => [n, real.filter((e) => e.name === n).length]));
      console.log(`trace: ${events} events; per kind ${JSON.stringify(counts)}`);
    } finally {
      await run.page.close();
    }
  });

  it('fits a phone screen', async () => {
    const run = await runDemo(browser, `${server.url}trace/`, 'trace-phone', { width: 390 });
    try {
      expect(run.status, explain(run)).toBe('pass');
      const overflow = await run.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow).toBeLessThanOrEqual(0);
    } finally {
      await run.page.close();
    }
  });
});
