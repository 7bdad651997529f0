// The end-to-end harness: starts Vite (dev server, or a build served by `vite preview`),
// launches Debian's Chromium headless with software WebGPU (DESIGN §6 flags) through
// playwright-core, opens a demo, waits for its #result to settle and reads it back with the
// page's own data-* attributes. Every page gets a screenshot under test-results/.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const vite = join(repo, 'node_modules', 'vite', 'bin', 'vite.js');
export const SHOTS = join(repo, 'test-results');

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

export interface Server {
  url: string;
  log(): string;
  stop(): void;
}

/** `vite` (dev) or `vite build` + `vite preview` on a fixed port; resolves once it answers. */
export async function startServer(port: number, mode: 'dev' | 'preview' = 'dev'): Promise<Server> {
  if (mode === 'preview') {
    const b = spawnSync(process.execPath, [vite, 'build'], { cwd: repo, encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`vite build failed (exit ${b.status}):\n${b.stdout}\n${b.stderr}`);
  }
  const args = mode === 'preview' ? ['preview', '--port', String(port), '--strictPort'] : ['--port', String(port), '--strictPort'];
  // Its own process group, so stopping it also stops anything it started.
  const child: ChildProcess = spawn(process.execPath, [vite, ...args], { cwd: repo, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  const server: Server = {
    url: `http://localhost:${port}/`,
    log: () => log,
    stop: () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        /* already gone */
      }
    },
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`vite exited early:\n${log}`);
    try {
      if ((await fetch(server.url)).ok) return server;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  server.stop();
  throw new Error(`vite at ${server.url} did not answer within 60 s:\n${log}`);
}

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true });
}

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
