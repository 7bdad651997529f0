// DevicePagemap: what the CPU side needs from a device that owns device-private pages
// (dev_pagemap_ops). AddressSpace calls it on CPU faults and munmap; it never sees GPU objects.

import type { AddressSpace } from './addressSpace.ts';
import type { Cause } from '../trace/provenance.ts';

export interface DevicePagemap {
  readonly id: number;
  readonly name: string;
  /** Set once the device is lost: its private pages and dirty held copies are poisoned (EPOISON). */
  readonly lostReason?: string | undefined;
  /**
   * migrate_to_ram: bring these device-private pages of mm back to system RAM (`cause`: why, for provenance).
   * @internal
   */
  migrateToRam(mm: AddressSpace, pages: number[], cause?: Cause): Promise<void>;
  /**
   * A device holding RAM pages writable (HELD) writes them back and lets go.
   * @internal
   */
  revoke(mm: AddressSpace, pages: number[], cause?: Cause): Promise<void>;
  /**
   * The pages are gone (munmap, exit): free their device frames without copying.
   * @internal
   */
  discard(mm: AddressSpace, pages: number[]): void;
  /**
   * mremap: the device-private pages in `frames` now belong to pages `to` of mm (same frames).
   * @internal
   */
  moved(mm: AddressSpace, frames: readonly number[], to: readonly number[]): void;
}
