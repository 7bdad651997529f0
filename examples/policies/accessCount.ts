// Access-count placement: copy a page until a device has faulted on it N times, then migrate.
//
// What it decides: for a page a device faults on, whether it moves to the device ('migrate')
// or stays in RAM with the device mapping a copy ('copy') (PlacementPolicy.decide). Why: a
// page a kernel touches once is not worth moving, and moving it costs twice when the CPU
// wants it back; a page the device keeps coming back for is. This is AMD's adaptive migration
// idea: serve the first faults remotely, migrate once the count shows the page is hot.
// `ctx.faults` counts this device's replayable faults on the page, the current one included.
//
// Advice and thrashing come first, much as the built-in (advicePlacement) reads them: preferred
// 'system' always stays a copy, a read-mostly page is copied for reads, a thrashing page stays
// in RAM; and a page whose preferred location is this device migrates at its first fault.
// The mechanism asks the same question about prefetch candidates (with their counts, usually
// 0): under this policy only pages that would migrate are prefetched.
//
// Use it:
//   createSystem({ systemRamBytes, devices: [{ memoryBytes, policy: { name: 'accessCount(3)', placement: accessCountPlacement({ migrateAfter: 3 }) } }] })
//   m.dispatch(kernel, { mode: 'replayable', workgroups, policy: { placement: accessCountPlacement() } })
//   npm run bench -- --policy examples/policies/accessCount.ts
// sys.explain(mm, va).history shows each decision, e.g. placement 'accessCount(2): copy'.
import type { PlacementPolicy, PolicySet } from 'webgpu-hmm';

export interface AccessCountOptions {
  /** Faults on a page (by one device) before it migrates there; copies until then (default 2). */
  migrateAfter?: number;
}

export function accessCountPlacement({ migrateAfter = 2 }: AccessCountOptions = {}): PlacementPolicy {
  return {
    name: `accessCount(${migrateAfter})`,
    decide(ctx) {
      const { preferred, readMostly } = ctx.advice;
      if (preferred === 'system' || ctx.thrashing || (readMostly && !ctx.write)) return 'copy';
      if (preferred === ctx.device) return 'migrate';
      return ctx.faults >= migrateAfter ? 'migrate' : 'copy';
    },
  };
}

const accessCount: PolicySet = { name: 'accessCount', placement: accessCountPlacement() };
export default accessCount;
