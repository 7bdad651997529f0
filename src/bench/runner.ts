// The bench runner: one System with three devices (a big pool that holds every workload, a
// small pool the matrix oversubscribes, and a pool of at least eight 2 MiB units that G7/G8
// oversubscribe), the workload × strategy matrix with the phase breakdown of every run, then the
// goal microbenchmarks, reported as medians with min and max. It imports nothing from node: so the perf page runs
// exactly this code; the CLI (cli.ts) and the page only present what it returns. User policy
// sets (`--policy`, loaded by the CLI) run every workload as strategy `policy:<name>`, beside
// and interleaved with the built-in strategies.

import { createSystem, type AddressSpace, type HmmDevice, type HmmKernel, type PolicySet, type System } from 'webgpu-hmm';
import type { BenchOptions } from './args.ts';
import { g5Matrix, phaseShares, PHASES, type G5Row, type Phase, type PhaseMs, type PhaseOrOther } from './figures.ts';
import { evaluateGoal, GOALS, type GoalId, type GoalResult } from './goals.ts';
import { GOAL_GROUPS, measureGoals, type BenchContext } from './microbench.ts';
import { compileHmm, compilePlain, type KernelName, type PlainKernel } from './shaders.ts';
import { benchSizes, defaultMib, defaultReps, defaultWarmup, type BenchSizes } from './sizes.ts';
import { summarize, type Summary } from './stats.ts';
import { policyKinds, policySetProblem, policyStrategyName, type PolicyKind } from './policySets.ts';
import { PlainRegion, runOnce, runPolicy, STRATEGIES, type AnyStrategyName, type RunOutcome, type StrategyName, type Target } from './strategies.ts';
import { workloadMatrix, type Layout } from './workloads.ts';

export interface CellResult {
  workload: string;
  title: string;
  strategy: AnyStrategyName;
  ms: Summary;
  launches: Summary;
  faultRounds: Summary;
  bytesMoved: Summary;
  /** Pages that crossed between RAM and the device (migrations both ways, device copies). */
  pagesMoved?: Summary;
  /** Pages evicted from the device to make room. */
  evictions?: Summary;
  /** Pages brought in ahead of a fault (prefetch policy or explicit prefetch). */
  prefetchedPages?: Summary;
  /** Milliseconds per run in each phase of fault service and migration (Stats.phaseMs deltas); absent for explicit copies. */
  phases?: Record<Phase, Summary>;
  /**
   * Each phase's share of the run's wall time (phase ms summed over the repetitions ÷ wall ms
   * summed), and `other`, the rest; absent for explicit copies.
   */
  phaseShares?: Record<PhaseOrOther, number>;
  /** Set when a run failed (wrong result or an error); the figures then cover the runs before it. */
  error?: string;
}

/** A user policy set the bench ran (`--policy`): its strategy name and its policies by kind. */
export interface PolicyInfo {
  name: string;
  strategy: `policy:${string}`;
  policies: Partial<Record<PolicyKind, string>>;
  /** The module it came from (the CLI fills it in). */
  source?: string;
}

export interface BenchResult {
  schema: 'webgpu-hmm-bench/2';
  runtime: 'node' | 'browser';
  adapter: string;
  /** navigator.userAgent in a browser, the Node version otherwise. */
  platform: string;
  options: { quick: boolean; mib: number; reps: number; warmup: number; only: BenchOptions['only'] };
  sizes: BenchSizes & { mainPoolBuffers: number; smallPoolBuffers: number; evictionPoolBuffers: number };
  /** The fault buffer in force on the devices (faultBufferPages): at most this many faults reach the host per round. */
  faultBufferPages: number;
  startedAt: string;
  durationMs: number;
  /** g1 … g12 (absent with --only workloads). */
  goals: Partial<Record<GoalId, GoalResult>>;
  workloads: CellResult[];
  /**
   * The matrix's G5 column: replayable+prefetch ÷ explicit copies on triad, stencil and the
   * gathers (target ≤ 4), each with the phase shares of its replayable+prefetch run.
   */
  g5Matrix: G5Row[];
  /** The user policy sets that ran beside the built-ins (absent without --policy). */
  policies?: PolicyInfo[];
}

export interface Progress {
  done: number;
  total: number;
  label: string;
}

/** The VA every workload region is mapped at (2 MiB aligned; each workload has its own address space). */
const WORKLOAD_BASE = 0x1000_0000;

function platform(): string {
  if (typeof navigator !== 'undefined' && typeof navigator.userAgent === 'string' && typeof window !== 'undefined') return navigator.userAgent;
  const p = (globalThis as { process?: { version?: string; platform?: string; arch?: string } }).process;
  return p ? `Node ${p.version} ${p.platform}/${p.arch}` : 'unknown';
}

type Samples = Record<'ms' | 'launches' | 'faultRounds' | 'bytesMoved' | 'pagesMoved' | 'evictions' | 'prefetchedPages', number[]> & { phases: PhaseMs[] };

