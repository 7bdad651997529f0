// The bench's pure parts, without a GPU: statistics, goal verdicts, argument parsing (bad
// arguments give a clear error), sizes, workload layouts and references, and the reports.
import { describe, expect, it } from 'vitest';
import { argsFromQuery, BenchArgError, parseArgs } from '../../src/bench/args.ts';
import { evaluateGoal, GOAL_IDS, GOALS, meets, type GoalResult } from '../../src/bench/goals.ts';
import { renderHtmlReport } from '../../src/bench/html.ts';
import { fmt, formatText, tablesHtml, toJson } from '../../src/bench/report.ts';
import type { BenchResult } from '../../src/bench/runner.ts';
import { grid } from '../../src/bench/shaders.ts';
import { benchSizes } from '../../src/bench/sizes.ts';
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
  it('defines G1..G10 with the targets of perf-anchors §6', () => {
    expect(GOAL_IDS).toEqual(['g1', 'g2', 'g3', 'g4', 'g5', 'g6', 'g7', 'g8', 'g9', 'g10']);
    const t = Object.fromEntries(GOALS.map((g) => [g.id, `${g.direction} ${g.target}`]));
    expect(t).toEqual({
      g1: '>= 0.5', g2: '<= 2', g3: '>= 50', g4: '>= 2.7', g5: '<= 4',
      g6: '<= 1.05', g7: '>= 1.5', g8: '<= 3', g9: '<= 0.25', g10: '<= 1.25',
    });
    for (const g of GOALS) expect(g.anchor.length).toBeGreaterThan(20);
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
    // a check with no target is information, and a missing check has no samples
    const cap = r.checks.find((c) => c.key === 'cap256')!;
    expect(cap.met).toBeNull();
    expect(Number.isNaN(cap.ratio)).toBe(true);
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
      quick: true, json: 'out.json', html: 'r.html', reps: 5, mib: 16, warmup: 0, only: 'goals', browser: true, help: false,
    });
    expect(parseArgs(['--mib', '0.25']).mib).toBe(0.25);
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
  ];
  for (const [argv, message] of bad) {
    it(`refuses ${argv.join(' ')}`, () => {
      expect(() => parseArgs(argv)).toThrow(BenchArgError);
      expect(() => parseArgs(argv)).toThrow(message);
    });
  }

  it('URL parameters go through the same rules', () => {
    expect(parseArgs(argsFromQuery(new URLSearchParams('quick=1&reps=2&mib=1&only=workloads')))).toMatchObject({ quick: true, reps: 2, mib: 1, only: 'workloads' });
    expect(parseArgs(argsFromQuery(new URLSearchParams('quick=0'))).quick).toBe(false);
    expect(() => argsFromQuery(new URLSearchParams('quick=maybe'))).toThrow(/\?quick=maybe: expected 1 or 0/);
    expect(() => parseArgs(argsFromQuery(new URLSearchParams('reps=x')))).toThrow(/--reps x/);
  });
});

describe('bench sizes and workloads', () => {
  it('sizes follow --mib: whole pages, pools in 2 MiB blocks, the stream fits the main pool, oversubscription leaves the small one', () => {
    for (const mib of [0.25, 1, 4, 256]) {
      const s = benchSizes({ quick: mib < 256, mib });
      expect(s.streamBytes).toBe(mib * (1 << 20));
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

describe('bench reports', () => {
  const goal = (id: GoalResult['id'], ratio: number, met: boolean): GoalResult => ({
    ...evaluateGoal(GOALS.find((g) => g.id === id)!, { ratios: [ratio] }),
    met,
  });
  const result: BenchResult = {
    schema: 'webgpu-hmm-bench/1',
    runtime: 'node',
    adapter: 'test <adapter> & co',
    platform: 'Node',
    options: { quick: true, mib: 1, reps: 1, warmup: 0, only: 'all' },
    sizes: { ...benchSizes({ quick: true, mib: 1 }), mainPoolBuffers: 1, smallPoolBuffers: 1 },
    startedAt: '2026-01-01T00:00:00.000Z',
    durationMs: 1234,
    goals: { g1: goal('g1', 0.75, true), g2: { ...goal('g2', NaN, false), error: 'no </script> here' } },
    workloads: [
      { workload: 'triad', title: 't', strategy: 'explicit', ms: summarize([2]), launches: summarize([1]), faultRounds: summarize([0]), bytesMoved: summarize([10]) },
      { workload: 'triad', title: 't', strategy: 'validated', ms: summarize([6]), launches: summarize([1]), faultRounds: summarize([0]), bytesMoved: summarize([10]) },
    ],
  };

  it('fmt keeps about three significant digits', () => {
    expect([fmt(0.0041), fmt(0.123), fmt(1.234), fmt(12.34), fmt(123.4), fmt(12345), fmt(NaN)]).toEqual(['0.0041', '0.123', '1.23', '12.3', '123', '12,345', '–']);
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

  it('JSON: goals by id, NaN as null', () => {
    const j = JSON.parse(toJson(result));
    expect(j.goals.g1).toMatchObject({ ratio: 0.75, target: 0.5, met: true });
    expect(j.goals.g2.ratio).toBeNull();
  });
});
