// Load: several CPU threads and GPU kernels hammer the same pages for a bounded time, with
// migrations and eviction under a small device. No update may be lost, and afterwards every
// page is in a settled state. The figures go to the log for the issue notes. It runs in
// `npm test` for LOAD_MS = 2 s; `npm run load` runs it longer (LOAD_MS, default 15 s there).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import { Kind, pte } from '../../src/mm/cpuPageTable.ts';
import { mailboxStats, spawnThread, threadHandle, type SpawnedThread } from '../../src/workers/threads.ts';
import type { MemWorker } from '../workers/memWorker.ts';
import { makeSystem } from '../gpu/helpers.ts';

const P = PAGE_SIZE;
const WORKERS = 4;
const LOAD_MS = Number(process.env.LOAD_MS ?? 2000);

const ADD = /* wgsl */ `
struct U { base: u32, count: u32, stride: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.count) { return; }
  hmm_atomic_add_u32(u.base + gid.x * u.stride, 1u);
}`;

let threads: SpawnedThread<MemWorker>[] = [];
beforeAll(async () => {
  threads = await Promise.all(Array.from({ length: WORKERS }, () => spawnThread<MemWorker>(new URL('../workers/memWorker.ts', import.meta.url))));
}, 60_000);
afterAll(async () => Promise.all(threads.map((t) => t.terminate())));

describe('load', () => {
  it(`${WORKERS} workers and GPU kernels on the same pages for ${LOAD_MS} ms: no lost update, every page settled`, async () => {
    // a device smaller than the working set, so eviction runs too
    const sys = await makeSystem({ devices: [{ memoryBytes: 8 * P, evictionBytes: 4096 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 16;
    const va = mm.mmap(pages * P);
    await mm.write(va, new Uint8Array(pages * P));
    // one counter per page; each worker adds to all of them, each kernel adds 1 to all of them
    const counters = Array.from({ length: pages }, (_, i) => va + i * P + 8);
    const h = threadHandle(mm);
    await Promise.all(threads.map((t) => t.api.attach(h)));
    const k = await dev.createKernel({ code: ADD, workgroupSize: 64, label: 'load add' });

    const work = Promise.all(threads.map((t) => t.api.addFor(counters, LOAD_MS)));
    let finished = false;
    // A worker's error ends the loop too (awaiting `work` below rethrows it), never a hang.
    void work.then(
      () => (finished = true),
      () => (finished = true),
    );
    let kernels = 0;
    let cpuReads = 0;
    let moves = 0;
    while (!finished) {
      await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va + 8, pages, P, 0]) });
      kernels++;
      await mm.read(va + (kernels % pages) * P, 64);
      cpuReads++;
      if (kernels % 4 === 0) {
        await m.migrateToDevice(va, pages).catch(() => undefined); // ENOENT: pinned, or no room
        await m.migrateToSystem(va, pages);
        moves += 2;
      }
    }
    const perWorker = await work;
    const workerAdds = perWorker.reduce((a, b) => a + b, 0);

    const data = new DataView((await mm.read(va, pages * P)).buffer);
    for (let i = 0; i < pages; i++) expect(data.getUint32(i * P + 8, true), `counter ${i}`).toBe(workerAdds + kernels);

    // settled: nothing migrating or pinned, no waiters left, RAM entries for every page, and
    // the device maps a page only as a read-only copy the CPU entry knows of (DUP). A mapping
    // of a plain RAM page is the stale one that lost updates (docs/concurrency.md).
    for (let p = va / P; p < va / P + pages; p++) {
      const e = mm.pageTable.get(p);
      expect(pte.kind(e)).toBe(Kind.Ram);
      expect(mm.isPinned(p)).toBe(false);
      const d = m.table.lookup(p);
      if (d) expect({ page: p - va / P, dup: pte.isDup(e), write: d.write }).toEqual({ page: p - va / P, dup: true, write: false });
    }
    expect(mm.inflight.size).toBe(0);
    const s = sys.stats();
    console.log(
      `[load] ${LOAD_MS} ms: ${WORKERS} workers made ${workerAdds * pages} atomic adds (${perWorker.join('/')} rounds), ` +
        `${kernels} kernels (${s.dispatches} launches, ${s.gpuFaults ?? 0} fault rounds), ${cpuReads} main-thread reads, ${moves} explicit migrations; ` +
        `mailbox served ${mailboxStats(mm).served} thread faults; pages to device ${s.pagesToDevice ?? 0}, to system ${s.pagesToSystem ?? 0}, ` +
        `evictions ${s.evictions ?? 0}, device copies ${s.deviceCopies ?? 0}, thrash events ${s.thrashEvents ?? 0}, invalidations ${s.invalidations ?? 0}`,
    );
  });
});
