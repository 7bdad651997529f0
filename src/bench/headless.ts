// Headless Chromium with software WebGPU, as the bench's --browser mode and the e2e tests use
// it: start Vite (the dev server, or `vite build` then `vite preview`), cross-origin isolated,
// and launch Debian's /usr/bin/chromium (or CHROMIUM=path) through playwright-core with the
// CHROMIUM_ARGS below (software WebGPU through SwiftShader). Node only; the bench runner never imports it.

import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stripVTControlCharacters } from 'node:util';
import { chromium, type Browser } from 'playwright-core';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const vite = join(repo, 'node_modules', 'vite', 'bin', 'vite.js');

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

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true });
}

export interface ViteServer {
  /** e.g. http://127.0.0.1:5173/ */
  url: string;
  log(): string;
  stop(): void;
}

/**
 * Serve the demos: `vite` (mode 'dev') or a fresh `vite build` served by `vite preview`. Port 0
 * picks a free one. Resolves once the server answers; in its own process group, so stop()
 * also stops anything it started.
 */
export async function startVite(opts: { port?: number; mode?: 'dev' | 'preview' } = {}): Promise<ViteServer> {
  const mode = opts.mode ?? 'dev';
  if (mode === 'preview') {
    const b = spawnSync(process.execPath, [vite, 'build'], { cwd: repo, encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`vite build failed (exit ${b.status}):\n${b.stdout}\n${b.stderr}`);
  }
  const where = ['--port', String(opts.port ?? 0), '--strictPort', '--host', '127.0.0.1'];
  const child = spawn(process.execPath, [vite, ...(mode === 'preview' ? ['preview'] : []), ...where], {
    cwd: repo,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  const stop = (): void => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  };
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`vite exited (${child.exitCode}) before it served:\n${log}`);
    // eslint-disable-next-line no-control-regex
    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(stripVTControlCharacters(log))?.[1];
    if (url) {
      try {
        if ((await fetch(url)).ok) return { url, log: () => log, stop };
      } catch {
        /* not answering yet */
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  stop();
  throw new Error(`vite did not serve within 60 s:\n${log}`);
}
