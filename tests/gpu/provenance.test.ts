// Provenance: every move of a page carries its cause, sys.explain(mm, va) tells a page's story,
// and the Perfetto export links each fault round to the moves it caused (flow events) beside
// counter tracks of resident pages and bytes moved.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE } from '../../src/index.ts';
import { failure, makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

const TOUCH = /* wgsl */ `
struct U { base: u32, pages: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.pages) { return; }
  let p = u.base + gid.x * 4096u;
  hmm_store_u32(p, hmm_load_u32(p) + 1u);
}`;

describe('provenance', () => {
  it('explain tells each move and its cause: the GPU fault (kernel, round), the prefetch (policy), the placement decision, the CPU fault', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: TOUCH, label: 'touch' });
    const va = mm.mmap(16 * P);
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 1, 0, 0]) }); // faults page 0; prefetch brings its 64 KiB
    const faulted = sys.explain(mm, va);
    expect(faulted.now).toBe('device');
    expect(faulted.history).toHaveLength(1);
    expect(faulted.history[0]).toMatchObject({
      move: 'to-device',
      device: dev.id,
      cause: { kind: 'gpu-fault', kernel: 'touch', round: 1 },
      placement: 'advice: migrate',
    });
    expect(faulted.history[0]!.why).toContain("GPU fault: kernel 'touch'");
    const company = sys.explain(mm, va + 5 * P).history[0]!;
    expect(company).toMatchObject({ move: 'to-device', cause: { kind: 'prefetch', policy: 'density 51% / 64 KiB' } });
    await mm.read(va, 4);
    const home = sys.explain(mm, va + 100).history; // any address in the page
    expect(home.map((e) => e.move)).toEqual(['to-device', 'to-system']);
    expect(home[1]).toMatchObject({ cause: { kind: 'cpu-fault', thread: 'main' } });
    expect(sys.explain(mm, va).now).toBe('ram');
  });

  it('evictions say which policy chose the page and for what; explicit calls say which call', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 8 * P, evictionBytes: 4096 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: TOUCH, label: 'stream' });
    const va = mm.mmap(12 * P);
    await m.migrateToDevice(va, 4);
    expect(sys.explain(mm, va).history[0]).toMatchObject({ move: 'to-device', cause: { kind: 'call' } });
    expect(sys.explain(mm, va).history[0]!.why).toContain('m.migrateToDevice()');
    await m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va + 4 * P, 8, 0, 0]) });
    const evicted = [0, 1, 2, 3].map((i) => sys.explain(mm, va + i * P).history).find((h) => h.some((e) => e.cause.kind === 'eviction'));
    expect(evicted).toBeDefined();
    const ev = evicted!.find((e) => e.cause.kind === 'eviction')!;
    expect(ev).toMatchObject({ move: 'to-system', cause: { kind: 'eviction', policy: 'clock' } });
    expect(ev.why).toContain("by 'clock' to make room for dispatch 'stream' round");
    await dev.release();
    const released = sys.explain(mm, va + 11 * P).history.at(-1)!;
    expect(released.why).toContain('gpu0.release()');
  });

  it('the Perfetto export links a fault round to the migrations it caused and carries counter tracks', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: TOUCH, label: 'touch' });
    const va = mm.mmap(4 * P);
    await m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va, 4, 0, 0]) });
    const { traceEvents } = sys.trace().toChromeTrace() as {
      traceEvents: { ph: string; id?: number; name: string; cat?: string; args?: Record<string, unknown> }[];
    };
    const starts = traceEvents.filter((e) => e.ph === 's');
    const ends = traceEvents.filter((e) => e.ph === 'f');
    expect(starts.length).toBeGreaterThan(0);
    expect(ends.length).toBeGreaterThan(0);
    for (const f of ends) expect(starts.some((s) => s.id === f.id)).toBe(true);
    const counters = traceEvents.filter((e) => e.ph === 'C');
    expect(counters.map((c) => c.name)).toContain('resident pages gpu0');
    expect(counters.every((c) => typeof c.args?.value === 'number')).toBe(true);
  });

  it('explain refuses what is not an address space of this system, or not an address', async () => {
    const sys = await makeSystem();
    const other = await makeSystem();
    const e1 = await failure(Promise.resolve().then(() => sys.explain(other.createAddressSpace(), 0x10000)));
    expect(e1).toBeInstanceOf(HmmError);
    expect(e1.message).toContain('not an address space of this system');
    expect((await failure(Promise.resolve().then(() => sys.explain(sys.createAddressSpace(), -1)))).code).toBe('EINVAL');
  });
});
