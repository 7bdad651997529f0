// The bench's pure parts, without a GPU: statistics, goal verdicts, argument parsing (bad
// arguments give a clear error), sizes and their rules (≥ 10 fault rounds, a G7 pool of ≥ 8
// eviction units), the arithmetic of every figure (phase shares, G6, G9, G10, G11, G12, the
// matrix's G5 column), workload layouts and references, and the reports.
import { describe, expect, it } from 'vitest';
import { argsFromQuery, BenchArgError, parseArgs } from '../../src/bench/args.ts';
import { evaluateGoal, GOAL_IDS, GOALS, meets, type GoalResult } from '../../src/bench/goals.ts';
import { renderHtmlReport } from '../../src/bench/html.ts';
import { asBenchJson, docBlockNames, DocError, fillDoc, renderBlocks, type BenchJson } from '../../src/bench/markdown.ts';
import { fmt, formatText, tablesHtml, toJson } from '../../src/bench/report.ts';
import type { BenchResult } from '../../src/bench/runner.ts';
import { grid } from '../../src/bench/shaders.ts';
import {
  g5Matrix,
  HOST_PHASES,
  hostUsPerPage,
  instrumented,
  launchesForSpan,
  minFaultRounds,
  mitigationRatios,
  phaseDelta,
  PHASES,
  phaseShares,
  phaseSum,
  recordsPerDistinctPage,
  thpRatio,
  THP_SIZES,
  timestampSpanMs,
  topShares,
  writeBackRatio,
  zeroPhases,
  type PhaseMs,
} from '../../src/bench/figures.ts';
import { cellPhases } from '../../src/bench/runner.ts';
import { benchSizes, FAULT_BUFFER_PAGES, LARGEST_EVICTION_UNIT, MIN_EVICTION_UNITS, MIN_STREAM_ROUNDS, minStreamBytes } from '../../src/bench/sizes.ts';
import { median, ratios, summarize } from '../../src/bench/stats.ts';
import { Image, oversubscribedStream, pingPong, triad, workloadMatrix } from '../../src/bench/workloads.ts';

describe('bench statistics', () => {
  it('median of odd and even counts, unsorted input left alone', () => {
    const xs = [5, 1, 3];
    expect(median(xs)).toBe(3);
    expect(xs).toEqual([5, 1, 3]);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
  });

  it('summarize: median, min, max and count; NaN when empty', () => {
    expect(summarize([3, 9, 1, 4])).toEqual({ median: 3.5, min: 1, max: 9, n: 4 });
    const empty = summarize([]);
    expect(empty.n).toBe(0);
    expect(Number.isNaN(empty.median) && Number.isNaN(empty.min) && Number.isNaN(empty.max)).toBe(true);
  });

  it('ratios pair samples by repetition and refuse unequal counts', () => {
    expect(ratios([2, 9], [1, 3])).toEqual([2, 3]);
    expect(() => ratios([1], [1, 2])).toThrow(/1 samples against 2/);
  });
});

