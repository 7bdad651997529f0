// The Policy lab page in headless Chromium: it loads ready with no console errors and offers the
// built-ins, every examples/policies/ module and the editor; running a built-in and an example
// side by side fills both rows with figures, the bar plots and both residency maps; a click on a
// page of a map shows its sys.explain history with causes; a bad policy in the editor shows its
// error under the editor (before a run, or while running) and the page keeps working. Every wait
// is for a condition on the page. Screenshots go to test-results/.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SHOTS, launchBrowser, startServer, type Server } from './harness.ts';

const FINAL = '#result[data-status="pass"], #result[data-status="fail"], #result[data-status="error"]';

/** A lab page with its console collected; waits until the page says it is ready (or ran). */
async function openLab(browser: Browser, url: string, width = 1280): Promise<{ page: Page; lines: string[]; errors: () => string[] }> {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  const lines: string[] = [];
  page.on('console', (m) => lines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[pageerror] ${e.stack ?? e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) lines.push(`[http ${r.status()}] ${r.url()}`);
  });
  await page.goto(url);
  return { page, lines, errors: () => lines.filter((l) => /^\[(error|pageerror|http)/.test(l)) };
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Tick exactly these policy sets. */
async function pick(page: Page, ids: string[]): Promise<void> {
  await page.evaluate((want) => {
    for (const box of document.querySelectorAll<HTMLInputElement>('input[name=policy]')) box.checked = want.includes(box.value);
  }, ids);
}

const result = (page: Page) =>
  page.evaluate(() => ({ status: document.getElementById('result')!.dataset.status!, text: document.getElementById('result')!.textContent! }));

const rows = (page: Page) =>
  page.evaluate(() =>
    [...document.querySelectorAll<HTMLTableRowElement>('#runs tbody tr')].map((tr) => ({
      data: { ...tr.dataset } as Record<string, string>,
      cells: [...tr.children].map((c) => c.textContent ?? ''),
    })),
  );

describe('policy lab in Chromium', () => {
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
    expect(await (await fetch(server.url)).text()).toContain('href="./policy-lab/"');
  });

  it('runs a built-in and an example side by side: rows, plots, maps, and a page explained', async () => {
    const { page, lines, errors } = await openLab(browser, `${server.url}policy-lab/`);
    try {
      await page.waitForSelector('#result[data-status="idle"]');
      const ready = await page.evaluate(() => ({
        isolated: globalThis.crossOriginIsolated,
        env: document.getElementById('env')!.className,
        choices: [...document.querySelectorAll<HTMLInputElement>('input[name=policy]')].map((i) => i.value),
        workloads: [...document.querySelectorAll<HTMLOptionElement>('#workload option')].map((o) => o.value),
      }));
      expect(ready.isolated).toBe(true);
      expect(ready.env).toContain('env-ok');
      expect(ready.choices).toEqual(expect.arrayContaining(['built-in', 'no-prefetch', 'stride', 'lru', 'accessCount', 'editor']));
      expect(ready.workloads).toEqual(['stream', 'chase', 'strided']);

      await page.selectOption('#workload', 'strided');
      await pick(page, ['built-in', 'stride']);
      await page.click('#run');
      await page.waitForSelector(FINAL, { timeout: 240_000 });
      await shot(page, 'policy-lab-strided');
      const r = await result(page);
      expect(r.status, `${r.text}\n${lines.join('\n')}`).toBe('pass');
      expect(page.url()).toContain('workload=strided');

      const table = await rows(page);
      expect(table.map((x) => x.data.policy)).toEqual(['built-in', 'stride']);
      for (const { data, cells } of table) {
        expect(data.status, cells.join(' | ')).toBe('pass');
        for (const k of ['ms', 'faultRounds', 'launches', 'pagesMoved', 'bytesMoved']) expect(Number(data[k]), `${data.policy} ${k}`).toBeGreaterThan(0);
        expect(Number.isInteger(Number(data.evictions))).toBe(true);
        // every figure column shows a number
        for (const c of cells.slice(2, 9)) expect(c, cells.join(' | ')).toMatch(/^[\d.,]+( ms| KiB| MiB)?$/);
        expect(cells[9]).toBe('correct');
      }
      const [builtIn, stride] = table.map((x) => x.data);
      // the stride prefetcher sees the walk and brings the next launches' pages: fewer rounds, and pages prefetched
      expect(Number(stride!.prefetchedPages)).toBeGreaterThan(0);
      expect(Number(stride!.faultRounds)).toBeLessThan(Number(builtIn!.faultRounds));

      const shown = await page.evaluate(() => ({
        plots: [...document.querySelectorAll('#plot figure')].map((f) => f.querySelectorAll('rect').length),
        maps: [...document.querySelectorAll<HTMLElement>('.lab-map')].map((m) => ({
          policy: m.dataset.policy,
          counts: JSON.parse(m.querySelector<HTMLElement>('.residency-map')!.dataset.counts!) as Record<string, number>,
          canvases: m.querySelectorAll('canvas.map-canvas').length,
        })),
      }));
      expect(shown.plots).toHaveLength(5);
      expect(shown.plots[0]).toBe(2); // a time bar per set
      expect(shown.maps.map((m) => m.policy)).toEqual(['built-in', 'stride']);
      for (const m of shown.maps) {
        expect(m.canvases).toBe(1);
        expect(Object.values(m.counts).reduce((a, b) => a + b, 0)).toBe(256); // the region's pages
        expect(m.counts.device, m.policy).toBeGreaterThan(0); // the walk's pages stayed on the device
      }

      // a click on the first page of the stride map: its history, with causes
      await page.locator('.lab-map[data-policy="stride"] canvas.map-canvas').click({ position: { x: 2, y: 2 } });
      await page.waitForSelector('#explain[data-policy="stride"] #explain-history li');
      const story = await page.evaluate(() => ({
        title: document.querySelector('#explain h3')!.textContent!,
        now: document.getElementById('explain')!.dataset.now,
        items: [...document.querySelectorAll<HTMLElement>('#explain-history li')].map((li) => ({
          cause: li.dataset.cause,
          move: li.dataset.move,
          text: li.textContent!,
        })),
      }));
      expect(story.title).toMatch(/^stride: data page 0 \(0x1000000\), now device$/);
      expect(story.now).toBe('device');
      expect(story.items[0]).toMatchObject({ cause: 'gpu-fault', move: 'to-device' });
      expect(story.items[0]!.text).toContain("GPU fault: kernel 'strided' (dispatch");
      expect(story.items[0]!.text).toContain('placement advice: migrate');

      // and one on the built-in map: the same page, its own system's history
      await page.locator('.lab-map[data-policy="built-in"] canvas.map-canvas').click({ position: { x: 2, y: 2 } });
      await page.waitForSelector('#explain[data-policy="built-in"] #explain-history li');
      expect(await page.evaluate(() => document.querySelector('#explain h3')!.textContent)).toMatch(/^built-in: data page 0/);

      expect(errors(), lines.join('\n')).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('a bad policy in the editor shows its error under the editor, and the page keeps working', async () => {
    const { page, lines, errors } = await openLab(browser, `${server.url}policy-lab/`);
    try {
      await page.waitForSelector('#result[data-status="idle"]');
      await page.selectOption('#workload', 'chase');

      // not a policy set: refused before anything runs
      await page.fill('#editor', "export default { name: 'typo', evict: { name: 'e', victims: () => [] } };");
      await pick(page, ['editor']);
      await page.click('#run');
      await page.waitForSelector('#result[data-status="error"]');
      expect(await page.isVisible('#editor-error')).toBe(true);
      expect(await page.textContent('#editor-error')).toBe(
        "the editor: the default export is not a PolicySet: 'evict' is not a policy kind (a set holds name and any of prefetch, eviction, placement, batching)",
      );
      expect(await page.locator('#runs tbody tr').count()).toBe(0);

      // a syntax error, through the Check button
      await page.fill('#editor', 'export default { name: ');
      await page.click('#editor-check');
      await page.waitForFunction(() => /does not load: SyntaxError/.test(document.getElementById('editor-error')!.textContent ?? ''));

      // a valid set passes the check
      await page.click('#editor-reset');
      await page.click('#editor-check');
      await page.waitForFunction(() => (document.getElementById('editor-status')!.textContent ?? '').startsWith("ok: 'next8'"));
      expect(await page.isVisible('#editor-error')).toBe(false);

      // a set that throws while it runs: its row fails naming it; the built-in beside it runs right
      await page.fill('#editor', "export default { name: 'thrower', prefetch: { name: 'boom', select() { throw new Error('no luck'); } } };");
      await pick(page, ['built-in', 'editor']);
      await page.click('#run');
      await page.waitForSelector(FINAL, { timeout: 240_000 });
      await shot(page, 'policy-lab-editor-error');
      const r = await result(page);
      expect(r.status, r.text).toBe('fail');
      const table = await rows(page);
      expect(table.map((x) => [x.data.policy, x.data.status])).toEqual([
        ['built-in', 'pass'],
        ['editor', 'error'],
      ]);
      expect(table[1]!.cells[0]).toBe('thrower (editor)');
      expect(table[1]!.cells[9]).toContain("prefetch policy 'boom' threw in dispatch 'chase' round 1: no luck");
      expect(await page.textContent('#editor-error')).toContain("while running: EINVAL: prefetch policy 'boom' threw");
      expect(Number(table[0]!.data.faultRounds)).toBeGreaterThan(0);

      // the page still works: the built-in alone, again
      await pick(page, ['built-in']);
      await page.click('#run');
      // done when the table holds the one new row and the result is final (the last run had two rows)
      await page.waitForFunction(
        () =>
          document.querySelectorAll('#runs tbody tr').length === 1 && ['pass', 'fail', 'error'].includes(document.getElementById('result')!.dataset.status!),
        undefined,
        { timeout: 240_000 },
      );
      expect((await result(page)).status).toBe('pass');
      expect(await page.isVisible('#editor-error')).toBe(true); // the editor's last error stays until it is checked again
      expect(errors(), lines.join('\n')).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('runs from the URL at a phone width without horizontal overflow', async () => {
    const { page, lines, errors } = await openLab(browser, `${server.url}policy-lab/?workload=chase&policies=no-prefetch,accessCount`, 390);
    try {
      await page.waitForSelector(FINAL, { timeout: 240_000 });
      await shot(page, 'policy-lab-phone');
      const r = await result(page);
      expect(r.status, `${r.text}\n${lines.join('\n')}`).toBe('pass');
      const table = await rows(page);
      expect(table.map((x) => x.data.policy)).toEqual(['no-prefetch', 'accessCount']);
      // access-count placement copies the table for its first faults: fewer pages moved than migrating it
      expect(Number(table[1]!.data.pagesMoved)).toBeLessThan(Number(table[0]!.data.pagesMoved));
      const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: innerWidth }));
      expect(widths.scroll, JSON.stringify(widths)).toBeLessThanOrEqual(widths.inner);
      expect(errors(), lines.join('\n')).toEqual([]);
    } finally {
      await page.close();
    }
  });
});
