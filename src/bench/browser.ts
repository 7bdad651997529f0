// `npm run bench -- --browser`: the same suite in headless Chromium. Starts the Vite dev
// server (the demos, cross-origin isolated), opens the perf page with the CLI's options as URL
// parameters, follows its progress through the console, and reads the BenchResult the page
// leaves in window.__benchResult. Debian's /usr/bin/chromium (or CHROMIUM=path) with software
// WebGPU flags (DESIGN §6), driven by playwright-core. Node only; the runner never imports it.

import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';
import type { BenchOptions } from './args.ts';
import type { BenchResult, Progress } from './runner.ts';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--enable-features=Vulkan',
  '--use-vulkan=swiftshader',
  '--disable-vulkan-surface',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

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

/** Start `vite` on a free port (its own process group, so stopping it stops everything it started). */
async function startVite(): Promise<{ child: ChildProcess; url: string }> {
  const vite = join(repo, 'node_modules', 'vite', 'bin', 'vite.js');
  const child = spawn(process.execPath, [vite, '--port', '0', '--strictPort', '--host', '127.0.0.1'], { cwd: repo, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`vite did not start within 60 s:\n${log}`)), 60_000);
    const done = (err: Error | null, url?: string): void => {
      clearTimeout(timer);
      if (err) {
        stopVite(child);
        reject(err);
      } else resolve({ child, url: url! });
    };
    const onData = (d: Buffer): void => {
      log += d.toString();
      // eslint-disable-next-line no-control-regex
      const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m) done(null, m[1]);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => done(new Error(`vite exited (${code}) before it served:\n${log}`)));
  });
}

function stopVite(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
}

/** Run the suite on the perf page in headless Chromium and return its result. */
export async function runInBrowser(opts: BenchOptions, onProgress: (p: Progress) => void, timeoutMs = 60 * 60_000): Promise<BenchResult> {
  const server = await startVite();
  let browser: Browser | undefined;
  const consoleLines: string[] = [];
  try {
    browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true });
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
    if (status === 'error' || !json) throw new Error(`the perf page ended with "${text}"${consoleLines.length ? `\nconsole:\n  ${consoleLines.join('\n  ')}` : ''}`);
    return JSON.parse(json) as BenchResult;
  } finally {
    await browser?.close();
    stopVite(server.child);
  }
}
