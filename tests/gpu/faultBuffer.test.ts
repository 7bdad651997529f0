// The fault-buffer model and the progress rule (issue 15 items 1 and 3, design-notes §20) on
// the real adapter: a replayable launch delivers at most the device's fault buffer, the faults
// that overflowed come in later rounds with the right results; the settings are checked where
// they are given; dispatches whose working set exceeds the device finish (or fail naming the
// invocation that cannot fit); and every fault round's time is broken into phase spans.
import { describe, expect, it } from 'vitest';
import { HmmError, PAGE_SIZE, createSystem, type Phase } from '../../src/index.ts';
import { failure, makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

/** Invocation i adds 1 to word 0 of page i (uniforms: va, n). */
const PER_PAGE = /* wgsl */ `
@group(0) @binding(0) var<uniform> u: vec4u;
fn kernel(gid: vec3u) {
  if (gid.x >= u.y) { return; }
  let a = u.x + gid.x * 4096u;
  hmm_store_u32(a, hmm_load_u32(a) + 1u);
}`;

describe('fault buffer', () => {
  it('a launch delivers at most faultBufferPages faults; the overflow comes in the next rounds, results right', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 4 << 20, faultBufferPages: 16 }] });
    const dev = sys.devices[0]!;
    expect(dev.faultBufferPages).toBe(16);
    expect(dev.faultBatchPages).toBe(16); // the batch follows the buffer unless set
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 64;
    const va = mm.mmap(pages * P);
    const init = new Uint32Array(pages * 1024);
    for (let i = 0; i < pages; i++) init[i * 1024] = i * 10;
    await mm.write(va, new Uint8Array(init.buffer));
    const k = await dev.createKernel({ code: PER_PAGE, workgroupSize: 64 });
    const c = sys.counters;
    const before = { records: c.get('faultRecords'), rounds: c.get('gpuFaults'), overflow: c.get('faultsOverflowed') };
    const r = await m.dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: new Uint32Array([va, pages, 0, 0]) });
    const rounds = c.get('gpuFaults') - before.rounds;
    // 64 load faults then 64 store faults... at most 16 a round: at least 4 rounds, and
    // the first overflowed 48
    expect(rounds).toBeGreaterThanOrEqual(pages / 16);
    expect(r.rounds).toBe(rounds + 1);
    expect(c.get('faultRecords') - before.records).toBeLessThanOrEqual(rounds * 16);
    expect(c.get('faultsOverflowed') - before.overflow).toBeGreaterThanOrEqual(pages - 16);
    const out = new Uint32Array((await mm.read(va, pages * P)).buffer);
    for (let i = 0; i < pages; i++) expect(out[i * 1024], `page ${i}`).toBe(i * 10 + 1);
  });

  it('the same stream with the buffer at 4096 takes one fault round', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 4 << 20, faultBufferPages: 4096 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const va = mm.mmap(64 * P);
    const k = await dev.createKernel({ code: PER_PAGE, workgroupSize: 64 });
    // (untouched pages: the first round's loads and stores fault together, never-touched pages come writable)
    const r = await dev.mirror(mm).dispatch(k, { mode: 'replayable', workgroups: 1, prefetch: false, uniforms: new Uint32Array([va, 64, 0, 0]) });
    expect(r.rounds).toBe(2);
    expect(sys.counters.get('faultsOverflowed')).toBe(0);
  });
});

