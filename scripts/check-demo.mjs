#!/usr/bin/env node
// Opens the vector-add demo in headless Chromium (software WebGPU through SwiftShader) and
// checks it end to end: the page is cross-origin isolated, the gallery links to the demo,
// and #result says "result: correct (N elements)". Prints the result and the page's console,
// saves a screenshot. This is the seed of a tests/e2e test.
//
//   node scripts/check-demo.mjs             # against `vite` (dev server)
//   node scripts/check-demo.mjs --preview   # `vite build`, then against `vite preview`
//   options: --port 5173  --n 65536  --shot /tmp/vector-add.png  --width 1280
//
// Needs Debian's chromium (/usr/bin/chromium, or CHROMIUM=path) and playwright-core. It starts
// the server itself and stops it (by its process group) when done. Exit 0 only on success.

import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { chromium } from 'playwright-core';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const vite = join(repo, 'node_modules', 'vite', 'bin', 'vite.js');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const preview = args.includes('--preview');
const port = Number(opt('port', preview ? '4173' : '5173'));
const n = opt('n', '');
const shot = opt('shot', '/tmp/vector-add.png');
const width = Number(opt('width', '1280'));
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const timeoutMs = Number(process.env.DEMO_TIMEOUT_MS ?? 180_000);

const CHROMIUM_ARGS = [
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

function startServer() {
  if (preview) {
    const b = spawnSync(process.execPath, [vite, 'build'], { cwd: repo, stdio: 'inherit' });
    if (b.status !== 0) throw new Error(`vite build failed (exit ${b.status})`);
  }
  const cmd = preview ? ['preview', '--port', String(port), '--strictPort'] : ['--port', String(port), '--strictPort'];
  // Its own process group, so stopping it also stops anything it started.
  const child = spawn(process.execPath, [vite, ...cmd], { cwd: repo, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  return { child, log: () => log };
}

function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    /* already gone */
  }
}

async function waitForServer(url, server) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null) throw new Error(`server exited early:\n${server.log()}`);
    try {
      const res = await fetch(url);
      if (res.ok) return res;
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`server at ${url} did not answer within 60 s:\n${server.log()}`);
}

async function main() {
  const base = `http://localhost:${port}/`;
  const server = startServer();
  let browser;
  let ok = false;
  try {
    const res = await waitForServer(base, server);
    const coop = res.headers.get('cross-origin-opener-policy');
    const coep = res.headers.get('cross-origin-embedder-policy');
    console.log(`server: ${preview ? 'vite preview' : 'vite dev'} at ${base} (COOP ${coop}, COEP ${coep})`);

    browser = await chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    const consoleLines = [];
    page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.stack ?? e.message}`));
    page.on('response', (r) => {
      if (r.status() >= 400) consoleLines.push(`[http ${r.status()}] ${r.url()}`);
    });
    page.on('requestfailed', (r) => consoleLines.push(`[requestfailed] ${r.url()} ${r.failure()?.errorText ?? ''}`));

    // Gallery: isolated, and it links to the demo.
    await page.goto(base);
    const gallery = await page.evaluate(() => ({
      isolated: globalThis.crossOriginIsolated,
      gpu: 'gpu' in navigator,
      env: document.getElementById('env')?.textContent ?? '',
      links: [...document.querySelectorAll('a')].map((a) => a.getAttribute('href')),
    }));
    console.log(`gallery: crossOriginIsolated=${gallery.isolated} navigator.gpu=${gallery.gpu} env="${gallery.env.trim()}"`);
    if (!gallery.links.some((h) => h && h.includes('vector-add'))) throw new Error('the gallery does not link to vector-add');

    // The demo.
    await page.goto(`${base}vector-add/${n ? `?n=${n}` : ''}`);
    await page.waitForSelector('#result[data-status="pass"], #result[data-status="fail"], #result[data-status="error"]', {
      timeout: timeoutMs,
    });
    const result = await page.evaluate(() => {
      const r = document.getElementById('result');
      return { text: r?.textContent ?? '', status: r?.dataset.status ?? '', isolated: globalThis.crossOriginIsolated };
    });
    const details = await page.evaluate(() =>
      ['n', 'adapter', 'detail'].map((id) => document.getElementById(id)?.textContent ?? '').filter(Boolean),
    );
    await page.screenshot({ path: shot, fullPage: true });

    console.log(`#result: ${result.text}`);
    console.log(`status: ${result.status}, crossOriginIsolated=${result.isolated}`);
    for (const d of details) console.log(`  ${d}`);
    console.log(`screenshot: ${shot}`);
    if (consoleLines.length) console.log(`console:\n  ${consoleLines.join('\n  ')}`);
    ok = result.status === 'pass' && /^result: correct \(\d+ elements\)$/.test(result.text);
  } finally {
    if (browser) await browser.close();
    stopServer(server.child);
  }
  if (!ok) {
    console.error('check-demo: FAILED');
    process.exit(1);
  }
  console.log('check-demo: ok');
}

main().catch((e) => {
  console.error(`check-demo: ${e.stack ?? e}`);
  process.exit(1);
});
