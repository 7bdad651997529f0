// Consumer tests: the package as its users get it (docs/contract.md; issue 13). `npm pack` (prepack builds dist/),
// then in a fresh temporary folder with its own package.json (fixture/), `npm install` of the
// tarball, and:
//   (a) plain `node` (no tsx, no loader): a validated and a replayable kernel, a CPU thread in a
//       worker that imports webgpu-hmm/thread; without `webgpu` installed, the error names it;
//   (b) a Vite app importing webgpu-hmm and webgpu-hmm/thread, built by `vite build`, served by
//       `vite preview` (and by the dev server, which pre-bundles the package) with the headers of
//       the README's snippet, in headless Chromium: a kernel follows pointers a worker wrote; the
//       same page without the headers gets createSystem's HmmError naming them;
//   (c) a TypeScript file using the public types, type-checked under moduleResolution "bundler"
//       and "nodenext", skipLibCheck off;
//   and publint and @arethetypeswrong/cli on the tarball.
//
// Only the tarball and its dependencies (comlink) are installed from the npm registry (npm's cache
// first: `npm ci` in this repository has already put them there). The tools a user would have
// (vite, `webgpu` for Node, @webgpu/types) are this repository's, linked into the temporary
// folder's node_modules after the install; the package finds them there by name, as a user's
// would. The no-`webgpu` check runs before they are linked.

import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stripVTControlCharacters } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../../src/bench/headless.ts';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixture');

/** The environment without what `npm test` puts in it (npm_config_*, npm_package_*). */
const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));

const timings: Record<string, number> = {};
function timed<T>(name: string, f: () => T): T {
  const t0 = Date.now();
  try {
    return f();
  } finally {
    timings[name] = (timings[name] ?? 0) + (Date.now() - t0) / 1000;
  }
}

function run(cmd: string, args: string[], cwd: string, timeoutMs = 120_000): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}${r.signal ? `, ${r.signal}` : ''}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The one JSON line a fixture script prints last. */
function lastJson(out: string): Record<string, unknown> {
  const line = out
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  if (!line) throw new Error(`no JSON result in:\n${out}`);
  return JSON.parse(line) as Record<string, unknown>;
}