describe('faultBufferPages and faultBatchPages are checked where they are given', () => {
  it('createSystem: not an integer in [1, 4096], or a batch larger than the buffer, is EINVAL naming the setting', async () => {
    for (const bad of [0, -1, 1.5, 4097, NaN, '16']) {
      const e = await failure(createSystem({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 1 << 20, faultBufferPages: bad as number }] }));
      expect(e.code).toBe('EINVAL');
      expect(e.message).toMatch(/devices\[0\]\.faultBufferPages/);
    }
    const e = await failure(createSystem({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 1 << 20, faultBufferPages: 32, faultBatchPages: 64 }] }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/devices\[0\]\.faultBatchPages 64 .*faultBufferPages 32/);
    // a batch above the default buffer (256) needs the buffer raised with it
    expect((await failure(createSystem({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 1 << 20, faultBatchPages: 512 }] }))).message).toMatch(
      /faultBatchPages 512/,
    );
  });

  it('the setters and a dispatch refuse the same, naming the setting', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    for (const bad of [0, 4097, 2.5]) {
      expect(() => (dev.faultBufferPages = bad)).toThrow(HmmError);
      expect(() => (dev.faultBufferPages = bad)).toThrow(/faultBufferPages/);
      expect(() => (dev.faultBatchPages = bad)).toThrow(/faultBatchPages/);
    }
    expect(dev.faultBufferPages).toBe(256);
    dev.faultBatchPages = 100;
    dev.faultBufferPages = 64; // the batch never exceeds the buffer
    expect(dev.faultBatchPages).toBe(64);
    const mm = sys.createAddressSpace();
    const va = mm.mmap(P);
    const k = await dev.createKernel({ code: PER_PAGE, workgroupSize: 64 });
    const e = await failure(dev.mirror(mm).dispatch(k, { mode: 'replayable', workgroups: 1, faultBatchPages: 65, uniforms: new Uint32Array([va, 1, 0, 0]) }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/faultBatchPages 65 .*faultBufferPages 64/);
  });
});