describe('bench goals', () => {
  it('defines G1..G12 with the targets of perf-anchors §6 and §7', () => {
    expect(GOAL_IDS).toEqual(['g1', 'g2', 'g3', 'g4', 'g5', 'g6', 'g7', 'g8', 'g9', 'g10', 'g11', 'g12']);
    const t = Object.fromEntries(GOALS.map((g) => [g.id, `${g.direction} ${g.target}`]));
    expect(t).toEqual({
      g1: '>= 0.5',
      g2: '<= 2',
      g3: '>= 50',
      g4: '>= 2.7',
      g5: '<= 4',
      g6: '<= 1.05',
      g7: '>= 1.5',
      g8: '<= 3',
      g9: '<= 1',
      g10: '<= 1.25',
      g11: '<= 3',
      g12: '<= 0.25',
    });
    for (const g of GOALS) expect(g.anchor.length).toBeGreaterThan(20);
    const checks = (id: string) =>
      Object.fromEntries(GOALS.find((g) => g.id === id)!.checks.map((c) => [c.key, c.target === null ? null : `${c.direction} ${c.target}`]));
    // G9 re-anchored (§7): time never worse than none, bytes 0.5 the goal, write-back ÷ stored reported
    expect(checks('g9')).toEqual({ time: '<= 1', bytesGoal: '<= 0.5', writeBack: null });
    expect(checks('g4')).toEqual({ rounds: '<= 0.1', offRounds: '>= 10' });
    expect(checks('g12')).toEqual({ toDevice: '<= 0.25', toSystem: '<= 0.25' });
    expect(GOALS.find((g) => g.id === 'g11')!.unit).toBe('µs/page');
    expect(GOALS.find((g) => g.id === 'g11')!.anchor).toMatch(/Allen & Ge SC'21 Fig\. 6/);
    expect(GOALS.find((g) => g.id === 'g12')!.anchor).toMatch(/966 µs to 132 µs/);
  });

  it("evaluateGoal carries a goal's unit, run facts and table rows into the result", () => {
    const g12 = GOALS.find((g) => g.id === 'g12')!;
    const r = evaluateGoal(g12, {
      ratios: [0.3, 0.2],
      info: { sizes: '2 MiB' },
      rows: [{ key: '2097152', label: '2 MiB', figures: { ratio: { samples: [0.3, 0.2], unit: 'huge ÷ 4 KiB' } } }],
    });
    expect(r).toMatchObject({ ratio: 0.25, met: true, info: { sizes: '2 MiB' } });
    expect(r.rows![0]!.figures.ratio).toEqual({ median: 0.25, min: 0.2, max: 0.3, n: 2, unit: 'huge ÷ 4 KiB' });
    expect(evaluateGoal(GOALS.find((g) => g.id === 'g11')!, { ratios: [2] }).unit).toBe('µs/page');
    expect(evaluateGoal(g12, { ratios: [1] }).rows).toBeUndefined();
  });

  it('meets: at least / at most, inclusive; never for a non-finite ratio', () => {
    expect(meets(0.5, 0.5, '>=')).toBe(true);
    expect(meets(0.49, 0.5, '>=')).toBe(false);
    expect(meets(2, 2, '<=')).toBe(true);
    expect(meets(2.01, 2, '<=')).toBe(false);
    for (const bad of [NaN, Infinity, -Infinity]) {
      expect(meets(bad, 1, '>=')).toBe(false);
      expect(meets(bad, 1, '<=')).toBe(false);
    }
  });

  it('evaluateGoal: the median of the per-repetition ratios with min and max; checks with their own targets', () => {
    const g4 = GOALS.find((g) => g.id === 'g4')!;
    const r = evaluateGoal(g4, {
      ratios: [3, 2, 2.8],
      checks: { rounds: [0.05, 0.2, 0.08] },
      figures: { offMs: { samples: [30, 20, 28], unit: 'ms' } },
      notes: ['n'],
    });
    expect(r).toMatchObject({ id: 'g4', ratio: 2.8, min: 2, max: 3, target: 2.7, direction: '>=', met: true, notes: ['n'] });
    expect(r.figures.offMs).toEqual({ median: 28, min: 20, max: 30, n: 3, unit: 'ms' });
    const rounds = r.checks.find((c) => c.key === 'rounds')!;
    expect(rounds).toMatchObject({ ratio: 0.08, target: 0.1, met: true });
    // a check with no samples is NaN and not met; one with no target is information
    const offRounds = r.checks.find((c) => c.key === 'offRounds')!;
    expect(offRounds.met).toBe(false);
    expect(Number.isNaN(offRounds.ratio)).toBe(true);
    const g6 = evaluateGoal(GOALS.find((g) => g.id === 'g6')!, { ratios: [1], checks: { raw: [31.5] } });
    const raw = g6.checks.find((c) => c.key === 'raw')!;
    expect(raw).toMatchObject({ ratio: 31.5, met: null });
    const overflow = g6.checks.find((c) => c.key === 'overflow')!;
    expect(overflow.met).toBeNull();
    expect(Number.isNaN(overflow.ratio)).toBe(true);
  });

  it('evaluateGoal: a run-dependent check target (G10 1/N), and a failed measurement', () => {
    const g10 = GOALS.find((g) => g.id === 'g10')!;
    const r = evaluateGoal(g10, { ratios: [1.5], checks: { readMostly: [0.2] }, checkTargets: { readMostly: 0.25 } });
    expect(r.met).toBe(false);
    expect(r.checks[0]).toMatchObject({ target: 0.25, met: true });
    const failed = evaluateGoal(g10, new Error('device lost'));
    expect(failed).toMatchObject({ met: false, error: 'device lost', checks: [] });
    expect(Number.isNaN(failed.ratio)).toBe(true);
  });
});

describe('bench arguments', () => {
  it('defaults, flags, values in both spellings', () => {
    expect(parseArgs([])).toEqual({ quick: false, only: 'all', browser: false, help: false });
    expect(parseArgs(['--quick', '--json', 'out.json', '--html=r.html', '--reps', '5', '--mib=16', '--warmup', '0', '--only', 'goals', '--browser'])).toEqual({
      quick: true,
      json: 'out.json',
      html: 'r.html',
      reps: 5,
      mib: 16,
      warmup: 0,
      only: 'goals',
      browser: true,
      help: false,
    });
    expect(parseArgs(['--mib', '0.25']).mib).toBe(0.25);
    expect(parseArgs(['--doc', 'run.json', '--doc-before=old.json', '--doc-out', '-'])).toMatchObject({ doc: 'run.json', docBefore: 'old.json', docOut: '-' });
  });

  const bad: [string[], RegExp][] = [
    [['--fast'], /unknown option --fast/],
    [['quick'], /unexpected argument 'quick'/],
    [['--json'], /--json needs a value/],
    [['--json', '--quick'], /--json needs a value/],
    [['--reps', '0'], /--reps 0: expected an integer from 1 to 1000/],
    [['--reps', '2.5'], /--reps 2.5: expected an integer/],
    [['--reps', 'many'], /--reps many: expected an integer/],
    [['--mib', '-4'], /--mib -4: expected 0.25, 0.5 or an integer/],
    [['--mib', '3.3'], /--mib 3.3/],
    [['--mib', '4096'], /--mib 4096/],
    [['--only', 'everything'], /--only everything: expected goals, workloads or all/],
    [['--quick=yes'], /--quick takes no value/],
    [['--reps', '3', '--reps', '4'], /--reps given twice/],
    [['--html='], /--html needs a file name/],
    [['--doc='], /--doc needs a file name/],
    [['--doc-before', 'old.json'], /--doc-before goes with --doc FILE/],
    [['--doc-out', 'x.md'], /--doc-out goes with --doc FILE/],
  ];
  for (const [argv, message] of bad) {
    it(`refuses ${argv.join(' ')}`, () => {
      expect(() => parseArgs(argv)).toThrow(BenchArgError);
      expect(() => parseArgs(argv)).toThrow(message);
    });
  }

  it('URL parameters go through the same rules', () => {
    expect(parseArgs(argsFromQuery(new URLSearchParams('quick=1&reps=2&mib=1&only=workloads')))).toMatchObject({
      quick: true,
      reps: 2,
      mib: 1,
      only: 'workloads',
    });
    expect(parseArgs(argsFromQuery(new URLSearchParams('quick=0'))).quick).toBe(false);
    expect(() => argsFromQuery(new URLSearchParams('quick=maybe'))).toThrow(/\?quick=maybe: expected 1 or 0/);
    expect(() => parseArgs(argsFromQuery(new URLSearchParams('reps=x')))).toThrow(/--reps x/);
  });
});

describe('bench sizes and workloads', () => {
  it('sizes follow --mib: whole pages, pools in 2 MiB blocks, the stream fits the main pool, oversubscription leaves the small one', () => {
    for (const mib of [0.25, 1, 4, 256]) {
      const s = benchSizes({ quick: mib < 256, mib });
      expect(s.streamBytes).toBe(Math.max(mib * (1 << 20), mib >= 4 ? 10 << 20 : 0));
      for (const b of [s.arrayBytes, s.gatherTableBytes, s.chaseTableBytes]) expect(b % 4096).toBe(0);
      expect(s.mainPoolBytes % (2 << 20)).toBe(0);
      expect(s.smallPoolBytes % (2 << 20)).toBe(0);
      if (mib >= 4) expect(s.smallPoolBytes).toBeGreaterThanOrEqual(4 << 20); // two 2 MiB eviction units
      expect(s.mainPoolBytes).toBeGreaterThanOrEqual(s.streamBytes * 1.25);
      expect(s.mainPoolBytes).toBeGreaterThanOrEqual(s.smallPoolBytes * 2); // G8's "fits" device
      expect(s.systemRamBytes).toBeGreaterThan(s.mainPoolBytes);
    }
    expect(benchSizes({ quick: false }).streamBytes).toBe(256 << 20); // perf-anchors G4
  });

  it('the rounds rule: from --mib 4 up (quick included), the stream without prefetch takes at least 10 rounds of the 256-fault buffer', () => {
    expect(FAULT_BUFFER_PAGES).toBe(256);
    expect(MIN_STREAM_ROUNDS).toBe(10);
    expect(minStreamBytes()).toBe(10 * 256 * 4096);
    expect(minStreamBytes(128, 4)).toBe(4 * 128 * 4096);
    for (const opts of [{ quick: true }, { quick: true, mib: 4 }, { quick: true, mib: 8 }, { quick: false, mib: 16 }, { quick: false }]) {
      const s = benchSizes(opts);
      expect(s.faultBufferPages).toBe(256);
      expect(minFaultRounds(s.streamBytes / 4096, s.faultBufferPages), JSON.stringify(opts)).toBeGreaterThanOrEqual(10);
      expect(s.streamBytes % (1 << 20)).toBe(0);
      expect(s.mainPoolBytes).toBeGreaterThanOrEqual(1.25 * s.streamBytes); // the stream faults in without eviction
    }
    // the quick stream is the smallest that satisfies the rule: 10 MiB, 2560 pages
    expect(benchSizes({ quick: true }).streamBytes).toBe(10 << 20);
    expect(minFaultRounds(2560, 256)).toBe(10);
    expect(minFaultRounds(2559, 256)).toBe(10);
    expect(minFaultRounds(2561, 256)).toBe(11);
    // the tiny test sizes make no such claim (and stay fast)
    expect(benchSizes({ quick: true, mib: 0.25 }).streamBytes).toBe(256 << 10);
  });

  it('the eviction rule: G7/G8\'s pool holds at least 8 of the largest eviction unit (2 MiB) from --mib 4 up, and G8\'s "fits" run fits the main pool', () => {
    expect(MIN_EVICTION_UNITS).toBe(8);
    expect(LARGEST_EVICTION_UNIT).toBe(2 << 20);
    for (const opts of [{ quick: true }, { quick: false, mib: 4 }, { quick: false, mib: 32 }, { quick: false }]) {
      const s = benchSizes(opts);
      expect(s.evictionPoolBytes / LARGEST_EVICTION_UNIT, JSON.stringify(opts)).toBeGreaterThanOrEqual(8);
      expect(s.evictionPoolBytes % LARGEST_EVICTION_UNIT).toBe(0);
      expect(s.mainPoolBytes).toBeGreaterThanOrEqual(1.25 * s.evictionPoolBytes);
      expect(s.systemRamBytes).toBeGreaterThanOrEqual(s.mainPoolBytes + 2 * s.evictionPoolBytes);
    }
    expect(benchSizes({ quick: true }).evictionPoolBytes).toBe(16 << 20);
    expect(benchSizes({ quick: false }).evictionPoolBytes).toBe(64 << 20);
    // the matrix's own oversubscribed pool stays as it was
    expect(benchSizes({ quick: true }).smallPoolBytes).toBe(4 << 20);
    expect(benchSizes({ quick: true, mib: 0.25 }).evictionPoolBytes).toBe(2 << 20);
  });

  it('G12 runs the hmm-tests sizes that fit: ¼ to 8 × 2 MiB from --mib 4 up, up to one huge page at the test sizes', () => {
    expect(THP_SIZES.map((b) => b / (2 << 20))).toEqual([0.25, 0.5, 1, 2, 4, 8]);
    expect(benchSizes({ quick: true }).thpBytes).toEqual(THP_SIZES);
    expect(benchSizes({ quick: false }).thpBytes).toEqual(THP_SIZES);
    for (const mib of [0.25, 1]) {
      const s = benchSizes({ quick: true, mib });
      expect(s.thpBytes).toContain(2 << 20); // G12's headline size is always there
      for (const b of s.thpBytes) expect(b).toBeLessThanOrEqual(s.mainPoolBytes / 2);
    }
  });

  it('grid: 1-D up to the per-dimension limit, then rows', () => {
    expect(grid(100, 64)).toEqual({ workgroups: [2, 1], row: 128 });
    expect(grid(64 * 70000, 64)).toEqual({ workgroups: [65535, 2], row: 65535 * 64 });
  });

  it('every workload lays its arrays out on pages and references its own result', () => {
    for (const w of workloadMatrix(benchSizes({ quick: true, mib: 0.25 }))) {
      for (const a of w.layout.arrays) expect(w.layout.offset(a.name) % 4096).toBe(0);
      const img = new Image(w.layout);
      w.init(img, 0x1000_0000);
      const steps = w.steps(0x1000_0000, Infinity);
      expect(steps.length).toBe(1);
      for (const st of steps) for (const sp of [...st.reads, ...st.writes]) expect(sp.offset + sp.bytes).toBeLessThanOrEqual(w.layout.spec(sp.array).words * 4);
    }
    const t = triad(8);
    const img = new Image(t.layout);
    t.init(img, 0);
    t.reference(img);
    expect(Array.from(img.view('a'))).toEqual(Array.from({ length: 8 }, (_, i) => i + 3 * (8 - i)));
    const p = pingPong(1, 3);
    const pi = new Image(p.layout);
    p.init(pi, 0);
    p.reference(pi);
    expect(pi.view('a')[5]).toBe(5 + 3 * 1001);
  });

  it('an oversubscribed stream cut into chunks covers every word once, each chunk within the limit', () => {
    const w = oversubscribedStream(4 << 20, 1.25);
    const words = w.layout.spec('src').words;
    expect(w.layout.bytes).toBe(5 << 20);
    const chunk = 2 << 20;
    const steps = w.steps(0x1000_0000, chunk);
    expect(steps.length).toBeGreaterThan(1);
    let next = 0;
    for (const s of steps) {
      expect(s.reads[0]!.offset).toBe(next * 4);
      expect(s.reads[0]!.bytes + s.writes[0]!.bytes).toBeLessThanOrEqual(chunk);
      next += s.reads[0]!.bytes / 4;
    }
    expect(next).toBe(words);
  });
});

const ph = (over: Partial<PhaseMs>): PhaseMs => ({ ...zeroPhases(), ...over });

describe('bench figures: the arithmetic', () => {
  it('phase deltas, sums, and whether anything was timed', () => {
    const before = ph({ 'fault-readback': 1, 'copy-upload': 2 });
    const after = ph({ 'fault-readback': 1.5, 'copy-upload': 5, 'gpu-wait': 4 });
    const d = phaseDelta(before, after);
    expect(d).toEqual(ph({ 'fault-readback': 0.5, 'copy-upload': 3, 'gpu-wait': 4 }));
    expect(Object.keys(d)).toEqual([...PHASES]);
    expect(phaseDelta({}, { commit: 2 })).toEqual(ph({ commit: 2 })); // a phase missing counts as 0
    expect(phaseSum(d)).toBe(7.5);
    expect(phaseSum(d, HOST_PHASES)).toBe(3.5);
    expect(HOST_PHASES).not.toContain('gpu-wait');
    expect(HOST_PHASES.length).toBe(PHASES.length - 1);
    expect(instrumented(zeroPhases())).toBe(false);
    expect(instrumented(ph({ relaunch: 0.001 }))).toBe(true);
  });

  it('phase shares: totals over the runs ÷ their wall time, the rest as other; scaled down when the phases exceed the wall time', () => {
    const shares = phaseShares([
      { ms: 10, phases: ph({ 'copy-upload': 4, 'gpu-wait': 1 }) },
      { ms: 30, phases: ph({ 'copy-upload': 6, commit: 4 }) },
    ]);
    expect(shares['copy-upload']).toBeCloseTo(10 / 40);
    expect(shares['gpu-wait']).toBeCloseTo(1 / 40);
    expect(shares.commit).toBeCloseTo(4 / 40);
    expect(shares.other).toBeCloseTo(25 / 40);
    expect(shares.dedupe).toBe(0);
    expect(PHASES.reduce((a, p) => a + shares[p], shares.other)).toBeCloseTo(1);
    const over = phaseShares([{ ms: 2, phases: ph({ policy: 3, collect: 1 }) }]);
    expect(over.policy).toBeCloseTo(0.75);
    expect(over.collect).toBeCloseTo(0.25);
    expect(over.other).toBe(0);
    const none = phaseShares([]);
    expect(Number.isNaN(none.other) && Number.isNaN(none.commit)).toBe(true);
    // the matrix cells: explicit copies have no phases; the others a summary per phase and shares
    expect(cellPhases('explicit', [1], [ph({})])).toEqual({});
    const c = cellPhases('replayable', [10, 30], [ph({ commit: 1 }), ph({ commit: 3 })]);
    expect(c.phases!.commit).toEqual({ median: 2, min: 1, max: 3, n: 2 });
    expect(c.phaseShares!.commit).toBeCloseTo(0.1);
    expect(topShares(c.phaseShares!, 2)).toEqual([
      ['other', c.phaseShares!.other],
      ['commit', c.phaseShares!.commit],
    ]);
  });

  it('G11: host phases (all but the GPU wait) per serviced page, in µs', () => {
    // 256 pages, 0.5 ms of host work and 2 ms of waiting: 0.5 ms / 256 = 1.953 µs
    const d = ph({
      'fault-readback': 0.1,
      dedupe: 0.05,
      policy: 0.05,
      collect: 0.1,
      'copy-upload': 0.1,
      commit: 0.05,
      'pt-upload': 0.02,
      relaunch: 0.03,
      'gpu-wait': 2,
    });
    expect(hostUsPerPage(d, 256)).toBeCloseTo((0.5 * 1000) / 256);
    expect(hostUsPerPage(ph({ 'gpu-wait': 9 }), 256)).toBe(0);
    expect(Number.isNaN(hostUsPerPage(d, 0))).toBe(true);
    // the target: 3 µs a page is 0.768 ms for a 256-fault round
    expect(hostUsPerPage(ph({ collect: 0.768 }), 256)).toBeCloseTo(3);
  });

  it('G6: records ÷ distinct pages; a page received twice counts twice', () => {
    expect(recordsPerDistinctPage(2600, 2600)).toBe(1);
    expect(recordsPerDistinctPage(2600 + 128, 2600)).toBeCloseTo(1.0492);
    expect(recordsPerDistinctPage(5200, 2600)).toBe(2);
    expect(Number.isNaN(recordsPerDistinctPage(3, 0))).toBe(true);
  });

  it('G9: mitigation ÷ none, bytes and time; write-back ÷ stored', () => {
    expect(mitigationRatios({ bytes: 1.44e6, ms: 296 }, { bytes: 1.05e6, ms: 163 })).toEqual({ bytes: 1.44e6 / 1.05e6, time: 296 / 163 });
    expect(mitigationRatios({ bytes: 5e5, ms: 80 }, { bytes: 1e6, ms: 100 })).toEqual({ bytes: 0.5, time: 0.8 });
    const zero = mitigationRatios({ bytes: 1, ms: 1 }, { bytes: 0, ms: 0 });
    expect(Number.isNaN(zero.bytes) && Number.isNaN(zero.time)).toBe(true);
    expect(writeBackRatio(65536, 65536)).toBe(1);
    expect(writeBackRatio(256, 4)).toBe(64); // one 4-byte store costs a 256-byte block
    expect(Number.isNaN(writeBackRatio(4096, 0))).toBe(true);
  });

  it('G10: launches per batch for a span of at least 10 ms, and timestamps to ms', () => {
    expect(launchesForSpan(2, 10)).toBe(5);
    expect(launchesForSpan(3, 10)).toBe(4);
    expect(launchesForSpan(20, 10)).toBe(1);
    expect(launchesForSpan(0.001, 10, 4096)).toBe(4096); // capped
    expect(launchesForSpan(0, 10, 64)).toBe(64);
    expect(launchesForSpan(NaN, 10, 64)).toBe(64);
    expect(timestampSpanMs(1_000_000n, 13_500_000n)).toBe(12.5);
    expect(Number.isNaN(timestampSpanMs(5n, 5n))).toBe(true);
    expect(Number.isNaN(timestampSpanMs(9n, 5n))).toBe(true);
  });

  it('G12: huge ÷ 4 KiB pages, both directions together and each alone', () => {
    const r = thpRatio({ toDevice: 1, toSystem: 3 }, { toDevice: 4, toSystem: 12 });
    expect(r).toEqual({ both: 0.25, toDevice: 0.25, toSystem: 0.25 });
    const x = thpRatio({ toDevice: 0.132, toSystem: 1 }, { toDevice: 0.966, toSystem: 1 });
    expect(x.toDevice).toBeCloseTo(0.1366, 3); // Xe's 966 → 132 µs
    expect(x.toSystem).toBe(1);
    expect(x.both).toBeCloseTo(1.132 / 1.966);
    expect(Number.isNaN(thpRatio({ toDevice: 1, toSystem: 1 }, { toDevice: 0, toSystem: 0 }).both)).toBe(true);
  });

  it("the matrix's G5 column: replayable+prefetch ÷ explicit on triad, stencil and the gathers, with phase shares", () => {
    const cell = (workload: string, strategy: string, ms: number, extra: object = {}) => ({ workload, strategy, ms: summarize([ms]), ...extra });
    const shares = { ...Object.fromEntries(PHASES.map((p) => [p, 0])), 'copy-upload': 0.5, other: 0.5 } as Record<(typeof PHASES)[number] | 'other', number>;
    const rows = g5Matrix([
      cell('triad', 'explicit', 2),
      cell('triad', 'replayable+prefetch', 7, { phaseShares: shares }),
      cell('gather 1/8', 'explicit', 2),
      cell('gather 1/8', 'replayable+prefetch', 9),
      cell('2D stencil', 'explicit', 2, { error: 'boom' }),
      cell('2D stencil', 'replayable+prefetch', 3),
      cell('pointer chase', 'explicit', 1),
      cell('pointer chase', 'replayable+prefetch', 2),
    ]);
    expect(rows).toEqual([
      { workload: 'triad', strategy: 'replayable+prefetch', ratio: 3.5, target: 4, met: true, phaseShares: shares },
      { workload: 'gather 1/8', strategy: 'replayable+prefetch', ratio: 4.5, target: 4, met: false },
    ]);
  });
});

describe('bench reports', () => {
  const goal = (id: GoalResult['id'], ratio: number, met: boolean): GoalResult => ({
    ...evaluateGoal(GOALS.find((g) => g.id === id)!, { ratios: [ratio] }),
    met,
  });
  const result: BenchResult = {
    schema: 'webgpu-hmm-bench/2',
    runtime: 'node',
    adapter: 'test <adapter> & co',
    platform: 'Node',
    options: { quick: true, mib: 1, reps: 1, warmup: 0, only: 'all' },
    sizes: { ...benchSizes({ quick: true, mib: 1 }), mainPoolBuffers: 1, smallPoolBuffers: 1, evictionPoolBuffers: 1 },
    faultBufferPages: 256,
    startedAt: '2026-01-01T00:00:00.000Z',
    durationMs: 1234,
    goals: { g1: goal('g1', 0.75, true), g2: { ...goal('g2', NaN, false), error: 'no </script> here' } },
    workloads: [
      {
        workload: 'triad',
        title: 't',
        strategy: 'explicit',
        ms: summarize([2]),
        launches: summarize([1]),
        faultRounds: summarize([0]),
        bytesMoved: summarize([10]),
      },
      {
        workload: 'triad',
        title: 't',
        strategy: 'validated',
        ms: summarize([6]),
        launches: summarize([1]),
        faultRounds: summarize([0]),
        bytesMoved: summarize([10]),
      },
    ],
    g5Matrix: [],
  };

  it('fmt keeps about three significant digits', () => {
    expect([fmt(0.0041), fmt(0.123), fmt(1.234), fmt(12.34), fmt(123.4), fmt(12345), fmt(NaN)]).toEqual([
      '0.0041',
      '0.123',
      '1.23',
      '12.3',
      '123',
      '12,345',
      '–',
    ]);
  });

  it('the text report has every goal row, verdicts, and the ratio to explicit copies', () => {
    const text = formatText(result);
    expect(text).toContain('G1');
    expect(text).toMatch(/G1 .*0\.750 .*>= 0\.500 +met/);
    expect(text).toContain('FAILED: no </script> here');
    expect(text).toContain('6.00 (3.00x)');
  });

  it('HTML escapes what it shows and keeps embedded JSON inside its script element', () => {
    expect(tablesHtml(result)).toContain('failed: no &lt;/script&gt; here');
    const html = renderHtmlReport([result], { uplotJs: '/* uplot */', uplotCss: '', plotJs: 'exports.drawPlots = function () {};' });
    expect(html).not.toContain('no </script> here');
    expect(html).toContain('test &lt;adapter&gt; &amp; co');
    const json = /<script type="application\/json" id="bench-results">(.*?)<\/script>/s.exec(html)![1]!;
    // "<\/" is JSON for "</": the text survives, the element does not end early
    expect(JSON.parse(json)[0].goals.g2.error).toBe('no </script> here');
  });

  it("the phase breakdown, the matrix's G5 column and G12's sizes, in text and HTML", () => {
    const shares = { ...Object.fromEntries(PHASES.map((p) => [p, 0])), 'copy-upload': 0.42, 'gpu-wait': 0.18, other: 0.4 } as Record<
      (typeof PHASES)[number] | 'other',
      number
    >;
    const cells = [
      {
        workload: 'triad',
        title: 't',
        strategy: 'explicit' as const,
        ms: summarize([2]),
        launches: summarize([1]),
        faultRounds: summarize([0]),
        bytesMoved: summarize([10]),
      },
      {
        workload: 'triad',
        title: 't',
        strategy: 'replayable+prefetch' as const,
        ms: summarize([10]),
        launches: summarize([3]),
        faultRounds: summarize([2]),
        bytesMoved: summarize([10]),
        phaseShares: shares,
      },
    ];
    const g12 = GOALS.find((g) => g.id === 'g12')!;
    const withAll: BenchResult = {
      ...result,
      goals: {
        g12: evaluateGoal(g12, {
          ratios: [0.5],
          rows: [
            {
              key: '2097152',
              label: '2 MiB (1 × 2 MiB)',
              figures: {
                hugeToDeviceMs: { samples: [1.5], unit: 'ms' },
                regularToDeviceMs: { samples: [3], unit: 'ms' },
                ratio: { samples: [0.5], unit: 'huge ÷ 4 KiB' },
              },
            },
          ],
        }),
        g11: evaluateGoal(GOALS.find((g) => g.id === 'g11')!, {
          ratios: [2.5],
          rows: PHASES.map((p) => ({ key: p, label: p, figures: { usPerPage: { samples: [p === 'collect' ? 0.5 : 0.25], unit: 'µs/page' } } })),
        }),
      },
      workloads: cells,
      g5Matrix: g5Matrix(cells),
    };
    const text = formatText(withAll);
    expect(text).toMatch(/Where the time goes/);
    expect(text).toMatch(/triad +replayable\+prefetch +10\.0 +0 +0 +0 +0 +42 +18 +0 +0 +0 +40/);
    expect(text).toMatch(/triad +5\.00 +<= 4\.00 +NOT met +copy-upload 42 %, other 40 %, gpu-wait 18 %/);
    expect(text).toMatch(/2 MiB \(1 × 2 MiB\) +1\.50 +3\.00 +– +– +0\.500/);
    expect(text).toMatch(/G11 +Host cost per serviced page \(µs\/page\) +2\.50/);
    const html = tablesHtml(withAll);
    expect(html).toContain('class="table bench-phases"');
    expect(html).toContain('class="table bench-g5"');
    expect(html).toContain('class="table bench-thp"');
    expect(html).toContain('class="table bench-host"');
    expect(text).toMatch(/G11 phase by phase/);
    expect(text).toMatch(/collect +0\.500 +0\.500–0\.500/);
    expect(text).toMatch(/host total \(all but gpu-wait\) +2\.50/);
    expect(html).toContain('<td class="num">42</td>');
    // without phases (explicit copies only), no breakdown
    expect(tablesHtml(result)).not.toContain('bench-phases');
  });

  it('JSON: goals by id, NaN as null', () => {
    const j = JSON.parse(toJson(result));
    expect(j.goals.g1).toMatchObject({ ratio: 0.75, target: 0.5, met: true });
    expect(j.goals.g2.ratio).toBeNull();
  });
});

describe('PERFORMANCE.md from a bench JSON (--doc)', () => {
  const g = (id: GoalResult['id'], ratios: number[], extra: object = {}): GoalResult => evaluateGoal(GOALS.find((x) => x.id === id)!, { ratios, ...extra });
  const shares = { ...Object.fromEntries(PHASES.map((p) => [p, 0])), 'copy-upload': 0.5, other: 0.5 } as Record<(typeof PHASES)[number] | 'other', number>;
  const cells = (explicitMs: number, ms: number) => [
    {
      workload: 'triad',
      title: 't',
      strategy: 'explicit' as const,
      ms: summarize([explicitMs]),
      launches: summarize([1]),
      faultRounds: summarize([0]),
      bytesMoved: summarize([10]),
    },
    {
      workload: 'triad',
      title: 't',
      strategy: 'replayable+prefetch' as const,
      ms: summarize([ms]),
      launches: summarize([3]),
      faultRounds: summarize([2]),
      bytesMoved: summarize([10]),
      phaseShares: shares,
    },
  ];
  const run = (runtime: 'node' | 'browser', reps: number, g4: number): BenchResult => ({
    schema: 'webgpu-hmm-bench/2',
    runtime,
    adapter: `${runtime} adapter`,
    platform: runtime === 'node' ? 'Node 20' : 'HeadlessChrome',
    options: { quick: true, mib: 4, reps, warmup: 1, only: 'all' },
    sizes: { ...benchSizes({ quick: true }), mainPoolBuffers: 1, smallPoolBuffers: 1, evictionPoolBuffers: 1 },
    faultBufferPages: 256,
    startedAt: '2026-12-05T15:00:00.000Z',
    durationMs: 90_000,
    goals: {
      g4: g('g4', [g4, g4 + 0.2], {
        checks: { offRounds: [12, 12], rounds: [0.5, 0.5] },
        figures: { prefetchOffMs: { samples: [30, 31], unit: 'ms' } },
        info: { faultBufferPages: 256 },
      }),
      g9: { ...g('g9', [NaN]), error: 'boom | pipe' },
      g11: g('g11', [2, 2.5], {
        rows: PHASES.map((p) => ({ key: p, label: p, figures: { usPerPage: { samples: [p === 'collect' ? 1 : 0.1], unit: 'µs/page' } } })),
      }),
    },
    workloads: cells(2, runtime === 'node' ? 10 : 6),
    g5Matrix: g5Matrix(cells(2, runtime === 'node' ? 10 : 6)),
  });
  const both = (reps: number): BenchJson => ({
    ...run('node', reps, 3),
    browser: run('browser', reps, 1.5),
    source: { commit: 'abcdef0123456789', dirty: false },
  });
  const doc = [
    '# Performance',
    'prose stays',
    '<!-- bench:run -->',
    'old run',
    '<!-- /bench:run -->',
    '<!-- bench:goals -->',
    '| old | table |',
    '<!-- /bench:goals -->',
    'between',
    '<!-- bench:figures:g4 -->',
    'old',
    '<!-- /bench:figures:g4 -->',
    '<!-- bench:g11 -->',
    '<!-- /bench:g11 -->',
    '<!-- bench:g5 -->',
    '<!-- /bench:g5 -->',
    'the end',
  ].join('\n');

  it('replaces only the marked blocks, with both runtimes side by side', () => {
    const out = fillDoc(doc, both(10));
    expect(docBlockNames(out)).toEqual(['run', 'goals', 'figures:g4', 'g11', 'g5']);
    for (const kept of ['# Performance', 'prose stays', 'between', 'the end']) expect(out).toContain(kept);
    expect(out).not.toContain('old run');
    expect(out).not.toContain('| old | table |');
    // the goal table: median (min–max) and met per runtime; a failure says so, its | escaped
    expect(out).toContain('| G4 | Prefetch payoff | ≥ 2.7 | 3.10 (3.00–3.20) | **yes** | 1.60 (1.50–1.70) | no |');
    expect(out).toContain('failed: boom \\| pipe');
    expect(out).toMatch(/Met: Node 2 of 3 \(G4, G11\); Chromium 1 of 3 \(G11\)\./);
    // the run: both adapters, the commit, and no "pending" for a final-sized run
    expect(out).toContain('adapter "node adapter"');
    expect(out).toContain('adapter "browser adapter"');
    expect(out).toContain('code at abcdef0123');
    expect(out).not.toContain('final run pending');
    // a goal's raw figures and run facts
    expect(out).toContain('- Node: prefetchOffMs 30.5 ms (30–31). Run: faultBufferPages 256.');
    // G11 phase by phase, and its total
    expect(out).toContain('| collect | 1.00 (1.00–1.00) | 1.00 (1.00–1.00) |');
    expect(out).toContain('| **host total (all but gpu-wait)** | 2.25 (2.00–2.50) | 2.25 (2.00–2.50) |');
    // the matrix's G5 column with the largest shares
    expect(out).toContain('| triad | 5.00 | no | copy-upload 50 %, other 50 % | 3.00 | **yes** | copy-upload 50 %, other 50 % |');
    // a goal's rows as a table (G11's phases here), one column per figure and runtime
    const rows = renderBlocks(both(10)).get('rows:g11')!;
    expect(rows.split('\n')[0]).toBe('|  | Node usPerPage (µs/page) | Chromium usPerPage (µs/page) |');
    expect(rows).toContain('| collect | 1.00 | 1.00 |');
    expect(renderBlocks(both(10)).get('rows:g4')).toBe('G4 has no table in this run.');
    // filling is idempotent: a second fill from the same run changes nothing
    expect(fillDoc(out, both(10))).toBe(out);
  });

  it('says "(final run pending)" for a check run: under 10 repetitions, no Chromium, or uncommitted code', () => {
    expect(renderBlocks(both(3)).get('run')).toContain('**(final run pending)**: this is a check run (3 repetitions)');
    const nodeOnly: BenchJson = run('node', 10, 3);
    expect(renderBlocks(nodeOnly).get('run')).toMatch(/final run pending.*Node only/);
    expect(renderBlocks(nodeOnly).get('goals')).toContain('| 3.10 (3.00–3.20) | **yes** | – |');
    expect(renderBlocks({ ...both(10), source: { commit: 'abc', dirty: true } }).get('run')).toMatch(/final run pending.*uncommitted code/);
  });

  it('a before run adds its medians as columns; an unknown block name or a wrong JSON is a clear error', () => {
    const before = { ...run('node', 3, 0.9), schema: 'webgpu-hmm-bench/1' } as unknown as BenchJson;
    const goals = renderBlocks(both(10), asBenchJson(before, 'before.json', 'before')).get('goals')!;
    expect(goals.split('\n')[0]).toContain('| Node before |');
    expect(goals).toMatch(/\| G4 \|.*\| 1\.00 \|$/m); // 0.9 and 1.1: median 1
    expect(goals).toMatch(/Before: the same command on the code before issue 15, 3 repetitions; .*compare different definitions\./);
    expect(() => fillDoc('<!-- bench:g13 -->\n<!-- /bench:g13 -->', both(10))).toThrow(DocError);
    expect(() => fillDoc('<!-- bench:g13 -->\n<!-- /bench:g13 -->', both(10))).toThrow(/'g13'/);
    expect(() => asBenchJson({ hello: 1 }, 'x.json')).toThrow(/x\.json: not a bench JSON/);
    expect(() => asBenchJson(before, 'old.json')).toThrow(/old\.json: schema webgpu-hmm-bench\/1/);
    // JSON's null for NaN reads as no figure
    const viaJson = JSON.parse(toJson(both(10) as BenchResult)) as BenchJson;
    expect(renderBlocks(viaJson).get('goals')).toContain('| G9 | Thrash mitigation | ≤ 1 | failed: boom');
  });
});
