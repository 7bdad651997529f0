// The snapshot / rangeFault correspondence the sequential fuzzer checks after every operation
// (tests/fuzz/snapshotFlags.ts): every row of its table agrees, and every way of breaking a row
// (a flag too many or too few, a wrong order, a PMD where there is none) is named.
import { describe, expect, it } from 'vitest';
import { PROT } from '../../src/device/mirror.ts';
import { PFN_DEVICE_PRIVATE, PFN_ERROR, PFN_VALID, PFN_WRITE, PFN_ZERO } from '../../src/hmm/rangeFault.ts';
import { snapshotFlagsDisagreement, type PageReport } from '../fuzz/snapshotFlags.ts';

const page = (snapshot: number, flags: number, more: Partial<PageReport> = {}): PageReport => ({
  snapshot,
  flags,
  order: 0,
  poisoned: false,
  deviceHuge: false,
  ...more,
});
const V = PFN_VALID;

describe('snapshot vs rangeFault flags', () => {
  it('agree on every row of the table', () => {
    const rows: PageReport[] = [
      page(PROT.ERROR, PFN_ERROR),
      page(PROT.ZERO | PROT.READ, V | PFN_ZERO),
      page(PROT.READ, V),
      page(PROT.WRITE, V | PFN_WRITE),
      page(PROT.READ | PROT.PMD, V, { order: 9 }),
      page(PROT.WRITE | PROT.PMD, V | PFN_WRITE, { order: 9 }),
      page(PROT.DEV_PRIVATE_LOCAL | PROT.READ, V | PFN_DEVICE_PRIVATE),
      page(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE, V | PFN_DEVICE_PRIVATE | PFN_WRITE),
      page(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE | PROT.PMD, V | PFN_DEVICE_PRIVATE | PFN_WRITE, { deviceHuge: true }),
      page(PROT.DEV_PRIVATE_REMOTE, 0),
      page(PROT.NONE, 0),
      // poisoned: ERROR in the snapshot, not valid (or ERROR for an unreadable VMA) in rangeFault
      page(PROT.ERROR, 0, { poisoned: true }),
      page(PROT.ERROR, PFN_ERROR, { poisoned: true }),
    ];
    for (const r of rows) expect(snapshotFlagsDisagreement(r), JSON.stringify(r)).toBeNull();
  });

  it('name every disagreement', () => {
    const bad: [PageReport, string][] = [
      [page(PROT.ERROR, 0), 'ERROR'], // a hole must be PFN_ERROR
      [page(PROT.NONE, PFN_ERROR), 'rangeFault 0'],
      [page(PROT.READ, V | PFN_WRITE), 'rangeFault VALID'], // read-only copy / COW: not writable
      [page(PROT.WRITE, V), 'VALID|WRITE'],
      [page(PROT.ZERO | PROT.READ, V), 'VALID|ZERO'],
      [page(PROT.ZERO | PROT.READ | PROT.PMD, V | PFN_ZERO), 'zero page'],
      [page(PROT.READ, V, { order: 9 }), 'order 0'], // order 9 without PMD
      [page(PROT.WRITE | PROT.PMD, V | PFN_WRITE), 'order 9'], // PMD without order 9
      [page(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE, V | PFN_WRITE), 'DEVICE_PRIVATE'],
      [page(PROT.DEV_PRIVATE_LOCAL | PROT.READ, V | PFN_DEVICE_PRIVATE | PFN_WRITE), 'rangeFault VALID|DEVICE_PRIVATE'],
      [page(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE | PROT.PMD, V | PFN_DEVICE_PRIVATE | PFN_WRITE), 'device table'],
      [page(PROT.DEV_PRIVATE_LOCAL | PROT.WRITE, V | PFN_DEVICE_PRIVATE | PFN_WRITE, { order: 9 }), 'order 0'],
      [page(PROT.DEV_PRIVATE_REMOTE, V), 'rangeFault 0'],
      [page(PROT.NONE | PROT.PMD, 0), 'PMD without'],
      [page(0x03, V), 'not a snapshot value'],
      [page(PROT.NONE, 0, { poisoned: true }), 'ERROR'],
      [page(PROT.ERROR, V, { poisoned: true }), 'not valid'],
    ];
    for (const [r, why] of bad) expect(snapshotFlagsDisagreement(r), JSON.stringify(r)).toContain(why);
  });
});
