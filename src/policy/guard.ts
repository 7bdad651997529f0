// The guard between the mechanism and a policy (types.ts): it calls the policy, turns a throw
// or an answer that is not one into an HmmError that names the policy and where it was asked
// (which dispatch, which fault round), and drops the parts of an answer the mechanism may not
// act on (pages outside what may be populated, victims that were not candidates). Whatever a
// policy returns, nothing is lost: the mechanism acts only on what passed here.

import { HmmError } from '../errors.ts';
import type {
  BatchContext,
  BatchPlan,
  BatchingPolicy,
  EvictionCandidate,
  EvictionPolicy,
  Placement,
  PlacementContext,
  PlacementPolicy,
  PrefetchPolicy,
  PrefetchView,
} from './types.ts';

/** The longest nap a batching policy may ask for (a longer one is a mistake, not a throttle). */
export const MAX_NAP_MS = 1000;

function describe(v: unknown): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return `'${v}'`;
  if (v === null || typeof v !== 'object') return String(v);
  return 'an object';
}

function call<T>(kind: string, policy: { name?: unknown }, where: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new HmmError('EINVAL', `${kind} policy '${String(policy.name)}' threw in ${where}: ${why}`);
  }
}

function nonsense(kind: string, policy: { name?: unknown }, where: string, got: unknown, want: string): HmmError {
  return new HmmError('EINVAL', `${kind} policy '${String(policy.name)}' returned ${describe(got)} in ${where}, not ${want}`);
}

/**
 * The pages to fault in with `faults`: the faults, plus what the policy selects that
 * `view.allowed` admits and that is not resident. Sorted, without duplicates.
 * @throws {@link HmmError} EINVAL: the policy threw, or answered something that is not an array of page numbers; the message names the policy and `where`.
 */
export function askPrefetch(policy: PrefetchPolicy, faults: readonly number[], view: PrefetchView, where: string): number[] {
  const got = call('prefetch', policy, where, () => policy.select(faults, view));
  if (!Array.isArray(got)) throw nonsense('prefetch', policy, where, got, 'an array of pages');
  const out = new Set(faults);
  for (const p of got as unknown[]) {
    if (!Number.isSafeInteger(p) || (p as number) < 0) throw nonsense('prefetch', policy, where, p, 'a page number');
    const page = p as number;
    if (!out.has(page) && !view.resident(page) && view.allowed(page)) out.add(page);
  }
  return [...out].sort((a, b) => a - b);
}

/**
 * The victims among `candidates` (anything the policy names that is not one is ignored), in its order.
 * @throws {@link HmmError} EINVAL: the policy threw, or answered something that is not an array; the message names the policy and `where`.
 */
export function askEviction(policy: EvictionPolicy, need: number, candidates: readonly EvictionCandidate[], where: string): EvictionCandidate[] {
  const got = call('eviction', policy, where, () => policy.victims(need, candidates));
  if (!Array.isArray(got)) throw nonsense('eviction', policy, where, got, 'an array of candidates');
  const offered = new Set(candidates);
  const out: EvictionCandidate[] = [];
  for (const c of got as unknown[]) if (offered.has(c as EvictionCandidate) && !out.includes(c as EvictionCandidate)) out.push(c as EvictionCandidate);
  return out;
}

/**
 * The policy's placement for a faulted page: 'migrate', 'copy' or 'pin'.
 * @throws {@link HmmError} EINVAL: the policy threw, or answered something that is not one of those; the message names the policy and `where`.
 */
export function askPlacement(policy: PlacementPolicy, ctx: PlacementContext, where: string): Placement {
  const got = call('placement', policy, where, () => policy.decide(ctx));
  if (got !== 'migrate' && got !== 'copy' && got !== 'pin') throw nonsense('placement', policy, where, got, "'migrate', 'copy' or 'pin'");
  return got;
}

/**
 * The plan, with `take` kept within [1, faulted].
 * @throws {@link HmmError} EINVAL: the policy threw, or answered something that is not a plan with `take` of at least 1 and `napMs` in [0, 1000]; the message names the policy and `where`.
 */
export function askBatching(policy: BatchingPolicy, ctx: BatchContext, where: string): BatchPlan {
  const got = call('batching', policy, where, () => policy.plan(ctx)) as unknown;
  const plan = got as Partial<BatchPlan> | null;
  if (!plan || typeof plan !== 'object') throw nonsense('batching', policy, where, got, 'a plan { take, napMs }');
  if (!Number.isSafeInteger(plan.take) || (plan.take as number) < 1) throw nonsense('batching', policy, where, plan.take, 'a page count (take) of at least 1');
  const napMs = plan.napMs ?? 0;
  if (typeof napMs !== 'number' || !(napMs >= 0 && napMs <= MAX_NAP_MS)) throw nonsense('batching', policy, where, napMs, `a nap in [0, ${MAX_NAP_MS}] ms`);
  return { take: Math.min(plan.take as number, Math.max(1, ctx.faulted)), napMs };
}

/** A policy given by a user: an object with a string `name` and the one method; EINVAL otherwise. */
export function checkPolicy(kind: 'prefetch' | 'eviction' | 'placement' | 'batching', p: unknown, where: string): void {
  const method = { prefetch: 'select', eviction: 'victims', placement: 'decide', batching: 'plan' }[kind];
  if (!p || typeof p !== 'object' || typeof (p as { name?: unknown }).name !== 'string' || typeof (p as Record<string, unknown>)[method] !== 'function')
    throw new HmmError('EINVAL', `${where}: ${kind} policy ${describe(p)} is not an object with a string name and a ${method}() method`);
}
