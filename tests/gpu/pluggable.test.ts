// User policies on the real adapter (src/policy/types.ts): given to createSystem per device or
// to one dispatch, asked at the points the mechanism decides, and kept safe by it: a policy that
// throws or answers nonsense fails the dispatch with an HmmError naming it and the round, and no
// byte is lost; what a policy may not do (name pages outside the range, non-candidates) is ignored.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE } from '../../src/index.ts';
import type { EvictionCandidate, EvictionPolicy, PlacementContext, PlacementPolicy, PolicySet, PrefetchPolicy, PrefetchView } from '../../src/policy/types.ts';
import { failure, makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

/** Adds 1 to word 0 of each of `pages` pages (one invocation per page, restartable: touch first). */
const BUMP = /* wgsl */ `
struct U { base: u32, pages: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) {
  if (gid.x >= u.pages) { return; }
  let p = u.base + gid.x * 4096u;
  hmm_touch(p, true);
  if (!hmm_ok()) { return; }
  hmm_atomic_add_u32(p, 1u);
}`;

const words = async (read: Promise<Uint8Array>, pages: number) => {
  const b = await read;
  return Array.from({ length: pages }, (_, i) => new DataView(b.buffer, b.byteOffset + i * P).getUint32(0, true));
};

describe('pluggable policies', () => {
  it("a device's placement policy decides migrate or copy, and sees how often the page faulted", async () => {
    const seen: PlacementContext[] = [];
    // AMD's adaptive idea, in miniature: copy until a page has faulted twice, then migrate
    const placement: PlacementPolicy = {
      name: 'after two faults',
      decide: (c) => {
        seen.push(c);
        return c.faults >= 2 ? 'migrate' : 'copy';
      },
    };
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20, policy: { placement } }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const va = mm.mmap(4 * P);
    const run = () => m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va, 4, 0, 0]) });
    await run();
    expect(sys.stats().pagesToDevice ?? 0).toBe(0); // first faults: copies
    await mm.read(va, 4 * P); // the CPU takes the pages back: the next kernel faults again
    await run();
    expect(sys.stats().pagesToDevice).toBe(4); // second fault of each page: it migrates
    expect(await words(mm.read(va, 4 * P), 4)).toEqual([2, 2, 2, 2]);
    expect(seen.some((c) => c.write && c.faults === 2 && c.device === dev.id)).toBe(true);
  });

  it("a dispatch's own prefetch policy runs over the device's: a stride prefetcher brings the pages ahead", async () => {
    const ahead: PrefetchPolicy = { name: 'next 3', select: (faults) => faults.flatMap((p) => [p + 1, p + 2, p + 3]) };
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const va = mm.mmap(4 * P);
    const r = await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 1, 0, 0]), policy: { prefetch: ahead } });
    expect(r.rounds).toBe(2);
    expect(sys.stats().prefetchedPages).toBe(3); // pages 1..3; page 4 is outside the mapping: ignored
    expect(await words(mm.read(va, 4 * P), 4)).toEqual([1, 0, 0, 0]);
  });

  it('an eviction policy picks among the candidates the mechanism offers (FIFO here), with what it needs to know', async () => {
    const offered: EvictionCandidate[][] = [];
    const fifo: EvictionPolicy = {
      name: 'fifo',
      victims(need, candidates) {
        offered.push([...candidates]);
        const out: EvictionCandidate[] = [];
        let freed = 0;
        for (const c of [...candidates].sort((a, b) => a.arrived - b.arrived || a.clock - b.clock)) {
          if (freed >= need) break;
          out.push(c);
          freed += c.pages;
        }
        return out;
      },
    };
    const sys = await makeSystem({ devices: [{ memoryBytes: 16 * P, evictionBytes: 4096, policy: { eviction: fifo } }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const va = mm.mmap(40 * P);
    await m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va, 40, 0, 0]) });
    expect(offered.length).toBeGreaterThan(0);
    const c = offered[0]![0]!;
    expect(Object.keys(c).sort()).toEqual(['accessed', 'arrived', 'clock', 'dirty', 'lastAccess', 'owner', 'page', 'pages']);
    expect(c.owner).toBe(mm.id);
    expect(await words(mm.read(va, 40 * P), 40)).toEqual(new Array(40).fill(1)); // every page exactly once
  });

  it('a policy that throws, or answers nonsense, fails the dispatch with EINVAL naming it and the round; nothing is lost', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const va = mm.mmap(2 * P);
    await mm.write(va, new Uint8Array(2 * P).fill(1));
    const boom: PrefetchPolicy = {
      name: 'boom',
      select: () => {
        throw new Error('no idea');
      },
    };
    const e1 = await failure(m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 2, 0, 0]), policy: { prefetch: boom } }));
    expect(e1.code).toBe('EINVAL');
    expect(e1.message).toContain("prefetch policy 'boom' threw in dispatch 'bump' round 1: no idea");
    const odd: PlacementPolicy = { name: 'odd', decide: () => 'teleport' as 'copy' };
    const e2 = await failure(m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 2, 0, 0]), policy: { placement: odd } }));
    expect(e2.message).toContain("placement policy 'odd' returned 'teleport' in dispatch 'bump' round 1");
    expect(Array.from(await mm.read(va, 8))).toEqual([1, 1, 1, 1, 1, 1, 1, 1]); // no byte lost, none added
    // a good dispatch afterwards works
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 2, 0, 0]) });
    expect(await words(mm.read(va, 2 * P), 2)).toEqual([0x01010102, 0x01010102]);
  });

  it('a policy that is not one is refused where it is given', async () => {
    await expect(makeSystem({ devices: [{ memoryBytes: 1 << 20, policy: { eviction: { name: 'x' } as unknown as EvictionPolicy } }] })).rejects.toThrow(
      /devices\[0\]\.policy: eviction policy .* victims\(\)/,
    );
    await expect(makeSystem({ devices: [{ memoryBytes: 1 << 20, policy: { eviction: undefined, nonsense: 1 } as never }] })).rejects.toThrow(
      /devices\[0\]\.policy\.nonsense/,
    );
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const e = await failure(
      dev.mirror(mm).dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([mm.mmap(P), 1, 0, 0]), policy: { batching: 42 as never } }),
    );
    expect(e).toBeInstanceOf(HmmError);
    expect(e.message).toContain("dispatch 'bump' policy: batching policy 42");
  });

  it("a policy set (a module's default export) is taken whole by createSystem; its name is only a label", async () => {
    const seen: PlacementContext[] = [];
    const set: PolicySet = {
      name: 'my lab set',
      placement: {
        name: 'watch',
        decide: (c) => {
          seen.push(c);
          return 'migrate';
        },
      },
    };
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20, policy: set }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const va = mm.mmap(4 * P);
    await dev.mirror(mm).dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 1, 0, 0]) });
    // placement is asked about the faulting page, and about the pages the prefetcher proposes, and says which
    expect(seen.some((c) => !c.prefetch && c.page === va / P)).toBe(true);
    expect(seen.some((c) => c.prefetch && c.page !== va / P)).toBe(true);
    await expect(makeSystem({ devices: [{ memoryBytes: 1 << 20, policy: { name: 7 } as never }] })).rejects.toThrow(
      /devices\[0\]\.policy\.name 7 is not a string/,
    );
  });

  it('a prefetch policy is told which device, address space, dispatch and round ask (to keep streams apart)', async () => {
    const asked: PrefetchView[] = [];
    const watch: PrefetchPolicy = {
      name: 'watch',
      select: (_f, view) => {
        asked.push(view);
        return [];
      },
    };
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const va = mm.mmap(2 * P);
    await dev.mirror(mm).dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 2, 0, 0]), policy: { prefetch: watch } });
    expect(asked.map((v) => [v.device, v.space, v.round])).toEqual([[dev.id, mm.id, 1]]);
    expect(asked[0]!.dispatch).toBeGreaterThan(0);
  });

  it('an eviction policy that picks none of the units offered leaves the fault short: ENOMEM names the policy; nothing is lost', async () => {
    const none: EvictionPolicy = { name: 'keep everything', victims: () => [] };
    const sys = await makeSystem({ devices: [{ memoryBytes: 8 * P, evictionBytes: 4096 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const k = await dev.createKernel({ code: BUMP, label: 'bump' });
    const va = mm.mmap(12 * P);
    await m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va, 8, 0, 0]) }); // the device is full
    const e = await failure(
      m.dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va + 8 * P, 4, 0, 0]), policy: { eviction: none } }),
    );
    expect(e.code).toBe('ENOMEM');
    expect(e.message).toContain("eviction policy 'keep everything' chose none of the 8 units it was offered");
    expect(await words(mm.read(va, 12 * P), 12)).toEqual([...new Array(8).fill(1), 0, 0, 0, 0]);
  });
});