let root = ''; // the temporary folder
let app = ''; // root/app: the user's project
let tarball = '';
let packed: { path: string; size: number }[] = [];
let withoutWebgpu: SpawnSyncReturns<string>;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'webgpu-hmm-consumer-'));
  // npm pack runs prepack (npm run build:lib) first.
  const pack = timed('npm pack (build:lib included)', () => ok(run('npm', ['pack', '--json', '--pack-destination', root], repo, 180_000), 'npm pack'));
  // The JSON array npm prints after prepack's own output.
  const info = (JSON.parse(pack.slice(pack.search(/^\[\s*$/m))) as { filename: string; files: { path: string; size: number }[] }[])[0]!;
  tarball = join(root, info.filename);
  packed = info.files;

  app = join(root, 'app');
  cpSync(fixture, app, { recursive: true });
  timed('npm install (tarball)', () =>
    ok(run('npm', ['install', relative(app, tarball), '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], app, 180_000), 'npm install'),
  );
  // Before `webgpu` is there: what a Node user without it sees.
  withoutWebgpu = timed('node, without webgpu', () => run(process.execPath, ['node/no-webgpu.mjs'], app, 60_000));
  // What a user installs beside the package: Dawn for Node, the WebGPU types, Vite.
  for (const name of ['webgpu', '@webgpu/types', 'vite']) {
    const to = join(app, 'node_modules', name);
    if (existsSync(to)) throw new Error(`${name} was installed with the package; it should not be`);
    mkdirSync(dirname(to), { recursive: true });
    symlinkSync(join(repo, 'node_modules', name), to, 'dir');
  }
}, 300_000);

afterAll(() => {
  console.log(
    `[consumer] seconds: ${Object.entries(timings)
      .map(([k, v]) => `${k} ${v.toFixed(1)}`)
      .join(', ')}`,
  );
  if (root && !process.env.KEEP_CONSUMER) rmSync(root, { recursive: true, force: true });
  else if (root) console.log(`[consumer] kept ${root}`);
});

describe('the packed package', () => {
  it('ships dist, the docs a user needs and nothing else', () => {
    const paths = packed.map((f) => f.path).sort();
    const allowed = /^(dist\/.+\.(js|d\.ts)|package\.json|README\.md|LICENSE|CHANGELOG\.md|docs\/(concurrency|threat-model)\.md)$/;
    expect(paths.filter((p) => !allowed.test(p))).toEqual([]);
    for (const p of ['dist/index.js', 'dist/index.d.ts', 'dist/thread.js', 'dist/thread.d.ts', 'LICENSE', 'README.md', 'CHANGELOG.md'])
      expect(paths).toContain(p);
    const pkg = JSON.parse(readFileSync(join(app, 'node_modules/webgpu-hmm/package.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    expect(pkg.dependencies).toHaveProperty('comlink');
    expect(pkg.devDependencies).toBeDefined(); // kept, but npm installs none of them for a user
    expect(pkg.peerDependenciesMeta).toEqual({ webgpu: { optional: true } });
    expect(existsSync(join(app, 'node_modules/comlink/package.json'))).toBe(true);
  });

  it('has the WGSL inlined, and webgpu-hmm/thread reaches no GPU code', () => {
    const dist = join(app, 'node_modules/webgpu-hmm/dist');
    const wgsl = readFileSync(join(dist, 'device/wgslFiles.js'), 'utf8');
    expect(wgsl).toContain('fn hmm_load_u32');
    expect(wgsl).not.toMatch(/new URL|fetch\(|readFile|import\(/);
    // Every module webgpu-hmm/thread imports, transitively.
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const code = readFileSync(file, 'utf8');
      for (const m of code.matchAll(/(?:from\s*|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) visit(join(dirname(file), m[1]!));
    };
    visit(join(dist, 'thread.js'));
    const modules = [...seen].map((f) => relative(dist, f)).sort();
    expect(modules.filter((m) => /^(device|gpu|hmm|policy)\/|^system\.js$/.test(m))).toEqual([]);
    expect(modules).toContain('workers/cpuThread.js');
  });
});

describe('in Node, with plain node', () => {
  it('runs a validated and a replayable kernel and a CPU thread', () => {
    const r = timed('node check', () => run(process.execPath, ['node/check.mjs'], app, 120_000));
    const out = `${r.stdout}\n${r.stderr}`;
    const res = lastJson(r.stdout || '{}');
    expect(res, out).toMatchObject({ ok: true, validated: true, walkSum: 2080, walkExpected: 2080 });
    expect(r.status, out).toBe(0);
    console.log(`[consumer] node: ${res.adapter}, replayable walk in ${res.replayRounds} rounds`);
  });

  it('without `webgpu` installed: a CPU-only system works, a device asks for `npm install webgpu`', () => {
    const out = `${withoutWebgpu.stdout}\n${withoutWebgpu.stderr}`;
    expect(lastJson(withoutWebgpu.stdout || '{}'), out).toMatchObject({ ok: true, cpuOnly: true, withDevice: { hmm: true, code: 'EDEVLOST' } });
    expect(withoutWebgpu.status, out).toBe(0);
  });
});

describe('in TypeScript', () => {
  for (const resolution of ['bundler', 'nodenext']) {
    it(`type-checks a user's file under moduleResolution ${resolution}`, () => {
      const tsc = join(repo, 'node_modules/typescript/bin/tsc');
      const r = timed(`tsc ${resolution}`, () => run(process.execPath, [tsc, '-p', `types/tsconfig.${resolution}.json`], app));
      expect(`${r.stdout}${r.stderr}`).toBe('');
      expect(r.status).toBe(0);
    });
  }
});

describe('lint of the tarball', () => {
  it('publint reports nothing', () => {
    const r = timed('publint', () => run(process.execPath, [join(repo, 'node_modules/publint/src/cli.js'), 'run', tarball, '--strict'], app));
    const out = `${r.stdout}\n${r.stderr}`;
    expect(out).toMatch(/All good/);
    expect(r.status, out).toBe(0);
  });

  it('@arethetypeswrong/cli reports no problem (ESM only)', () => {
    // Every resolution (node10, node16 from ESM, bundler) must be right. The one rule left out is
    // inherent to an ESM-only package ("type": "module", no "require" condition): a CommonJS
    // caller gets ESM, through import() or Node's require(esm).
    const attw = join(repo, 'node_modules/@arethetypeswrong/cli/dist/index.js');
    const r = timed('attw', () => run(process.execPath, [attw, tarball, '--ignore-rules', 'cjs-resolves-to-esm', '--format', 'json'], app));
    const report = JSON.parse(r.stdout) as { problems?: Record<string, { kind: string }[]> };
    const problems = Object.values(report.problems ?? {})
      .flat()
      .filter((p) => p.kind !== 'CJSResolvesToESM');
    expect(problems).toEqual([]);
    expect(r.status, r.stderr).toBe(0);
  });
});

interface Served {
  url: string;
  stop(): void;
  log(): string;
}

/** `vite` or `vite preview` in the app, on a free port, until stop(). */
async function serve(args: string[]): Promise<Served> {
  const vite = join(app, 'node_modules/vite/bin/vite.js');
  const child = spawn(process.execPath, [vite, ...args, '--port', '0', '--strictPort', '--host', '127.0.0.1'], {
    cwd: join(app, 'vite-app'),
    env,
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
    if (child.exitCode !== null) throw new Error(`vite ${args.join(' ')} exited (${child.exitCode}):\n${log}`);
    // eslint-disable-next-line no-control-regex
    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(stripVTControlCharacters(log))?.[1];
    if (url) return { url, stop, log: () => log };
    await new Promise((r) => setTimeout(r, 100));
  }
  stop();
  throw new Error(`vite ${args.join(' ')} did not serve within 60 s:\n${log}`);
}

/** Open the app and wait for its #result to leave 'running'. */
async function result(page: Page, url: string): Promise<{ status: string; data: Record<string, unknown> }> {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('result')?.dataset.status !== 'running', null, { timeout: 120_000 });
  const status = (await page.getAttribute('#result', 'data-status')) ?? '';
  const text = (await page.textContent('#result')) ?? '{}';
  return { status, data: { ...(JSON.parse(text) as Record<string, unknown>), ...(errors.length ? { pageErrors: errors } : {}) } };
}

describe('in a Vite app, in headless Chromium', () => {
  let browser: Browser | undefined;
  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('vite build: the worker bundle carries no GPU code', () => {
    timed('vite build', () => ok(run(process.execPath, [join(app, 'node_modules/vite/bin/vite.js'), 'build'], join(app, 'vite-app')), 'vite build'));
    const assets = join(app, 'vite-app/dist/assets');
    const worker = readdirSync(assets).filter((f) => /^worker.*\.js$/.test(f));
    expect(worker).toHaveLength(1);
    const code = readFileSync(join(assets, worker[0]!), 'utf8');
    expect(code).toContain('Atomics'); // the CPU page table and the fault mailbox are there
    expect(code).not.toMatch(/requestAdapter|createComputePipeline|hmm_load_u32/);
  });

  it('vite preview: a kernel follows the pointers a worker wrote', async () => {
    const server = await serve(['preview']);
    try {
      const page = await browser!.newPage();
      const t0 = Date.now();
      const r = await result(page, server.url);
      timings['chromium, preview'] = (Date.now() - t0) / 1000;
      expect(r.status, JSON.stringify(r.data)).toBe('pass');
      expect(r.data).toMatchObject({ sum: 2080, expected: 2080 });
      console.log(`[consumer] chromium (preview): ${r.data.adapter}, ${r.data.rounds} rounds`);
      await page.close();
    } finally {
      server.stop();
    }
  });

  it('without the isolation headers, createSystem throws an HmmError that names them', async () => {
    const server = await serve(['preview']);
    try {
      const page = await browser!.newPage();
      // The same server, its two headers taken off every response.
      await page.route('**/*', async (route) => {
        const response = await route.fetch();
        const headers = { ...response.headers() };
        delete headers['cross-origin-opener-policy'];
        delete headers['cross-origin-embedder-policy'];
        await route.fulfill({ response, headers });
      });
      const r = await result(page, server.url);
      expect(r.status, JSON.stringify(r.data)).toBe('not-isolated');
      expect(r.data).toMatchObject({ hmm: true, code: 'EPERM' });
      const message = String(r.data.message);
      expect(message).toContain('Cross-Origin-Opener-Policy: same-origin');
      expect(message).toContain('Cross-Origin-Embedder-Policy: require-corp');
      expect(message).toContain('#use-it-in-your-app');
      await page.close();
    } finally {
      server.stop();
    }
  });

  it('vite dev server (dependency pre-bundling): the same page works', async () => {
    const server = await serve([]);
    try {
      const page = await browser!.newPage();
      const t0 = Date.now();
      const r = await result(page, server.url);
      timings['chromium, dev'] = (Date.now() - t0) / 1000;
      expect(r.status, `${JSON.stringify(r.data)}\n${server.log()}`).toBe('pass');
      expect(r.data).toMatchObject({ sum: 2080, expected: 2080 });
      await page.close();
    } finally {
      server.stop();
    }
  });
});
