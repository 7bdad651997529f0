// The ping-pong demo in headless Chromium: the CPU and the GPU take turns on the same pages
// under every setting of thrashing detection and read duplication; every turn's data is
// right, thrashing detection finds the bouncing pages and cuts migrations, and read
// duplication cuts them too. Screenshots go to test-results/.
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { explain, launchBrowser, runDemo, startServer, type Server } from './harness.ts';

describe('ping-pong demo in Chromium', () => {
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
    expect(await (await fetch(server.url)).text()).toContain('href="./ping-pong/"');
  });

  it('runs all four settings side by side with the data right after every turn', async () => {
    const run = await runDemo(browser, `${server.url}ping-pong/`, 'ping-pong');
    try {
      expect(run.status, explain(run)).toBe('pass');
      const d = run.data;
      expect(d.settings).toBe('plain,thrash,dup,both');
      const n = (name: string): number => Number(d[name]);
      for (const key of ['Plain', 'Thrash', 'Dup', 'Both']) expect(n(`turnsRight${key}`)).toBe(n('turns'));
      // without any help, every page moves both ways every turn
      expect(n('migrationsPlain')).toBeGreaterThanOrEqual(n('turns') * 2 * 8);
      expect(n('thrashEventsPlain')).toBe(0);
      // thrashing detection pins the bouncing pages: fewer migrations, the GPU uses copies
      expect(n('thrashEventsThrash')).toBeGreaterThan(0);
      expect(n('migrationsThrash')).toBeLessThan(n('migrationsPlain'));
      expect(n('deviceCopiesThrash')).toBeGreaterThan(0);
      // read duplication keeps `in` in RAM from the start
      expect(n('migrationsDup')).toBeLessThan(n('migrationsPlain'));
      expect(n('deviceCopiesDup')).toBeGreaterThan(0);
      expect(n('migrationsBoth')).toBeLessThan(n('migrationsDup'));
      // every setting's card says its turns were right
      const cards = await run.page.evaluate(() => [...document.querySelectorAll<HTMLElement>('.setting .turn-line')].map((e) => e.dataset.status));
      expect(cards).toEqual(['pass', 'pass', 'pass', 'pass']);
      console.log(`ping-pong: ${JSON.stringify(d)}`);
    } finally {
      await run.page.close();
    }
  });

  it('runs one setting from the form, at a phone width', async () => {
    const run = await runDemo(browser, `${server.url}ping-pong/?thrashing=on&duplication=off`, 'ping-pong-phone', { width: 390 });
    try {
      expect(run.status, explain(run)).toBe('pass');
      expect(run.data.settings).toBe('thrash');
      expect(Number(run.data.turnsRightThrash)).toBe(Number(run.data.turns));
      expect(Number(run.data.thrashEventsThrash)).toBeGreaterThan(0);
      const overflow = await run.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow).toBeLessThanOrEqual(0);
    } finally {
      await run.page.close();
    }
  });
});
