// A CPU thread for the tests: synchronous loads and stores on a shared address space,
// exposed over comlink. Each method is one thing a test does from a worker.

import { CpuThread, type ThreadHandle } from '../../src/workers/cpuThread.ts';
import { exposeThread } from '../../src/workers/threads.ts';

let mem: CpuThread | undefined;
const m = (): CpuThread => {
  if (!mem) throw new Error('memWorker: attach(handle) first');
  return mem;
};

const api = {
  attach(handle: ThreadHandle): void {
    mem = new CpuThread(handle);
  },
  loadU32: (va: number) => m().loadU32(va),
  storeU32: (va: number, v: number) => m().storeU32(va, v),
  loadF32: (va: number) => m().loadF32(va),
  storeF32: (va: number, v: number) => m().storeF32(va, v),
  load: (va: number, n: number) => m().load(va, n),
  store: (va: number, data: Uint8Array) => m().store(va, data),
  atomicAddU32: (va: number, v: number) => m().atomicAddU32(va, v),
  /** `rounds` passes over `vas`, adding 1 to each word: the load test's unit of work. */
  addLoop(vas: number[], rounds: number): { ops: number } {
    const t = m();
    for (let r = 0; r < rounds; r++) for (const va of vas) t.atomicAddU32(va, 1);
    return { ops: rounds * vas.length };
  },
  /** Add 1 to each word of `vas` until `ms` have passed; returns how many adds were made per word. */
  addFor(vas: number[], ms: number): number {
    const t = m();
    const end = Date.now() + ms;
    let rounds = 0;
    while (Date.now() < end) {
      for (const va of vas) t.atomicAddU32(va, 1);
      rounds++;
    }
    return rounds;
  },
  /** atomicAdd 1 to each va, over and over, until stop[0] is set; returns the rounds. */
  addUntil(vas: number[], stop: Int32Array): number {
    const t = m();
    let rounds = 0;
    while (Atomics.load(stop, 0) === 0) {
      for (const va of vas) t.atomicAddU32(va, 1);
      rounds++;
    }
    return rounds;
  },
  counters: () => ({ accesses: m().accesses, slowPaths: m().slowPaths }),
};

export type MemWorker = typeof api;
void exposeThread(api);