/** Per-phase summaries and shares of a cell's runs (nothing for explicit copies, which have no phases). */
export function cellPhases(strategy: string, ms: readonly number[], phases: readonly PhaseMs[]): Pick<CellResult, 'phases' | 'phaseShares'> {
  if (strategy === 'explicit' || phases.length === 0) return {};
  const out = {} as Record<Phase, Summary>;
  for (const p of PHASES) out[p] = summarize(phases.map((x) => x[p]));
  return { phases: out, phaseShares: phaseShares(phases.map((x, i) => ({ ms: ms[i]!, phases: x }))) };
}

/** Check the policy sets: each a PolicySet, no two with one name, as many as --policy named. */
function checkPolicies(opts: BenchOptions, policies: readonly PolicySet[]): void {
  const files = opts.policy ?? [];
  if (files.length !== policies.length)
    throw new Error(
      `--policy ${files.join(',')}: ${files.length} module(s) named but ${policies.length} policy set(s) loaded (npm run bench loads them; runBench takes the sets)`,
    );
  const names = new Set<string>();
  policies.forEach((set, i) => {
    const problem = policySetProblem(set);
    if (problem !== null) throw new Error(`policy set ${files[i] ?? i}: ${problem}`);
    if (names.has(set.name)) throw new Error(`two policy sets are named '${set.name}': strategy ${policyStrategyName(set)} would be both`);
    names.add(set.name);
  });
}

/** What runBench takes beside the command-line options. */
export interface RunExtras {
  /**
   * User policy sets: what the `--policy` files default-export, loaded by the caller (the CLI),
   * in the order of `opts.policy`. Each runs on every workload as strategy `policy:<name>`.
   */
  policies?: readonly PolicySet[];
  /** Run only the workloads with these names (e.g. 'triad', 'oversub 2x'); all by default. */
  workloads?: readonly string[];
}

