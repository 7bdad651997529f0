// Sizes of one bench run, all derived from one number (the streaming data in MiB, `--mib`) so
// a run scales up or down as a whole. The defaults follow perf-anchors §6 (a 256 MiB cold
// streaming read, 4 KiB pages, 2 MiB blocks); `--quick` scales down for a software adapter.
// Pure.

import type { BenchOptions } from './args.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 2 * MiB;

export interface BenchSizes {
  /** Goals G4/G5/G6: the cold streaming read. */
  streamBytes: number;
  /** Each array of the workload matrix (triad, stencil, gather indices, ...). */
  arrayBytes: number;
  /** The gather table (indices pick pages of it at several densities). */
  gatherTableBytes: number;
  gatherDensities: number[];
  /** Pointer chase: independent chains, nodes per chain, table the nodes are scattered over. */
  chaseChains: number;
  chaseSteps: number;
  chaseTableBytes: number;
  /** Device 0: holds every workload and the stream; G8's "fits" device. */
  mainPoolBytes: number;
  /** Device 1: the oversubscribed workloads and G7/G8 run against this pool. */
  smallPoolBytes: number;
  /** One device memory buffer at most; a larger pool is split over several (perf-anchors §6, last note). */
  maxBufferBytes: number;
  systemRamBytes: number;
  /** G1/G2: scattered pages per migration / fault round. */
  batchPages: number;
  /** G3: distinct faulting pages per run (serviced at caps 1, 256 and 1024). */
  faultPages: number;
  /** CPU/GPU ping-pong (workload and G9): pages and GPU+CPU phases. */
  pingPongPages: number;
  pingPongIterations: number;
  /** G10 read-mostly check: pages and CPU-read/GPU-read phases (N). */
  readMostlyPages: number;
  readMostlyPhases: number;
}

const roundUp = (n: number, unit: number): number => Math.ceil(n / unit) * unit;
const clamp = (n: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, n));

export function defaultMib(quick: boolean): number {
  return quick ? 4 : 256;
}

export function benchSizes(opts: Pick<BenchOptions, 'quick' | 'mib'>): BenchSizes {
  const streamBytes = (opts.mib ?? defaultMib(opts.quick)) * MiB;
  const arrayBytes = Math.max(64 * KiB, streamBytes / 16);
  // From --mib 4 up, at least two 2 MiB eviction units (with one, 2 MiB eviction (G7) can only
  // empty the pool); the tiny sizes of the tests make do with one.
  const smallPoolBytes = roundUp(clamp(streamBytes, BLOCK, 64 * MiB), BLOCK);
  const mainPoolBytes = roundUp(Math.max(1.5 * streamBytes, 8 * arrayBytes, 2 * smallPoolBytes), BLOCK);
  return {
    streamBytes,
    arrayBytes,
    gatherTableBytes: 4 * arrayBytes,
    gatherDensities: [1 / 64, 1 / 8, 1 / 2],
    chaseChains: 64,
    chaseSteps: opts.quick || streamBytes < 64 * MiB ? 16 : 64,
    chaseTableBytes: 2 * arrayBytes,
    mainPoolBytes,
    smallPoolBytes,
    maxBufferBytes: 128 * MiB,
    systemRamBytes: roundUp(mainPoolBytes + 2 * smallPoolBytes + 32 * MiB, MiB),
    batchPages: 256,
    faultPages: clamp(streamBytes / 4096, 256, 2048),
    pingPongPages: 16,
    pingPongIterations: opts.quick || streamBytes < 64 * MiB ? 8 : 20,
    readMostlyPages: 64,
    readMostlyPhases: 4,
  };
}

export function defaultReps(quick: boolean): number {
  return quick ? 3 : 20;
}

export function defaultWarmup(quick: boolean): number {
  return quick ? 0 : 1;
}
