// `npm run bench -- --policy FILE` on the real adapter, at tiny sizes and one repetition: the
// example LRU module loads through the CLI's loader and runs as strategy `policy:lru` beside the
// built-ins on three workloads (a few seconds), each run checked word for word by the runner; its
// counters (fault rounds, pages and bytes moved, evictions, prefetches) are in the cells, the
// text and HTML tables and the JSON. A policy set that throws fails its own cells, naming the
// policy, and nothing else. Bad modules and options are refused naming the file.
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BenchArgError, parseArgs } from '../../src/bench/args.ts';
import { loadPolicyModules, PolicyModuleError } from '../../src/bench/policyModules.ts';
import { policySetProblem } from '../../src/bench/policySets.ts';
import { formatText, tablesHtml, toJson } from '../../src/bench/report.ts';
import { runBench } from '../../src/bench/runner.ts';
import { STRATEGIES } from '../../src/bench/strategies.ts';
import type { PolicySet } from '../../src/index.ts';

const LRU = 'examples/policies/lru.ts';

describe('bench --policy', () => {
  it('parses --policy repeated and as a comma list', () => {
    expect(parseArgs(['--policy', 'a.ts', '--policy=b.ts,c.ts']).policy).toEqual(['a.ts', 'b.ts', 'c.ts']);
    expect(parseArgs([]).policy).toBeUndefined();
    expect(() => parseArgs(['--policy', 'a.ts,'])).toThrow(BenchArgError);
    expect(() => parseArgs(['--policy', 'a.ts', '--policy', 'a.ts'])).toThrow(/--policy a.ts given twice/);
    expect(() => parseArgs(['--policy'])).toThrow(/--policy needs a value/);
  });

  it('refuses a module that is not a policy set, naming the file and what is wrong', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bench-policy-'));
    const file = (name: string, text: string): string => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const cases: [string, RegExp][] = [
      [file('none.mjs', 'export const x = 1;'), /none\.mjs: the module has no default export/],
      [
        file('noname.mjs', 'export default { eviction: { name: "e", victims: () => [] } };'),
        /noname\.mjs: the default export is not a PolicySet: its name is undefined/,
      ],
      [file('empty.mjs', 'export default { name: "e" };'), /empty\.mjs: .*holds no policy/],
      [file('nomethod.mjs', 'export default { name: "e", eviction: { name: "e" } };'), /nomethod\.mjs: .*eviction policy 'e' has no victims\(\) method/],
      [file('typo.mjs', 'export default { name: "e", evict: {} };'), /typo\.mjs: .*'evict' is not a policy kind/],
      [file('throws.mjs', 'throw new Error("top-level boom");'), /throws\.mjs: the module does not load: top-level boom/],
      [join(dir, 'missing.ts'), /missing\.ts: no such file/],
    ];
    for (const [path, message] of cases) {
      const e = await loadPolicyModules([path]).then(
        () => null,
        (err: unknown) => err,
      );
      expect(e, path).toBeInstanceOf(PolicyModuleError);
      expect((e as Error).message).toMatch(message);
    }
    const twin = file('twin.mjs', 'export default { name: "lru", eviction: { name: "mine", victims: (n, c) => c } };');
    await expect(loadPolicyModules([LRU, twin])).rejects.toThrow(/named 'lru', as examples\/policies\/lru\.ts's is/);
    expect(policySetProblem([])).toMatch(/an array/);
  });

  it('runs the example LRU set on the workloads beside the built-ins; results checked, counters in every table', async () => {
    const [lru] = await loadPolicyModules([LRU]);
    expect(lru!.set.name).toBe('lru');
    // a set whose prefetcher throws: its cells fail, naming it; every other cell is untouched
    const broken: PolicySet = {
      name: 'broken',
      prefetch: {
        name: 'boom',
        select: () => {
          throw new Error('boom');
        },
      },
    };
    const t0 = performance.now();
    // three workloads keep it short: a stream that fits, a pointer chase, and a stream 1.25x the small device
    const picked = ['triad', 'pointer chase', 'oversub 1.25x'];
    const opts = { quick: true, mib: 0.25, reps: 1, warmup: 0, only: 'workloads', browser: false, help: false, policy: [LRU, 'broken'] } as const;
    const r = await runBench({ ...opts, policy: [...opts.policy] }, undefined, { policies: [lru!.set, broken], workloads: picked });
    const seconds = (performance.now() - t0) / 1000;

    const workloads = [...new Set(r.workloads.map((c) => c.workload))];
    expect(workloads).toEqual(picked);
    expect(new Set(r.workloads.map((c) => c.strategy))).toEqual(new Set([...STRATEGIES, 'policy:lru', 'policy:broken']));
    for (const c of r.workloads.filter((x) => x.strategy !== 'policy:broken')) expect(c.error, `${c.workload} / ${c.strategy}`).toBeUndefined();

    const rows = r.workloads.filter((c) => c.strategy === 'policy:lru');
    expect(rows.map((c) => c.workload)).toEqual(workloads);
    for (const c of rows) {
      expect(c.ms.n, c.workload).toBe(1);
      expect(c.ms.median).toBeGreaterThan(0);
      expect(c.faultRounds.median, c.workload).toBeGreaterThan(0); // fault-driven: the kernel faulted its data in
      expect(c.bytesMoved.median).toBeGreaterThan(0);
      expect(c.pagesMoved!.median).toBeGreaterThan(0);
      expect(Number.isFinite(c.evictions!.median) && Number.isFinite(c.prefetchedPages!.median)).toBe(true);
    }
    // the oversubscribed streams evict under LRU; the workloads that fit do not
    for (const c of rows) expect(c.evictions!.median > 0, c.workload).toBe(c.workload.startsWith('oversub'));
    // the built-in strategies carry the same counters
    const builtin = r.workloads.find((c) => c.workload === 'oversub 1.25x' && c.strategy === 'replayable+prefetch')!;
    expect(builtin.evictions!.median).toBeGreaterThan(0);

    const bad = r.workloads.filter((c) => c.strategy === 'policy:broken');
    expect(bad).toHaveLength(picked.length);
    for (const c of bad) expect(c.error, c.workload).toMatch(/prefetch policy 'boom' threw in dispatch 'bench \w+' round 1: boom/);

    expect(r.policies).toEqual([
      { name: 'lru', strategy: 'policy:lru', policies: { eviction: 'lru' } },
      { name: 'broken', strategy: 'policy:broken', policies: { prefetch: 'boom' } },
    ]);
    const json = JSON.parse(toJson(r));
    expect(json.workloads.find((c: { strategy: string }) => c.strategy === 'policy:lru').evictions.n).toBe(1);

    const text = formatText(r);
    expect(text).toMatch(/^workload +explicit +validated +replayable +replayable\+prefetch +advice\+prefetch +policy:lru +policy:broken$/m);
    expect(text).toContain('policy:lru: eviction lru');
    expect(text).toMatch(/^workload +strategy +ms +fault rounds +pages moved +moved +evictions +prefetched$/m);
    expect(text).toMatch(/^oversub 1\.25x +replayable +[\d.,]+ +[\d.]+ +[\d,.]+ .*$/m);
    expect(text).toMatch(/^ +policy:lru +[\d.,]+ +[\d.]+ +[\d,.]+ +[\d.]+ [KM]iB +[\d,.]+ +[\d,.]+$/m);
    const html = tablesHtml(r);
    expect(html).toContain('<table class="table bench-policies">');
    expect(html).toContain('data-strategy="policy:lru"');
    console.log(`bench --policy at 0.25 MiB: ${seconds.toFixed(1)} s\n${text}`);
  }, 300_000);

  it('runBench refuses sets that do not match --policy, or that are not policy sets', async () => {
    const base = { quick: true, mib: 0.25, reps: 1, warmup: 0, only: 'workloads' as const, browser: false, help: false };
    await expect(runBench({ ...base, policy: ['x.ts'] })).rejects.toThrow(/1 module\(s\) named but 0 policy set\(s\) loaded/);
    await expect(runBench({ ...base, policy: ['x.ts'] }, undefined, { policies: [{ name: 'x' }] })).rejects.toThrow(/x\.ts: it holds no policy/);
    await expect(runBench(base, undefined, { workloads: ['nope'] })).rejects.toThrow(/no workload 'nope' \(there are 'triad', /);
  });
});
