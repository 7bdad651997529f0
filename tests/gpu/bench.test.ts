// The fault batch cap G3 measures (faultBatchPages, per device and per dispatch), and the bench
// runner end to end on the real adapter, at tiny sizes and one repetition: every workload under
// every strategy gives the right result with its phase breakdown, and the JSON has all twelve
// goals with finite figures, their targets, met booleans and the fields each one promises (G4's
// no-prefetch rounds and fault buffer, G6's overflow and half-cap checks, G9's time and
// write-back checks, G10's timing method, G11's phases, G12's sizes). With one repetition each
// headline and check is exactly the quotient of the raw figures it names, so the test proves
// every figure is computed from what was measured (and that those measurements are real: times
// above 0, pages and bytes counted by the mechanism). It asserts what was measured, never how
// fast. The --quick sizes' own rules (≥ 10 rounds, a pool of ≥ 8 units) are unit-tested on
// sizes.ts; a --quick run is the bench's job, not a test's.
import { describe, expect, it } from 'vitest';
import { createSystem } from '../../src/index.ts';
import { HOST_PHASES, minFaultRounds, PHASES } from '../../src/bench/figures.ts';
import { GOAL_IDS } from '../../src/bench/goals.ts';
import { formatText, toJson } from '../../src/bench/report.ts';
import { runBench, type Progress } from '../../src/bench/runner.ts';
import { STRATEGIES } from '../../src/bench/strategies.ts';
import { failure, makeSystem } from './helpers.ts';

