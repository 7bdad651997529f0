// The simulated machine: its devices and address spaces, built from a trace's starting state,
// and where the counts of what happens go right now (a dispatch's metrics, or the metrics of
// the moves between dispatches).

import { HmmError } from '../../errors.ts';
import { zeroMetrics, type FaultTrace, type Metrics } from '../format.ts';
import { SimDevice } from './device.ts';
import { SimSpace } from './space.ts';

export class Machine {
  readonly devices: SimDevice[];
  private readonly spaces = new Map<number, SimSpace>();
  /** Counts go here (the caller swaps it per dispatch). */
  metrics: Metrics = zeroMetrics();
  /** The recorded clock (ms since recording began) at the event being replayed: the thrashing detector's time. */
  now = 0;

  constructor(trace: FaultTrace) {
    for (const s of trace.spaces) this.spaces.set(s.id, new SimSpace(s));
    this.devices = trace.devices.map((d) => new SimDevice(d));
    for (const d of trace.devices) {
      for (const f of d.initial.frames) {
        const s = this.space(f.space);
        if (!f.copy) s.priv.set(f.page, { dev: d.id, frame: f.frame });
        else if (f.write) s.held.set(f.page, d.id);
      }
    }
  }

  space(id: number): SimSpace {
    const s = this.spaces.get(id);
    if (!s) throw new HmmError('EINVAL', `fault trace: address space ${id} is not in the trace's spaces`);
    return s;
  }
}
