// `npm run replay` (src/replay/cli.ts) without a GPU: its options, and the whole command on a
// hand-made trace with the example policy modules: one table, the recording beside the
// built-ins replayed and each module; bad input exits 2 naming what is wrong.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseReplayArgs } from '../../src/replay/args.ts';
import { formatReplay } from '../../src/replay/report.ts';
import { replayTrace } from '../../src/replay/simulate.ts';
import { DENSITY, TraceBuilder, range } from './replayTraces.ts';

const dir = mkdtempSync(join(tmpdir(), 'replay-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function trace(): TraceBuilder {
  const b = new TraceBuilder({ frames: 32, unit: 16, policies: DENSITY });
  for (let d = 0; d < 3; d++) b.dispatch('stride', [{ read: range(100 + d, 12, 3) }, { write: range(100 + d, 12, 3) }]).cpu(range(100, 8), false);
  return b;
}

function run(...args: string[]): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['node_modules/tsx/dist/cli.mjs', 'src/replay/cli.ts', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

describe('npm run replay', () => {
  it('parses its options, and names a bad one', () => {
    expect(parseReplayArgs(['t.json', '--policy', 'a.ts,b.ts', '--policy=c.ts', '--per-dispatch'])).toEqual({
      trace: 't.json',
      policies: ['a.ts', 'b.ts', 'c.ts'],
      perDispatch: true,
      help: false,
    });
    expect(() => parseReplayArgs(['t.json', '--frobnicate'])).toThrow(/unknown option --frobnicate/);
    expect(() => parseReplayArgs(['t.json', '--policy'])).toThrow(/--policy needs a value/);
    expect(() => parseReplayArgs(['a.json', 'b.json'])).toThrow(/one trace at a time/);
  });

  it("formats the recorded run beside the replays, with the built-ins' distance from it", () => {
    const t = trace().trace;
    t.real = { ...replayTrace(t).total };
    const text = formatReplay(t, [replayTrace(t)]);
    expect(text.split('\n')[0]).toMatch(/recorded\s+built-ins\s+Δ built-ins/);
    expect(text).toMatch(/fault rounds\s+\d+\s+\d+\s+0\.0 %/);
  });

  it('prints one table for a trace and the example policy modules', () => {
    const file = join(dir, 'trace.json');
    writeFileSync(file, JSON.stringify(trace().trace));
    const r = run(
      file,
      '--policy',
      'examples/policies/stride.ts',
      '--policy',
      'examples/policies/lru.ts',
      '--policy',
      'examples/policies/accessCount.ts',
      '--per-dispatch',
    );
    expect(r.err).toBe('');
    expect(r.status).toBe(0);
    expect(r.out).toMatch(/recorded\s+built-ins\s+Δ built-ins\s+stride\s+lru\s+accessCount/);
    for (const row of ['launches', 'fault rounds', 'pages to device', 'device copies', 'pages to RAM', 'evictions', 'prefetched pages'])
      expect(r.out).toContain(row);
    expect(r.out).toMatch(/event\s+kernel\s+rec rounds/);
  }, 60_000);

  it('exits 2 naming what is wrong with a trace or a module', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...trace().trace, version: 9 }));
    const r = run(bad);
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/bad\.json: version is 9, not 1/);
    const good = join(dir, 'good.json');
    writeFileSync(good, JSON.stringify(trace().trace));
    const m = run(good, '--policy', 'examples/policies/nope.ts');
    expect(m.status).toBe(2);
    expect(m.err).toMatch(/--policy examples\/policies\/nope\.ts: no such file/);
  }, 60_000);
});
