// The built-in policies a trace names, rebuilt for a replay: the density prefetcher with the
// settings the dispatch ran under, the clock, advice placement and the batch cap. A name that
// is not a built-in's (a user's policy ran) cannot be rebuilt from a trace: the built-in of that
// kind stands in, with a note saying so (replay that policy's module with --policy instead).

import { capBatching } from '../policy/batching.ts';
import { clockEviction } from '../policy/eviction.ts';
import { advicePlacement } from '../policy/placement.ts';
import { DEFAULT_PREFETCH, densityPrefetch } from '../policy/prefetch.ts';
import type { Policies, PolicySet } from '../policy/types.ts';
import type { TraceDevice, TracePolicies } from './format.ts';

/** The built-ins for one dispatch (or a device, between dispatches) as recorded; `notes` collects what could not be rebuilt. */
export function builtinPolicies(p: TracePolicies, device: TraceDevice | undefined, notes: Set<string>): Required<Policies> {
  const base = device?.prefetch ?? DEFAULT_PREFETCH;
  let prefetch: Required<Policies>['prefetch'];
  if (p.prefetch.density) prefetch = densityPrefetch(p.prefetch.density);
  else {
    notes.add(`prefetch policy '${p.prefetch.name}' ran, which is not a built-in: the built-in density prefetcher stands in for it`);
    prefetch = densityPrefetch(base);
  }
  const check = (kind: string, name: string, builtin: string): void => {
    if (name !== builtin) notes.add(`${kind} policy '${name}' ran, which is not a built-in: the built-in '${builtin}' stands in for it`);
  };
  check('eviction', p.eviction, 'clock');
  check('placement', p.placement, 'advice');
  check('batching', p.batching, 'cap');
  return { prefetch, eviction: clockEviction(), placement: advicePlacement(), batching: capBatching() };
}

/** A policy set over the built-ins: what it leaves out stays built-in. */
export function withSet(base: Required<Policies>, set: PolicySet | undefined): Required<Policies> {
  if (!set) return base;
  return {
    prefetch: set.prefetch ?? base.prefetch,
    eviction: set.eviction ?? base.eviction,
    placement: set.placement ?? base.placement,
    batching: set.batching ?? base.batching,
  };
}
