// replayTrace: a fault trace replayed against policies in a deterministic simulation of the
// mechanism (sim/): no GPU, no clock, the same answers every time. With no policy set it
// replays the built-ins the trace ran under; with one, the set's policies replace theirs (what
// it leaves out stays built-in), and the very objects given are asked, through the same guard
// the mechanism uses, so a policy module runs unchanged. A policy that throws or answers
// nonsense stops the replay with the guard's HmmError (naming the policy and the round); a
// dispatch the mechanism would fail (ESEGV, ENOMEM, EBUSY) is reported failed and the replay
// goes on, as the program would.

import { HmmError } from '../errors.ts';
import type { PolicySet } from '../policy/types.ts';
import { builtinPolicies, withSet } from './builtins.ts';
import { addMetrics, zeroMetrics, type FaultTrace, type Metrics } from './format.ts';
import { replayDispatch } from './sim/dispatch.ts';
import { replayCpu, replayMove } from './sim/events.ts';
import { Machine } from './sim/machine.ts';

export interface DispatchReplay {
  /** Its index in trace.events. */
  event: number;
  kernel: string;
  device: number;
  mode: 'replayable' | 'validated';
  /** What it cost in the replay, and in the recorded run. */
  metrics: Metrics;
  real: Metrics;
  /** It failed in the replay (the HmmError's message), or in the recorded run. */
  error?: string;
  realError?: string;
}

export interface ReplayResult {
  /** The policy set's name, or 'built-ins' for the policies recorded. */
  name: string;
  dispatches: DispatchReplay[];
  /** Moves between dispatches (CPU faults, explicit calls). */
  between: Metrics;
  total: Metrics;
  /** What the replay could not do as recorded (policies it could not rebuild, ...). */
  notes: string[];
}

/** Replay `trace` under `set` (default: the built-in policies the trace ran under). */
export function replayTrace(trace: FaultTrace, set?: PolicySet): ReplayResult {
  const m = new Machine(trace);
  const notes = new Set<string>();
  const quiet = new Set<string>(); // with a set, what stands in for a user's policy is the set's business
  const between = zeroMetrics();
  const dispatches: DispatchReplay[] = [];
  trace.events.forEach((ev, i) => {
    if (ev.kind !== 'dispatch') {
      m.metrics = between;
      if (ev.kind === 'cpu') replayCpu(m, ev);
      else {
        if (ev.mappings !== undefined) m.space(ev.space).setMappings(trace.mappings[ev.mappings]!);
        replayMove(m, ev, withSet(builtinPolicies(trace.devices[ev.device]!.policies, trace.devices[ev.device], quiet), set));
      }
      return;
    }
    const metrics = zeroMetrics();
    m.metrics = metrics;
    const policies = withSet(builtinPolicies(ev.policies, trace.devices[ev.device], set ? quiet : notes), set);
    const out: DispatchReplay = { event: i, kernel: ev.kernel, device: ev.device, mode: ev.mode, metrics, real: ev.real };
    if (ev.error !== undefined) out.realError = ev.error;
    try {
      replayDispatch(m, trace, ev, policies);
    } catch (e) {
      // a policy's own error (EINVAL from the guard) stops the replay: the set is wrong, not the run
      if (!(e instanceof HmmError) || e.code === 'EINVAL') throw e;
      out.error = e.message;
    }
    dispatches.push(out);
  });
  const total = zeroMetrics();
  for (const d of dispatches) addMetrics(total, d.metrics);
  addMetrics(total, between);
  return { name: set?.name ?? 'built-ins', dispatches, between, total, notes: [...notes] };
}
