// The fault batch cap G3 measures (faultBatchPages, per device and per dispatch), and the bench runner end to end on the real adapter, at tiny sizes and one repetition: every
// workload under every strategy gives the right result, and the JSON has all ten goals with
// finite ratios, their targets and met booleans. It asserts what was measured, never how fast.
import { describe, expect, it } from 'vitest';
import { createSystem } from '../../src/index.ts';
import { GOAL_IDS } from '../../src/bench/goals.ts';
import { formatText, toJson } from '../../src/bench/report.ts';
import { runBench, type Progress } from '../../src/bench/runner.ts';
import { STRATEGIES } from '../../src/bench/strategies.ts';
import { failure, makeSystem } from './helpers.ts';

describe('bench', () => {
  it('runs every workload and goal at tiny sizes; the JSON has G1..G10 with finite ratios', async () => {
    const progress: Progress[] = [];
    const r = await runBench({ quick: true, mib: 0.25, reps: 1, warmup: 0, only: 'all', browser: false, help: false }, (p) => progress.push(p));
    // progress counts up to its total
    const last = progress[progress.length - 1]!;
    expect(last.done).toBe(last.total);

    for (const c of r.workloads) expect(c.error, `${c.workload} / ${c.strategy}`).toBeUndefined();
    expect(new Set(r.workloads.map((c) => c.strategy))).toEqual(new Set(STRATEGIES));
    expect(new Set(r.workloads.map((c) => c.workload)).size).toBe(9);

    const json = JSON.parse(toJson(r));
    expect(json.adapter).toBe(r.adapter);
    expect(json.adapter.length).toBeGreaterThan(0);
    expect(json.sizes.streamBytes).toBe(256 << 10);
    expect(Object.keys(json.goals).sort()).toEqual([...GOAL_IDS].sort());
    for (const id of GOAL_IDS) {
      const g = json.goals[id];
      expect(g.error, id).toBeUndefined();
      expect(Number.isFinite(g.ratio), `${id} ratio ${g.ratio}`).toBe(true);
      expect(Number.isFinite(g.min) && Number.isFinite(g.max), id).toBe(true);
      expect(typeof g.target).toBe('number');
      expect(typeof g.met).toBe('boolean');
      for (const f of Object.values(g.figures) as { median: number }[]) expect(Number.isFinite(f.median), id).toBe(true);
    }
    expect(formatText(r)).toContain('G10');
  }, 600_000);
});

// Invocation i reads one word of page i.
const TOUCH = /* wgsl */ `
@group(0) @binding(0) var<uniform> u: vec4u; // base, pages
fn kernel(gid: vec3u) {
  if (gid.x >= u.y) { return; }
  _ = hmm_load_u32(u.x + gid.x * 4096u);
}`;

describe('fault batch cap (faultBatchPages)', () => {
  it('a replay round services at most that many faulted pages; the rest fault again', async () => {
    const sys = await makeSystem();
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(8 * 4096);
    await mm.write(va, new Uint8Array(8 * 4096).fill(1));
    const k = await dev.createKernel({ code: TOUCH, workgroupSize: 8 });
    const r = await m.dispatch(k, { mode: 'replayable', prefetch: false, faultBatchPages: 3, workgroups: 1, uniforms: new Uint32Array([va, 8, 0, 0]) });
    expect(r.faults).toBe(3); // 3 + 3 + 2 pages
    expect(r.rounds).toBe(4);
    // the host received every still-missing page each round: 8, then 5, then 2 records
    expect(sys.counters.get('faultRecords')).toBe(15);
    expect(sys.counters.get('faultPages')).toBe(15);
    expect(sys.counters.get('pagesToDevice')).toBe(8);
    for (const bad of [0, 1.5, 4097])
      expect((await failure(m.dispatch(k, { mode: 'replayable', faultBatchPages: bad, workgroups: 1, uniforms: new Uint32Array([va, 8, 0, 0]) }))).code).toBe('EINVAL');
  });

  it('per device, from createSystem; checked there too', async () => {
    const sys = await makeSystem({ devices: [{ memoryBytes: 1 << 20, faultBatchPages: 2 }] });
    const dev = sys.devices[0]!;
    expect(dev.faultBatchPages).toBe(2);
    const mm = sys.createAddressSpace();
    const va = mm.mmap(5 * 4096);
    const k = await dev.createKernel({ code: TOUCH, workgroupSize: 8 });
    const r = await dev.mirror(mm).dispatch(k, { mode: 'replayable', prefetch: false, workgroups: 1, uniforms: new Uint32Array([va, 5, 0, 0]) });
    expect(r.faults).toBe(3);
    for (const bad of [0, -1, 2.5, 5000, '8'])
      expect((await failure(createSystem({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 1 << 20, faultBatchPages: bad as number }] }))).message).toMatch(/faultBatchPages/);
  });
});