export async function runBench(opts: BenchOptions, onProgress: (p: Progress) => void = () => {}, extras: RunExtras = {}): Promise<BenchResult> {
  const policies = extras.policies ?? [];
  checkPolicies(opts, policies);
  const started = performance.now();
  const sizes = benchSizes(opts);
  const reps = opts.reps ?? defaultReps(opts.quick);
  const warmup = opts.warmup ?? defaultWarmup(opts.quick);
  // The fault buffer (UVM's 256 faults a round) set explicitly, so the sizes' rules hold
  // whatever the library's default.
  const fb = { faultBufferPages: sizes.faultBufferPages };
  const sys: System = await createSystem({
    systemRamBytes: sizes.systemRamBytes,
    devices: [
      { label: 'main', memoryBytes: sizes.mainPoolBytes, maxBufferBytes: sizes.maxBufferBytes, ...fb },
      { label: 'small', memoryBytes: sizes.smallPoolBytes, maxBufferBytes: sizes.maxBufferBytes, ...fb },
      { label: 'evict', memoryBytes: sizes.evictionPoolBytes, maxBufferBytes: sizes.maxBufferBytes, ...fb },
    ],
  });
  try {
    const [main, small, evict] = sys.devices as [HmmDevice, HmmDevice, HmmDevice];
    const matrix = opts.only === 'goals' ? [] : workloadMatrix(sizes);
    const unknown = extras.workloads?.find((n) => !matrix.some((w) => w.name === n));
    if (unknown !== undefined && opts.only !== 'goals') throw new Error(`no workload '${unknown}' (there are ${matrix.map((w) => `'${w.name}'`).join(', ')})`);
    const workloads = extras.workloads ? matrix.filter((w) => extras.workloads!.includes(w.name)) : matrix;
    const goalsWanted = opts.only !== 'workloads';
    // the built-in strategies, then one per policy set
    const setOf = new Map<AnyStrategyName, PolicySet>(policies.map((p) => [policyStrategyName(p), p]));
    const strategies: AnyStrategyName[] = [...STRATEGIES, ...setOf.keys()];
    const run = (s: AnyStrategyName, w: (typeof workloads)[number], t: Target): Promise<RunOutcome> => {
      const set = setOf.get(s);
      return set ? runPolicy(set, w, t) : runOnce(s as StrategyName, w, t);
    };
    const total = workloads.length * strategies.length * (reps + warmup) + (goalsWanted ? GOAL_GROUPS * (reps + warmup) : 0);
    let done = 0;
    const tick = (label: string): void => onProgress({ done: ++done, total, label });
    onProgress({ done, total, label: 'compiling kernels' });

    // Every kernel, compiled up front on the device that runs it: compile time is never timed.
    const kernelsOf = new Map<HmmDevice, KernelName[]>([
      [main, ['triad', 'gather', 'chase', 'stencil', 'stream', 'scale', 'increment', 'touch']],
      [small, ['scale']],
      [evict, ['scale']],
    ]);
    const hmm = new Map<HmmDevice, Map<KernelName, HmmKernel>>();
    const plain = new Map<HmmDevice, Map<KernelName, PlainKernel>>();
    for (const [dev, names] of kernelsOf) {
      hmm.set(dev, new Map(await Promise.all(names.map(async (n) => [n, await compileHmm(dev, n)] as const))));
      plain.set(dev, new Map(await Promise.all(names.map(async (n) => [n, await compilePlain(dev.device, n)] as const))));
    }
    const target = (dev: HmmDevice, mm: AddressSpace, kernel: KernelName, layout: Layout): Target => ({
      dev,
      mm,
      hmm: hmm.get(dev)!.get(kernel)!,
      plain: plain.get(dev)!.get(kernel)!,
      base: WORKLOAD_BASE,
      // half the pool, in whole pages: what a pool-bounded program copies or declares at once
      chunkBytes: Math.floor(dev.memory.frameCount / 2) * 4096,
      region: new PlainRegion(dev.device, layout.bytes, WORKLOAD_BASE),
    });

    // ---- the workload × strategy matrix
    const cells: CellResult[] = [];
    for (const w of workloads) {
      const dev = w.device === 'main' ? main : small;
      const mm = sys.createAddressSpace();
      const t = target(dev, mm, w.kernel, w.layout);
      const samples = new Map<AnyStrategyName, Samples & { error?: string }>();
      for (const s of strategies)
        samples.set(s, { ms: [], launches: [], faultRounds: [], bytesMoved: [], pagesMoved: [], evictions: [], prefetchedPages: [], phases: [] });
      try {
        for (let rep = -warmup; rep < reps; rep++) {
          // strategies interleaved, in alternating order, so slow drift hits them alike
          const order = rep % 2 === 0 ? strategies : [...strategies].reverse();
          for (const s of order) {
            const acc = samples.get(s)!;
            if (acc.error === undefined) {
              try {
                const r = await run(s, w, t);
                if (rep >= 0) {
                  acc.ms.push(r.ms);
                  acc.launches.push(r.launches);
                  acc.faultRounds.push(r.faultRounds);
                  acc.bytesMoved.push(r.bytesMoved);
                  acc.pagesMoved.push(r.pagesMoved);
                  acc.evictions.push(r.evictions);
                  acc.prefetchedPages.push(r.prefetchedPages);
                  acc.phases.push(r.phases);
                }
              } catch (e) {
                acc.error = e instanceof Error ? e.message : String(e);
                await mm.munmap(WORKLOAD_BASE, w.layout.bytes).catch(() => undefined);
              }
            }
            tick(`${w.name} · ${s}`);
          }
        }
      } finally {
        t.region.destroy();
        mm.destroy();
      }
      for (const s of strategies) {
        const a = samples.get(s)!;
        cells.push({
          workload: w.name,
          title: w.title,
          strategy: s,
          ms: summarize(a.ms),
          launches: summarize(a.launches),
          faultRounds: summarize(a.faultRounds),
          bytesMoved: summarize(a.bytesMoved),
          pagesMoved: summarize(a.pagesMoved),
          evictions: summarize(a.evictions),
          prefetchedPages: summarize(a.prefetchedPages),
          ...cellPhases(s, a.ms, a.phases),
          ...(a.error !== undefined ? { error: a.error } : {}),
        });
      }
    }

    // ---- the goals
    const goals: BenchResult['goals'] = {};
    if (goalsWanted) {
      const ctx: BenchContext = {
        sys,
        main,
        small,
        evict,
        sizes,
        reps,
        warmup,
        hmm: (dev, n) => hmm.get(dev)!.get(n)!,
        plain: (dev, n) => plain.get(dev)!.get(n)!,
        tick,
      };
      const measured = await measureGoals(ctx, target);
      for (const spec of GOALS) goals[spec.id] = evaluateGoal(spec, measured[spec.id]);
    }

    return {
      schema: 'webgpu-hmm-bench/2',
      runtime: typeof window !== 'undefined' ? 'browser' : 'node',
      adapter: main.adapterName,
      platform: platform(),
      options: { quick: opts.quick, mib: opts.mib ?? defaultMib(opts.quick), reps, warmup, only: opts.only },
      sizes: {
        ...sizes,
        mainPoolBuffers: main.memory.buffers.length,
        smallPoolBuffers: small.memory.buffers.length,
        evictionPoolBuffers: evict.memory.buffers.length,
      },
      faultBufferPages: main.faultBufferPages,
      startedAt: new Date(Date.now() - (performance.now() - started)).toISOString(),
      durationMs: performance.now() - started,
      goals,
      workloads: cells,
      g5Matrix: g5Matrix(cells),
      ...(policies.length > 0 ? { policies: policies.map((p) => ({ name: p.name, strategy: policyStrategyName(p), policies: policyKinds(p) })) } : {}),
    };
  } finally {
    sys.destroy();
  }
}