describe('bench', () => {
  it('runs every workload and goal at tiny sizes; the JSON has G1..G12 with their fields', async () => {
    const progress: Progress[] = [];
    const r = await runBench({ quick: true, mib: 0.25, reps: 1, warmup: 0, only: 'all', browser: false, help: false }, (p) => progress.push(p));
    // progress counts up to its total
    const last = progress[progress.length - 1]!;
    expect(last.done).toBe(last.total);

    for (const c of r.workloads) expect(c.error, `${c.workload} / ${c.strategy}`).toBeUndefined();
    expect(new Set(r.workloads.map((c) => c.strategy))).toEqual(new Set(STRATEGIES));
    expect(new Set(r.workloads.map((c) => c.workload)).size).toBe(9);

    const json = JSON.parse(toJson(r));
    expect(json.schema).toBe('webgpu-hmm-bench/2');
    expect(json.adapter).toBe(r.adapter);
    expect(json.adapter.length).toBeGreaterThan(0);
    expect(json.sizes.streamBytes).toBe(256 << 10);
    expect(json.faultBufferPages).toBe(256); // the fault-buffer model, as the bench configures it
    expect(Object.keys(json.goals).sort()).toEqual([...GOAL_IDS].sort());
    for (const id of GOAL_IDS) {
      const g = json.goals[id];
      expect(g.error, id).toBeUndefined();
      expect(Number.isFinite(g.ratio), `${id} ratio ${g.ratio}`).toBe(true);
      expect(Number.isFinite(g.min) && Number.isFinite(g.max), id).toBe(true);
      expect(typeof g.target).toBe('number');
      expect(typeof g.met).toBe('boolean');
      for (const [k, f] of Object.entries(g.figures) as [string, { median: number }][]) expect(Number.isFinite(f.median), `${id}.${k}`).toBe(true);
      for (const c of g.checks) expect(Number.isFinite(c.ratio), `${id} check ${c.key}: ${c.ratio}`).toBe(true);
    }
    const check = (id: string, key: string) => json.goals[id].checks.find((c: { key: string }) => c.key === key);
    const fig = (id: string, key: string): number => {
      const f = json.goals[id].figures[key];
      expect(f, `${id}.figures.${key}`).toBeDefined();
      return f.median;
    };
    // G11's phase rows: µs per page in each phase; summed over some phases
    const usOf = (phases: readonly string[]): number =>
      json.goals.g11.rows
        .filter((row: { key: string }) => phases.includes(row.key))
        .reduce((a: number, row: { figures: { usPerPage: { median: number } } }) => a + row.figures.usPerPage.median, 0);
    // Each headline and check, recomputed from the raw figures it divides (one repetition: the
    // median of one ratio is that ratio). A figure computed from anything else fails here.
    const derived: [string, string, () => number][] = [
      ['g1', 'ratio', () => fig('g1', 'bulkMs') / fig('g1', 'migrateMs')],
      ['g1', 'naive', () => fig('g1', 'bulkMs') / fig('g1', 'perPageMs')],
      ['g2', 'ratio', () => fig('g2', 'faultRoundMs') / fig('g2', 'emptyRoundTripMs')],
      ['g3', 'ratio', () => fig('g3', 'cap1Ms') / fig('g3', 'cap256Ms')],
      ['g3', 'cap1024', () => fig('g3', 'cap256Ms') / fig('g3', 'cap1024Ms')],
      ['g4', 'ratio', () => fig('g4', 'prefetchOffMs') / fig('g4', 'prefetchOnMs')],
      ['g4', 'rounds', () => fig('g4', 'prefetchOnFaultRounds') / fig('g4', 'prefetchOffFaultRounds')],
      ['g4', 'offRounds', () => fig('g4', 'prefetchOffFaultRounds')],
      ['g5', 'ratio', () => fig('g5', 'faultDrivenMs') / fig('g5', 'explicitMs')],
      ['g5', 'noPrefetch', () => fig('g5', 'noPrefetchMs') / fig('g5', 'explicitMs')],
      ['g6', 'ratio', () => fig('g6', 'faultRecords') / fig('g6', 'distinctPages')],
      ['g6', 'raw', () => fig('g6', 'rawMisses') / fig('g6', 'distinctPages')],
      ['g6', 'overflow', () => fig('g6', 'overflowedFaults') / fig('g6', 'distinctPages')],
      ['g6', 'halfCap', () => fig('g6', 'halfCapRecords') / fig('g6', 'distinctPages')],
      ['g7', 'ratio', () => fig('g7', 'evict4kNoPrefetchMs') / fig('g7', 'evict2mPrefetchMs')],
      ['g7', 'unit64k', () => fig('g7', 'evict4kNoPrefetchMs') / fig('g7', 'evict64kPrefetchMs')],
      ['g8', 'ratio', () => fig('g8', 'oversubscribedMs') / fig('g8', 'fitsMs')],
      ['g9', 'ratio', () => fig('g9', 'bytesEnabled') / fig('g9', 'bytesDisabled')],
      ['g9', 'time', () => fig('g9', 'msEnabled') / fig('g9', 'msDisabled')],
      ['g9', 'bytesGoal', () => fig('g9', 'bytesEnabled') / fig('g9', 'bytesDisabled')],
      ['g9', 'writeBack', () => fig('g9', 'writtenBackEnabled') / fig('g9', 'storedEnabled')],
      ['g10', 'ratio', () => fig('g10', 'pageTableSpanMs') / fig('g10', 'plainBufferSpanMs')],
      ['g10', 'readMostly', () => fig('g10', 'readMostlyBytes') / fig('g10', 'noAdviceBytes')],
      ['g11', 'ratio', () => fig('g11', 'hostUsPerPage')],
      ['g11', 'withWait', () => usOf(PHASES)],
      ['g11', 'wallLessWait', () => (fig('g11', 'roundMs') * 1000) / fig('g11', 'pagesServiced') - usOf(['gpu-wait'])],
      [
        'g12',
        'ratio',
        () => (fig('g12', 'hugeToDeviceMs') + fig('g12', 'hugeToSystemMs')) / (fig('g12', 'regularToDeviceMs') + fig('g12', 'regularToSystemMs')),
      ],
      ['g12', 'toDevice', () => fig('g12', 'hugeToDeviceMs') / fig('g12', 'regularToDeviceMs')],
      ['g12', 'toSystem', () => fig('g12', 'hugeToSystemMs') / fig('g12', 'regularToSystemMs')],
    ];
    for (const [id, key, expected] of derived) {
      const got = key === 'ratio' ? json.goals[id].ratio : check(id, key)?.ratio;
      const want = expected();
      expect(Number.isFinite(want), `${id} ${key} from its figures: ${want}`).toBe(true);
      expect(Math.abs(got - want), `${id} ${key}: ${got} against ${want} from its figures`).toBeLessThanOrEqual(1e-9 * Math.max(1, Math.abs(want)));
    }
    // every check of every goal is covered above
    for (const id of GOAL_IDS)
      for (const c of json.goals[id].checks)
        expect(
          derived.some(([i, k]) => i === id && k === c.key),
          `${id} check ${c.key} recomputed`,
        ).toBe(true);
    // and the figures are real measurements: every time above 0, pages and bytes the mechanism counted
    for (const id of GOAL_IDS)
      for (const [k, f] of Object.entries(json.goals[id].figures) as [string, { median: number; unit: string }][])
        if (f.unit === 'ms') expect(f.median, `${id}.${k}`).toBeGreaterThan(0);
    // G4: the no-prefetch stream's rounds are bounded below by the fault buffer (256 faults a round)
    expect(json.goals.g4.info.faultBufferPages).toBe(256);
    expect(json.goals.g4.figures.prefetchOffFaultRounds.median).toBeGreaterThanOrEqual(minFaultRounds(json.goals.g4.info.streamPages, 256));
    expect(json.goals.g4.info.streamPages).toBe(json.sizes.streamBytes / 4096);
    expect(json.goals.g4.figures.prefetchOnFaultRounds.median).toBeLessThanOrEqual(json.goals.g4.figures.prefetchOffFaultRounds.median);
    // G4: where each side's time went, phase by phase and the rest, adding up to its time
    expect(json.goals.g4.rows.map((row: { key: string }) => row.key)).toEqual([...PHASES, 'other']);
    for (const side of ['offMs', 'onMs']) {
      const total = json.goals.g4.rows.reduce((a: number, row: { figures: Record<string, { median: number }> }) => a + row.figures[side]!.median, 0);
      expect(total, `g4 rows ${side}`).toBeCloseTo(fig('g4', side === 'offMs' ? 'prefetchOffMs' : 'prefetchOnMs'), 6);
    }
    // G6: every distinct page reached the host at least once; the half-cap run fetches faults it
    // does not service, so it receives at least as many; raw misses are what the pending bits saved
    expect(json.goals.g6.figures.distinctPages.median).toBeGreaterThan(json.goals.g4.info.streamPages);
    expect(json.goals.g6.ratio).toBeGreaterThanOrEqual(1);
    expect(check('g6', 'halfCap').ratio).toBeGreaterThanOrEqual(json.goals.g6.ratio);
    expect(check('g6', 'raw').ratio).toBeGreaterThanOrEqual(json.goals.g6.ratio);
    expect(json.goals.g6.figures.halfCapFaultRounds.median).toBeGreaterThanOrEqual(json.goals.g6.figures.faultRounds.median);
    // G9: bytes (the headline, also judged against the 0.5 goal), time, write-back ÷ stored
    expect(check('g9', 'time').target).toBe(1);
    expect(check('g9', 'bytesGoal').target).toBe(0.5);
    expect(json.goals.g9.figures.bytesEnabled.median).toBeGreaterThan(0);
    expect(json.goals.g9.figures.bytesDisabled.median).toBeGreaterThan(0);
    // the kernels stored into the ping-pong's pages, and what was written back covers them
    expect(json.goals.g9.figures.storedEnabled.median).toBeGreaterThan(0);
    expect(json.goals.g9.figures.writtenBackEnabled.median).toBeGreaterThanOrEqual(json.goals.g9.figures.storedEnabled.median);
    // G10: the method is recorded, and each side ran the same batch
    expect(['gpu-timestamps', 'host']).toContain(json.goals.g10.info.timing);
    expect(json.goals.g10.info.launchesPerBatch).toBeGreaterThanOrEqual(1);
    expect(fig('g10', 'pageTableMsPerLaunch')).toBeCloseTo(fig('g10', 'pageTableSpanMs') / json.goals.g10.info.launchesPerBatch, 9);
    // G11: host µs per page from the phases: the host phases' rows add up to the headline, every phase to the check
    expect(json.goals.g11.unit).toBe('µs/page');
    expect(json.goals.g11.ratio).toBeGreaterThan(0);
    expect(json.goals.g11.rows.map((row: { key: string }) => row.key)).toEqual([...PHASES]);
    expect(usOf(HOST_PHASES)).toBeCloseTo(json.goals.g11.ratio, 6);
    expect(usOf(PHASES)).toBeCloseTo(check('g11', 'withWait').ratio, 6);
    expect(json.goals.g11.figures.pagesServiced.median).toBe(256);
    expect(json.goals.g11.info.faultBufferPages).toBe(256);
    // G12: the hmm-tests sizes that fit this pool, each with both kinds and both ways
    expect(json.goals.g12.rows.map((row: { key: string }) => Number(row.key))).toEqual(json.sizes.thpBytes);
    for (const row of json.goals.g12.rows)
      for (const k of ['hugeToDeviceMs', 'hugeToSystemMs', 'regularToDeviceMs', 'regularToSystemMs', 'ratio'])
        expect(Number.isFinite(row.figures[k].median), `${row.label} ${k}`).toBe(true);
    // the phase breakdown: every strategy but explicit copies, shares that add up to 1
    for (const c of json.workloads) {
      if (c.strategy === 'explicit') {
        expect(c.phaseShares, c.workload).toBeUndefined();
        continue;
      }
      expect(Object.keys(c.phases)).toEqual([...PHASES]);
      const sum = Object.values(c.phaseShares as Record<string, number>).reduce((a, b) => a + b, 0);
      expect(sum, `${c.workload} / ${c.strategy}`).toBeCloseTo(1, 6);
    }
    // some fault-driven run spent time in the phases
    expect(json.workloads.some((c: { strategy: string; phaseShares?: { other: number } }) => c.strategy === 'replayable' && c.phaseShares!.other < 1)).toBe(
      true,
    );
    expect(json.g5Matrix.map((g: { workload: string }) => g.workload)).toEqual(['triad', 'gather 1/64', 'gather 1/8', 'gather 1/2', '2D stencil']);
    const text = formatText(r);
    expect(text).toContain('G12');
    expect(text).toContain('Where the time goes');
  }, 600_000);
});

