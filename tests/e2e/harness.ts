// The end-to-end harness: Vite and headless Chromium with software WebGPU come from
// src/bench/headless.ts (the bench's --browser mode uses the same); this opens a demo, waits
// for its #result to settle and reads it back with the page's own data-* attributes. Every
// page gets a screenshot under test-results/.

import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, startVite, type ViteServer } from '../../src/bench/headless.ts';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHOTS = join(repo, 'test-results');

export type Server = ViteServer;

/**
 * `vite` (dev) or `vite build` + `vite preview`, cross-origin isolated, on a port the system
 * picks: a fixed one fails when another copy of the suite (or any server) already has it.
 */
export function startServer(mode: 'dev' | 'preview' = 'dev'): Promise<Server> {
  return startVite({ port: 0, mode });
}

export const launchBrowser = launchChromium;

export interface DemoRun {
  status: string;
  text: string;
  /** The #result element's data-* attributes (a demo puts its checked figures there). */
  data: Record<string, string>;
  crossOriginIsolated: boolean;
  /** The residency map's last counts (data-counts), when the page has one. */
  residency?: Record<string, number>;
  /** Console lines, page errors and failed requests, for failure messages. */
  console: string[];
  page: Page;
}

/**
 * Open url, wait until #result has a final data-status (pass, fail or error), screenshot the
 * page to test-results/<shot>.png and return what it says. The page stays open for more checks
 * (the caller closes it).
 */
export async function runDemo(browser: Browser, url: string, shot: string, opts: { width?: number; timeoutMs?: number } = {}): Promise<DemoRun> {
  const page = await browser.newPage({ viewport: { width: opts.width ?? 1280, height: 900 } });
  const lines: string[] = [];
  page.on('console', (m) => lines.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`[pageerror] ${e.stack ?? e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) lines.push(`[http ${r.status()}] ${r.url()}`);
  });
  await page.goto(url);
  try {
    await page.waitForSelector('#result[data-status="pass"], #result[data-status="fail"], #result[data-status="error"]', {
      timeout: opts.timeoutMs ?? 240_000,
    });
  } finally {
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, `${shot}.png`), fullPage: true });
  }
  const read = await page.evaluate(() => {
    const r = document.getElementById('result');
    const map = document.querySelector<HTMLElement>('.residency-map[data-counts]');
    return {
      status: r?.dataset.status ?? '',
      text: r?.textContent ?? '',
      data: { ...(r?.dataset ?? {}) } as Record<string, string>,
      crossOriginIsolated: globalThis.crossOriginIsolated,
      residency: map ? (JSON.parse(map.dataset.counts!) as Record<string, number>) : undefined,
    };
  });
  return { ...read, console: lines, page };
}

/** A failure message that carries what the page said and logged. */
export function explain(run: DemoRun): string {
  return `#result [${run.status}]: ${run.text}\nconsole:\n  ${run.console.join('\n  ')}`;
}
