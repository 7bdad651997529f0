// Counters and the event log after real work: what a user sees in sys.stats() and sys.trace().
import { describe, expect, it } from 'vitest';
import { PAGE_SIZE } from '../../src/index.ts';
import { makeSystem } from './helpers.ts';

const P = PAGE_SIZE;

describe('stats and trace', () => {
  it('record faults, migrations both ways, prefetch and kernels, exportable for Perfetto', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(64 * P);
    await mm.write(va, new Uint8Array(64 * P).fill(1));
    const k = await dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> a: vec4u;\nfn kernel(gid: vec3u) { let p = a.x + gid.x * 4096u; hmm_store_u32(p, hmm_load_u32(p) + 1u); }',
      workgroupSize: 64,
      label: 'inc',
    });
    await m.dispatch(k, { mode: 'replayable', workgroups: 1, uniforms: new Uint32Array([va, 0, 0, 0]) });
    await mm.read(va, 64 * P);
    const stats = sys.stats();
    expect(stats.gpuFaults).toBeGreaterThan(0);
    expect(stats.pagesToDevice).toBe(64);
    expect(stats.bytesToDevice).toBe(64 * P);
    expect(stats.pagesToSystem).toBe(64);
    expect(stats.cpuFaults).toBeGreaterThan(0);
    const kinds = new Set(
      sys
        .trace()
        .events()
        .map((e) => e.kind),
    );
    for (const kind of ['gpu-fault-round', 'migrate-to-device', 'kernel', 'cpu-fault', 'migrate-to-system'] as const) expect(kinds).toContain(kind);
    const moved = sys
      .trace()
      .events()
      .filter((e) => e.kind === 'migrate-to-device');
    expect(moved.reduce((n, e) => n + (e.pages ?? 0), 0)).toBe(64);
    const chrome = JSON.parse(JSON.stringify(sys.trace().toChromeTrace())) as { traceEvents: { ph: string; name: string; dur?: number }[] };
    const spans = chrome.traceEvents.filter((e) => e.ph === 'X');
    expect(spans.some((e) => e.name === 'kernel' && (e.dur ?? -1) >= 0)).toBe(true);
    expect(chrome.traceEvents.some((e) => e.ph === 'M' && e.name === 'thread_name')).toBe(true);
  });
});
