// The replay simulator's machine for unit tests (mutants.replay*.test.ts): a trace of a few
// devices over one address space, and the state the tests compare (each device's table, the
// pages living on devices, the held copies, the reverse map).
import { builtinPolicies } from '../../src/replay/builtins.ts';
import type { FaultTrace, TraceFrame, TraceVma } from '../../src/replay/format.ts';
import type { SimDevice } from '../../src/replay/sim/device.ts';
import type { FaultCtx } from '../../src/replay/sim/faultIn.ts';
import { Machine } from '../../src/replay/sim/machine.ts';
import type { SimSpace } from '../../src/replay/sim/space.ts';
import { NO_PREFETCH, TraceBuilder, range } from './replayTraces.ts';

const RW: TraceVma = { start: 100, end: 120, prot: 'rw', shared: false, huge: false };

/** A machine of `frames.length` devices (gpu0, gpu1, ...) over one address space (id 1) mapped as `vmas`. */
export function machine(opts: { frames?: number[]; vmas?: TraceVma[]; unit?: number; initial?: TraceFrame[][] } = {}) {
  const frames = opts.frames ?? [8];
  const b = new TraceBuilder({ frames: frames[0]!, unit: opts.unit, vmas: opts.vmas ?? [RW] });
  const trace: FaultTrace = b.trace;
  const d0 = trace.devices[0]!;
  trace.devices = frames.map((n, id) => ({
    ...d0,
    id,
    name: `gpu${id}`,
    frames: n,
    initial: { clockHand: 0, launches: 0, freeOrder: range(0, n), frames: opts.initial?.[id] ?? [] },
  }));
  const m = new Machine(trace);
  const space = m.space(1);
  space.setMappings(trace.mappings[0]!);
  const policies = builtinPolicies(NO_PREFETCH, trace.devices[0], new Set());
  const ctx = (extra: Partial<FaultCtx> = {}): FaultCtx => ({ policies, where: 'test', ...extra });
  return { m, trace, space, d0: m.devices[0]!, d1: m.devices[1]!, policies, ctx };
}

/** A device's table for space 1: [page, frame, writable] ascending. */
export const mapped = (dev: SimDevice): [number, number, boolean][] =>
  [...dev.table(1).pages()]
    .sort((a, b) => a - b)
    .map((p) => {
      const e = dev.table(1).lookup(p)!;
      return [p, e.frame, e.write];
    });
/** Pages living on a device: [page, device, frame] ascending. */
export const priv = (s: SimSpace): [number, number, number][] => [...s.priv].sort((a, b) => a[0] - b[0]).map(([p, w]) => [p, w.dev, w.frame]);
/** RAM pages a device holds a writable copy of: [page, device] ascending. */
export const held = (s: SimSpace): [number, number][] => [...s.held].sort((a, b) => a[0] - b[0]);
/** What the reverse map says frame f holds: [space, page, copy]. */
export const rmap = (dev: SimDevice, f: number): [number, number, number] => [dev.rmapSpace[f]!, dev.rmapPage[f]!, dev.rmapCopy[f]!];
