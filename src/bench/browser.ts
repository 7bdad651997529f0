// `npm run bench -- --browser`: the same suite in headless Chromium (headless.ts starts Vite
// and the browser). Opens the perf page with the CLI's options as URL parameters, follows its
// progress through the console, and reads the BenchResult the page leaves in
// window.__benchResult. Node only; the runner never imports it.

import type { Browser } from 'playwright-core';
import type { BenchOptions } from './args.ts';
import { launchChromium, startVite } from './headless.ts';
import type { BenchResult, Progress } from './runner.ts';

/** The perf page's query string for these options. */
export function perfQuery(opts: BenchOptions): string {
  const q = new URLSearchParams();
  q.set('quick', opts.quick ? '1' : '0');
  if (opts.mib !== undefined) q.set('mib', String(opts.mib));
  if (opts.reps !== undefined) q.set('reps', String(opts.reps));
  if (opts.warmup !== undefined) q.set('warmup', String(opts.warmup));
  if (opts.only !== 'all') q.set('only', opts.only);
  return q.toString();
}

/** Run the suite on the perf page in headless Chromium and return its result. */
export async function runInBrowser(opts: BenchOptions, onProgress: (p: Progress) => void, timeoutMs = 60 * 60_000): Promise<BenchResult> {
  const server = await startVite();
  let browser: Browser | undefined;
  const consoleLines: string[] = [];
  try {
    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => {
      const text = m.text();
      if (text.startsWith('bench-progress ')) onProgress(JSON.parse(text.slice('bench-progress '.length)) as Progress);
      else consoleLines.push(`[${m.type()}] ${text}`);
    });
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.stack ?? e.message}`));
    await page.goto(`${server.url}perf/?${perfQuery(opts)}`);
    await page.waitForSelector('#result[data-status="pass"], #result[data-status="fail"], #result[data-status="error"]', { timeout: timeoutMs });
    const { status, text, json } = await page.evaluate(() => ({
      status: document.getElementById('result')?.dataset.status ?? '',
      text: document.getElementById('result')?.textContent ?? '',
      json: (globalThis as { __benchResult?: string }).__benchResult ?? null,
    }));
    if (status === 'error' || !json)
      throw new Error(`the perf page ended with "${text}"${consoleLines.length ? `\nconsole:\n  ${consoleLines.join('\n  ')}` : ''}`);
    return JSON.parse(json) as BenchResult;
  } finally {
    await browser?.close();
    server.stop();
  }
}
