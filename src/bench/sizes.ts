// Sizes of one bench run, all derived from one number (`--mib`, the streaming data in MiB) so
// a run scales up or down as a whole. The defaults follow perf-anchors §6 (a 256 MiB cold
// streaming read, 4 KiB pages, 2 MiB blocks); `--quick` scales down for a software adapter.
// From --mib 4 up (the quick default and every real run), three rules make the goals measure
// what they name (issue 15), whatever --mib says:
//   - the G4–G6 stream is at least MIN_STREAM_ROUNDS × the fault buffer (256 faults a round,
//     as UVM's batch), so without prefetch it takes at least 10 fault rounds;
//   - the G7/G8 pool holds at least MIN_EVICTION_UNITS of the largest eviction unit (2 MiB);
//   - the main pool has room for G12's largest size (8 × 2 MiB) twice over.
// The tiny sizes of the tests (--mib 0.25 to 2) keep the old proportions and make no such claim.
// Pure.

import type { BenchOptions } from './args.ts';
import { THP_SIZES } from './figures.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 2 * MiB;
const PAGE = 4 * KiB;

/** The fault buffer the bench gives its devices: at most this many faults reach the host per round (UVM's batch of 256). */
export const FAULT_BUFFER_PAGES = 256;
/** The stream without prefetch must take at least this many fault rounds (issue 15: G4 and G5 then measure something). */
export const MIN_STREAM_ROUNDS = 10;
/** The G7/G8 pool holds at least this many of the largest eviction unit (2 MiB). */
export const MIN_EVICTION_UNITS = 8;
/** The largest eviction unit G7 compares (UVM's 2 MiB root chunk). */
export const LARGEST_EVICTION_UNIT = BLOCK;
/** From this --mib up, the rules above hold. */
export const RULED_FROM_MIB = 4;

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
  /** Device 0: holds every workload and the stream; G8's "fits" device; G12's migrations. */
  mainPoolBytes: number;
  /** Device 1: the oversubscribed workloads of the matrix run against this pool. */
  smallPoolBytes: number;
  /** Device 2: G7 and G8's oversubscribed cyclic stream runs against this pool. */
  evictionPoolBytes: number;
  /** One device memory buffer at most; a larger pool is split over several (perf-anchors §6, last note). */
  maxBufferBytes: number;
  systemRamBytes: number;
  /** Faults delivered per replayable round at most (the devices' faultBufferPages). */
  faultBufferPages: number;
  /** G1/G2/G11: scattered pages per migration / fault round. */
  batchPages: number;
  /** G3: distinct faulting pages per run (serviced at caps 1, 256 and 1024). */
  faultPages: number;
  /** CPU/GPU ping-pong (workload and G9): pages and GPU+CPU phases. */
  pingPongPages: number;
  pingPongIterations: number;
  /** G10 read-mostly check: pages and CPU-read/GPU-read phases (N). */
  readMostlyPages: number;
  readMostlyPhases: number;
  /** G10: the shortest span one timed batch of launches may take (perf-anchors §6: timestamps for spans ≥ 10 ms). */
  minSpanMs: number;
  /** G12: the sizes migrated as huge pages and as 4 KiB pages (hmm-tests benchmark_thp_migration). */
  thpBytes: number[];
}

const roundUp = (n: number, unit: number): number => Math.ceil(n / unit) * unit;
const clamp = (n: number, lo: number, hi: number): number => Math.min(hi, Math.max(lo, n));

export function defaultMib(quick: boolean): number {
  return quick ? 4 : 256;
}

/** The smallest stream whose cold read takes `rounds` fault rounds without prefetch, at `bufferPages` faults a round. */
export function minStreamBytes(bufferPages = FAULT_BUFFER_PAGES, rounds = MIN_STREAM_ROUNDS): number {
  return rounds * bufferPages * PAGE;
}

export function benchSizes(opts: Pick<BenchOptions, 'quick' | 'mib'>): BenchSizes {
  const mib = opts.mib ?? defaultMib(opts.quick);
  const scale = mib * MiB;
  const ruled = mib >= RULED_FROM_MIB;
  const streamBytes = ruled ? roundUp(Math.max(scale, minStreamBytes()), MiB) : scale;
  const arrayBytes = Math.max(64 * KiB, scale / 16);
  // the matrix's oversubscribed workloads: at least two 2 MiB units from --mib 4 up, one below
  const smallPoolBytes = roundUp(clamp(scale, BLOCK, 64 * MiB), BLOCK);
  const evictionPoolBytes = ruled ? roundUp(clamp(scale, MIN_EVICTION_UNITS * LARGEST_EVICTION_UNIT, 64 * MiB), BLOCK) : smallPoolBytes;
  // the main pool: the stream with room to spare, the matrix, G8's "fits" run (1.25x the
  // eviction pool), and G12's sizes (one at a time, each as huge pages and then as 4 KiB pages)
  const thpRoom = ruled ? 2 * Math.max(...THP_SIZES) : 0;
  const mainPoolBytes = roundUp(Math.max(1.5 * streamBytes, 8 * arrayBytes, 2 * smallPoolBytes, 1.5 * evictionPoolBytes, thpRoom), BLOCK);
  return {
    streamBytes,
    arrayBytes,
    gatherTableBytes: 4 * arrayBytes,
    gatherDensities: [1 / 64, 1 / 8, 1 / 2],
    chaseChains: 64,
    chaseSteps: opts.quick || scale < 64 * MiB ? 16 : 64,
    chaseTableBytes: 2 * arrayBytes,
    mainPoolBytes,
    smallPoolBytes,
    evictionPoolBytes,
    maxBufferBytes: 128 * MiB,
    systemRamBytes: roundUp(mainPoolBytes + 2 * smallPoolBytes + 2 * evictionPoolBytes + 32 * MiB, MiB),
    faultBufferPages: FAULT_BUFFER_PAGES,
    batchPages: 256,
    faultPages: clamp(scale / PAGE, 256, 2048),
    pingPongPages: 16,
    pingPongIterations: opts.quick || scale < 64 * MiB ? 8 : 20,
    readMostlyPages: 64,
    readMostlyPhases: 4,
    minSpanMs: 10,
    // every size that fits in half the main pool (all of them from --mib 4 up; up to one huge page at the test sizes)
    thpBytes: THP_SIZES.filter((b) => b <= mainPoolBytes / 2),
  };
}

export function defaultReps(quick: boolean): number {
  return quick ? 3 : 20;
}

export function defaultWarmup(quick: boolean): number {
  return quick ? 0 : 1;
}