describe('progress under memory pressure', () => {
  it('a streaming kernel writing a shared output array 1.5x the device finishes with the right results', async () => {
    // 32 frames; 48 input pages and a 48-page output array (1.5x the device) the invocations
    // write all over
    const sys = await makeSystem({ devices: [{ memoryBytes: 32 * P, evictionBytes: 4096 }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const pages = 48;
    const input = mm.mmap(pages * P);
    const output = mm.mmap(pages * P);
    const init = new Uint32Array(pages * 1024);
    for (let i = 0; i < init.length; i++) init[i] = i;
    await mm.write(input, new Uint8Array(init.buffer));
    // invocation i: out[(i * 7) % n] = 3 * in[i], over words a page apart, so each touches an
    // input page and an output page on different sides of the array
    const k = await dev.createKernel({
      code: `@group(0) @binding(0) var<uniform> u: vec4u; // input, output, n
fn kernel(gid: vec3u) {
  let i = gid.x;
  if (i >= u.z) { return; }
  let j = (i * 7u) % u.z;
  hmm_store_u32(u.y + j * 4096u + (i % 1024u) * 4u, 3u * hmm_load_u32(u.x + i * 4096u + (i % 1024u) * 4u));
}`,
      workgroupSize: 8,
    });
    const r = await m.dispatch(k, { mode: 'replayable', workgroups: pages / 8, uniforms: new Uint32Array([input, output, pages, 0]) });
    expect(r.rounds).toBeGreaterThan(1);
    const out = new Uint32Array((await mm.read(output, pages * P)).buffer);
    for (let i = 0; i < pages; i++) {
      const j = (i * 7) % pages;
      expect(out[j * 1024 + (i % 1024)], `invocation ${i}`).toBe(3 * (i * 1024 + (i % 1024)));
    }
  });

  /** A pointer chase: each invocation walks `hops` nodes, each on a page in its own 64 KiB unit. */
  async function chase(framesOnDevice: number, lists: number, hops: number) {
    const sys = await makeSystem({ systemRamBytes: 16 << 20, devices: [{ memoryBytes: framesOnDevice * P }] });
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const unit = 16 * P;
    const nodes = mm.mmap(lists * hops * unit);
    const heads = mm.mmap(P);
    const out = mm.mmap(P);
    const node = (l: number, h: number): number => nodes + (h * lists + l) * unit + (l % 16) * P;
    const headWords = new Uint32Array(lists);
    const expected = new Uint32Array(lists);
    for (let l = 0; l < lists; l++) {
      headWords[l] = node(l, 0);
      for (let h = 0; h < hops; h++) {
        const value = l * 100 + h;
        expected[l]! += value;
        await mm.write(node(l, h), new Uint8Array(new Uint32Array([value, h + 1 < hops ? node(l, h + 1) : 0]).buffer));
      }
    }
    await mm.write(heads, new Uint8Array(headWords.buffer));
    const k = await dev.createKernel({
      code: `@group(0) @binding(0) var<uniform> u: vec4u; // heads, out, n
fn kernel(gid: vec3u) {
  if (gid.x >= u.z) { return; }
  var p = hmm_load_u32(u.x + gid.x * 4u);
  var sum = 0u;
  loop {
    if (p == 0u || !hmm_ok()) { break; }
    sum += hmm_load_u32(p);
    p = hmm_load_u32(p + 4u);
  }
  hmm_store_u32(u.y + gid.x * 4u, sum);
}`,
      workgroupSize: 8,
      label: 'chase',
    });
    const run = m.dispatch(k, { mode: 'replayable', workgroups: Math.ceil(lists / 8), uniforms: new Uint32Array([heads, out, lists, 0]) });
    return { sys, mm, out, expected, run };
  }

  it('a pointer chase whose 64 KiB units outnumber the device finishes with the right sums', async () => {
    // 32 frames = 2 eviction units; each list crosses 6 units, 8 lists: 48 units
    const { mm, out, expected, run } = await chase(32, 8, 6);
    await run;
    expect(new Uint32Array((await mm.read(out, 8 * 4)).buffer)).toEqual(expected);
  });

  it('an invocation whose pages cannot all be on the device at once fails with ENOMEM naming it', async () => {
    // 16 frames; one list of 20 nodes on 20 pages: the invocation can never finish
    const { run } = await chase(16, 1, 20);
    const e = await failure(run);
    expect(e.code).toBe('ENOMEM');
    expect(e.message).toMatch(/dispatch 'chase': invocation 0 alone does not fit/);
  });
});

describe('phase spans', () => {
  it('a fault round and its migrations are broken into phase spans, and the totals add up', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(32 * P);
    await mm.write(va, new Uint8Array(32 * P).fill(1));
    const copies = mm.mmap(4 * P);
    await mm.write(copies, new Uint8Array(4 * P).fill(2));
    await mm.advise(copies, 4 * P, { preferred: 'system' });
    const k = await dev.createKernel({ code: PER_PAGE, workgroupSize: 64 });
    const trace = sys.trace();
    const from = trace.events().length;
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 32, 0, 0]) });
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([copies, 4, 0, 0]) });
    await mm.read(copies, 4 * P); // held copies come home
    await m.migrateToSystem(va, 32);
    const spans = trace
      .events()
      .slice(from)
      .filter((e) => e.kind === 'phase');
    const seen = new Set(spans.map((e) => e.phase));
    const want: Phase[] = ['fault-readback', 'dedupe', 'policy', 'collect', 'copy-upload', 'gpu-wait', 'commit', 'pt-upload', 'relaunch'];
    for (const p of want) expect(seen.has(p), p).toBe(true);
    for (const s of spans) expect(s.dur).toBeGreaterThanOrEqual(0);
    const ms = sys.counters.phaseMs();
    for (const p of want) expect(ms[p], p).toBeGreaterThanOrEqual(0);
    expect(want.reduce((sum, p) => sum + ms[p], 0)).toBeGreaterThan(0);
    // a round's dedupe and policy spans lie inside the round's span
    const rounds = trace
      .events()
      .slice(from)
      .filter((e) => e.kind === 'gpu-fault-round');
    expect(rounds.length).toBeGreaterThan(0);
    for (const s of spans.filter((e) => e.phase === 'dedupe' || e.phase === 'policy'))
      expect(
        rounds.some((r) => r.ts <= s.ts && s.ts + s.dur! <= r.ts + r.dur! + 1e-6),
        `${s.phase} at ${s.ts}`,
      ).toBe(true);
  });
});
