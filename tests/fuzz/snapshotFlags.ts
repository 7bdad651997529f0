// The correspondence between a device's dmirror snapshot byte (Mirror.snapshot, the kernel's
// HMM_DMIRROR_PROT_*) and rangeFault's result for the same page with fault: false (hmm_pfns
// flags and map order). Both describe one fact, what the CPU page table lets that device do with
// the page now, so they must agree for every page state; the sequential fuzzer checks every page
// of its window after every operation (tests/fuzz/differential.test.ts), and
// tests/unit/snapshotFlags.test.ts pins the table down. Pure: no system.
//
//   snapshot                              rangeFault flags                 order
//   ERROR (0xff)                          ERROR                            0
//   ZERO | READ                           VALID | ZERO                     0
//   READ  [| PMD]                         VALID                            9 with PMD, else 0
//   WRITE [| PMD]                         VALID | WRITE                    9 with PMD, else 0
//   DEV_PRIVATE_LOCAL | READ  [| PMD]     VALID | DEVICE_PRIVATE           0 (PMD: the device's own table maps it huge)
//   DEV_PRIVATE_LOCAL | WRITE [| PMD]     VALID | DEVICE_PRIVATE | WRITE  0
//   DEV_PRIVATE_REMOTE, NONE              0 (nothing valid: a fault would bring it in)
//
// The one exception is a poisoned page (its data went with a lost device): the snapshot says
// ERROR, while rangeFault, which looks only at the entry and the VMA, reports it as not valid
// (0: another device's page, faultable; the fault then fails with EPOISON), or ERROR when its
// VMA forbids reads anyway.

import { PFN_DEVICE_PRIVATE, PFN_ERROR, PFN_VALID, PFN_WRITE, PFN_ZERO } from '../../src/hmm/rangeFault.ts';
import { PROT } from '../../src/device/mirror.ts';

export interface PageReport {
  /** Mirror.snapshot's byte for the page. */
  snapshot: number;
  /** rangeFault's flags (fault: false, owner: the same device). */
  flags: number;
  /** rangeFault's order (9 for a page of a 2 MiB huge page in RAM). */
  order: number;
  /** mm.poisoned(page). */
  poisoned: boolean;
  /** The device's page table maps the page as part of a 2 MiB mapping (Mirror.table.isHuge). */
  deviceHuge: boolean;
}

const FLAG_NAMES: [number, string][] = [
  [PFN_VALID, 'VALID'],
  [PFN_WRITE, 'WRITE'],
  [PFN_ERROR, 'ERROR'],
  [PFN_ZERO, 'ZERO'],
  [PFN_DEVICE_PRIVATE, 'DEVICE_PRIVATE'],
];
export const flagNames = (f: number): string =>
  FLAG_NAMES.filter(([bit]) => f & bit)
    .map(([, n]) => n)
    .join('|') || '0';

/**
 * Why the two disagree for one page, or null when they agree (the table in the header). The
 * expected flags and order follow from the snapshot byte; an unknown byte is a disagreement.
 */
export function snapshotFlagsDisagreement(r: PageReport): string | null {
  const got = `snapshot 0x${r.snapshot.toString(16)}, rangeFault ${flagNames(r.flags)} order ${r.order}`;
  if (r.poisoned) {
    if (r.snapshot !== PROT.ERROR) return `${got}: a poisoned page must snapshot as ERROR`;
    if (r.order !== 0 || (r.flags !== 0 && r.flags !== PFN_ERROR))
      return `${got}: rangeFault must report a poisoned page not valid (0, or ERROR for an unreadable VMA)`;
    return null;
  }
  const pmd = (r.snapshot & PROT.PMD) !== 0;
  const base = r.snapshot & ~PROT.PMD;
  let want: number;
  let wantOrder = 0;
  switch (r.snapshot === PROT.ERROR ? -1 : base) {
    case -1:
      want = PFN_ERROR;
      break;
    case PROT.ZERO | PROT.READ:
      if (pmd) return `${got}: the zero page is never part of a PMD`;
      want = PFN_VALID | PFN_ZERO;
      break;
    case PROT.READ:
    case PROT.WRITE:
      want = PFN_VALID | (base === PROT.WRITE ? PFN_WRITE : 0);
      wantOrder = pmd ? 9 : 0;
      break;
    case PROT.DEV_PRIVATE_LOCAL | PROT.READ:
    case PROT.DEV_PRIVATE_LOCAL | PROT.WRITE:
      if (pmd !== r.deviceHuge) return `${got}: PMD on a device-private page must match the device table (${r.deviceHuge ? 'huge' : 'not huge'})`;
      want = PFN_VALID | PFN_DEVICE_PRIVATE | ((base & PROT.WRITE) !== 0 ? PFN_WRITE : 0);
      break;
    case PROT.DEV_PRIVATE_REMOTE:
    case PROT.NONE:
      if (pmd) return `${got}: PMD without a mapping`;
      want = 0;
      break;
    default:
      return `${got}: not a snapshot value`;
  }
  if (r.flags !== want) return `${got}: the snapshot means rangeFault ${flagNames(want)}`;
  if (r.order !== wantOrder) return `${got}: the snapshot means order ${wantOrder}`;
  return null;
}