// Invocation i reads one word of page i.
const TOUCH = /* wgsl */ `
@group(0) @binding(0) var<uniform> u: vec4u; // base, pages
fn kernel(gid: vec3u) {
  if (gid.x >= u.y) { return; }
  _ = hmm_load_u32(u.x + gid.x * 4096u);
}`;

describe('fault batch cap (faultBatchPages)', () => {
  it('a replay round services at most that many faulted pages; the rest fault again', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * 4096);
    await mm.write(va, new Uint8Array(8 * 4096).fill(1));
    const k = await dev.createKernel({ code: TOUCH, workgroupSize: 8 });
    const r = await m.dispatch(k, { mode: 'replayable', prefetch: false, faultBatchPages: 3, workgroups: 1, uniforms: new Uint32Array([va, 8, 0, 0]) });
    expect(r.faults).toBe(3); // 3 + 3 + 2 pages
    expect(r.rounds).toBe(4);
    // the host received every still-missing page each round: 8, then 5, then 2 records
    expect(sys.counters.get('faultRecords')).toBe(15);
    expect(sys.counters.get('faultPages')).toBe(15);
    expect(sys.counters.get('pagesToDevice')).toBe(8);
    for (const bad of [0, 1.5, 4097])
      expect((await failure(m.dispatch(k, { mode: 'replayable', faultBatchPages: bad, workgroups: 1, uniforms: new Uint32Array([va, 8, 0, 0]) }))).code).toBe(
        'EINVAL',
      );
  });

  it('per device, from createSystem; checked there too', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20, faultBatchPages: 2 }] });
    const dev = sys.devices[0]!;
    expect(dev.faultBatchPages).toBe(2);
    const mm = sys.createAddressSpace();
    const va = mm.mmap(5 * 4096);
    const k = await dev.createKernel({ code: TOUCH, workgroupSize: 8 });
    const r = await dev.mirror(mm).dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va, 5, 0, 0]) });
    expect(r.faults).toBe(3);
    for (const bad of [0, -1, 2.5, 5000, '8'])
      expect((await failure(createSystem({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 1 << 20, faultBatchPages: bad as number }] }))).message).toMatch(
        /faultBatchPages/,
      );
  });
});
