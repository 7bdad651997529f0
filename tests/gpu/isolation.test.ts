// Isolation on the real adapter (issue 16, docs/threat-model.md): a kernel reaches only its
// own address space's pages, through the prelude's public functions. Address space A puts
// 0xC0FFEE in a page on the device; address space B, on the same device and the same memory
// pool, tries every way the prelude's internals offered. Each attack is refused at
// createKernel, and each "control" compiles the same kernel without the check to show that the
// attack is real on this adapter: it finds A's word. What B may do (load its own pages, store
// them) sees zeros where it has written nothing, and leaves every page-table entry's frame and
// permissions as the host wrote them.
import { describe, expect, it } from 'vitest';
import { type HmmError, PAGE_SIZE, type HmmDevice, type System } from '../../src/index.ts';
import { FAULT_QUEUE_CAP, HmmKernel, kernelModuleSource, preludeVariant } from '../../src/device/kernel.ts';
import { KERNEL_API, lexWgsl } from '../../src/device/kernelCheck.ts';
import { shaderSource } from '../../src/device/shaders.ts';
import { failure, makeSystem } from './helpers.ts';

const P = PAGE_SIZE;
const SECRET = 0xc0ffee;
/** 1 MiB of device memory: 256 Ki words, so a scan of the whole pool is 4096 workgroups. */
const POOL_BYTES = 1 << 20;
const POOL_WORDS = POOL_BYTES / 4;

interface Scene {
  sys: System;
  dev: HmmDevice;
  /** A's page holding SECRET in word 0, device-private. */
  va: number;
  /** The device frame holding it. */
  frameA: number;
  mmB: ReturnType<System['createAddressSpace']>;
  mB: ReturnType<HmmDevice['mirror']>;
}

async function scene(): Promise<Scene> {
  const sys = await makeSystem({ systemRamBytes: 8 << 20, devices: [{ memoryBytes: POOL_BYTES }] });
  const dev = sys.devices[0]!;
  const mmA = sys.createAddressSpace();
  const mA = dev.mirror(mmA);
  const va = mmA.mmap(P);
  await mmA.write(va, new Uint8Array(new Uint32Array([SECRET]).buffer));
  await mA.migrateToDevice(va, 1);
  const [entry] = await mA.table.readGpuEntries([va / P]);
  expect(entry! & 1, "A's page is mapped on the device").toBe(1);
  const mmB = sys.createAddressSpace();
  return { sys, dev, va, frameA: entry! >>> 8, mmB, mB: dev.mirror(mmB) };
}

/**
 * The same kernel built as createKernel builds it, but without the isolation check: what the
 * library compiled before issue 16. Only tests build this; nothing in the library can.
 */
async function uncheckedKernel(dev: HmmDevice, code: string, atomic: boolean): Promise<HmmKernel> {
  const size: [number, number, number] = [64, 1, 1];
  const { source } = kernelModuleSource(preludeVariant(await shaderSource('prelude'), atomic), code, size);
  const device = dev.device;
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: 'unchecked', code: source });
  const info = await module.getCompilationInfo();
  expect(await device.popErrorScope()).toBeNull();
  expect(info.messages.filter((m) => m.type === 'error').map((m) => m.message)).toEqual([]);
  const layout = device.createPipelineLayout({ bindGroupLayouts: [dev.layouts.group0, dev.layouts.group1] });
  const pipeline = await device.createComputePipelineAsync({
    layout,
    compute: {
      module,
      entryPoint: 'hmm_main',
      constants: { HMM_FRAME_SHIFT: dev.memory.frameShift, HMM_MEM_BUFFERS: dev.memory.buffers.length, HMM_QUEUE_CAP: FAULT_QUEUE_CAP, HMM_REPLAYABLE: 0 },
    },
  });
  return new HmmKernel('unchecked', pipeline, size, false, device, atomic, () => Promise.reject(new Error('validated only')));
}

/** B's fresh page for results, on the device, and a reader for its first word. */
async function outPage(s: Scene): Promise<{ out: number; frame: number; word: () => Promise<number> }> {
  const out = s.mmB.mmap(P);
  await s.mB.migrateToDevice(out, 1);
  const [entry] = await s.mB.table.readGpuEntries([out / P]);
  return { out, frame: entry! >>> 8, word: async () => new Uint32Array((await s.mmB.read(out, 4)).buffer)[0]! };
}

/** createKernel refuses it: EINVAL naming `subject` at the kernel's own `line`, quoting that line. */
async function refused(dev: HmmDevice, code: string, subject: string, line: number): Promise<HmmError> {
  const e = await failure(dev.createKernel({ code, label: 'attack' }));
  expect(e.code).toBe('EINVAL');
  expect(e.message).toContain("kernel 'attack' reaches past the prelude's public functions");
  expect(e.message).toContain(subject);
  expect(e.message).toMatch(new RegExp(`\\bline ${line}:\\d+: `));
  expect(e.message).toContain(`\n    ${line} | ${code.split('\n')[line - 1]!.trim()}`);
  expect(dev.uncaptured).toEqual([]);
  return e;
}

describe("address space B cannot read A's page", () => {
  // The report, as written: a validated kernel on B's mirror scans hmm_mem0 with atomicLoad.
  const SCAN = /* wgsl */ `@group(0) @binding(0) var<uniform> u: vec4u; // x: B's out page
fn kernel(gid: vec3u) {
  if (gid.x >= u.y) { return; }
  if (atomicLoad(&hmm_mem0[gid.x]) == 0xC0FFEEu) { hmm_store_u32(u.x, gid.x + 1u); }
}`;

  it('a kernel scanning hmm_mem0 is refused at createKernel, naming hmm_mem0 and its line', async () => {
    const s = await scene();
    await refused(s.dev, SCAN, 'hmm_mem0', 4);
  });

  it("control: without the check the same scan, dispatched on B's mirror, finds A's word", async () => {
    const s = await scene();
    const { out, word } = await outPage(s);
    const k = await uncheckedKernel(s.dev, SCAN, true);
    await s.mB.dispatch(k, { workgroups: POOL_WORDS / 64, uniforms: new Uint32Array([out, POOL_WORDS, 0, 0]), ranges: [{ va: out, bytes: 4, access: 'rw' }] });
    expect((await word()) - 1, "the word index of A's frame").toBe(s.frameA * 1024);
  });

  // A second binding of the pool, in the prelude's group, under a name of the kernel's choosing.
  const ALIAS = /* wgsl */ `@group(0) @binding(0) var<uniform> u: vec4u; // x: B's out frame
@group(1) @binding(2) var<storage, read_write> pool: array<u32>;
fn kernel(gid: vec3u) {
  if (gid.x < u.y && pool[gid.x] == 0xC0FFEEu) { pool[u.x * 1024u] = gid.x + 1u; }
}`;

  it('a kernel binding the pool again in @group(1) is refused at createKernel', async () => {
    const s = await scene();
    await refused(s.dev, ALIAS, '@group(1)', 2);
  });

  it("control: without the check that binding reads A's word", async () => {
    const s = await scene();
    const { frame, word } = await outPage(s);
    const k = await uncheckedKernel(s.dev, ALIAS, false);
    await s.mB.dispatch(k, { workgroups: POOL_WORDS / 64, uniforms: new Uint32Array([frame, POOL_WORDS, 0, 0]) });
    expect((await word()) - 1).toBe(s.frameA * 1024);
  });

  // Module-scope declarations may shadow WGSL built-ins in the whole module: the prelude's
  // translation reads B's leaf entry with this atomicLoad, which gets a pointer into B's leaf
  // table, and the kernel points its own page at A's frame. (The forged entry stays on the GPU:
  // the host uploads an entry only when it changes it.)
  const SHADOW = /* wgsl */ `@group(0) @binding(0) var<uniform> u: vec4u; // x: B's page, z: A's frame
var<private> calls: u32 = 0u;
fn atomicLoad(p: ptr<storage, atomic<u32>, read_write>) -> u32 {
  calls += 1u;
  if (calls == 1u) { atomicStore(p, (u.z << 8u) | 3u); return (u.z << 8u) | 3u; }
  return 0xffffffffu;
}
fn kernel(gid: vec3u) {
  if (gid.x != 0u) { return; }
  _ = hmm_load_u32(u.x);
}`;

  it('a kernel replacing a built-in the prelude calls is refused at createKernel', async () => {
    const s = await scene();
    await refused(s.dev, SHADOW, "a kernel may not declare 'atomicLoad' at module scope", 3);
  });

  it("control: without the check it rewrites B's page-table entry and reads A's word", async () => {
    const s = await scene();
    const { out, word } = await outPage(s);
    const mine = s.mmB.mmap(P);
    const k = await uncheckedKernel(s.dev, SHADOW, false);
    await s.mB.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([mine, 0, s.frameA, 0]), ranges: [{ va: mine, bytes: P, access: 'r' }] });
    // then any kernel B runs on its page reads A's word
    const copy = await s.dev.createKernel({
      code: '@group(0) @binding(0) var<uniform> u: vec4u;\nfn kernel(gid: vec3u) { if (gid.x == 0u) { hmm_store_u32(u.y, hmm_load_u32(u.x)); } }',
    });
    await s.mB.dispatch(copy, {
      workgroups: 1,
      uniforms: new Uint32Array([mine, out, 0, 0]),
      ranges: [
        { va: mine, bytes: P, access: 'r' },
        { va: out, bytes: 4, access: 'rw' },
      ],
    });
    expect(await word()).toBe(SECRET);
  });

  it('what B may do: the same address in B is its own page, zeros until B writes it; an address B has not mapped is ESEGV', async () => {
    const s = await scene();
    const mine = s.mmB.mmap(4 * P, { addr: s.va }); // the very address A's secret lives at, in A
    await s.mB.migrateToDevice(mine, 4); // device frames, freshly taken from the pool A uses
    const { out, word } = await outPage(s);
    const code = /* wgsl */ `
// A comment may mention atomicLoad(&hmm_mem0[0]): it is not code.
@group(0) @binding(0) var<uniform> u: vec4u; // x: first VA, y: words, z: out
fn kernel(gid: vec3u) {
  if (gid.x >= u.y) { return; }
  let w = hmm_load_u32(u.x + gid.x * 4u);
  if (w != 0u) { _ = hmm_atomic_add_u32(u.z, 1u); }
}`;
    const k = await s.dev.createKernel({ code, label: 'own pages' });
    const words = (4 * P) / 4;
    await s.mB.dispatch(k, {
      workgroups: words / 64,
      uniforms: new Uint32Array([mine, words, out, 0]),
      ranges: [
        { va: mine, bytes: 4 * P },
        { va: out, bytes: 4, access: 'rw' },
      ],
    });
    expect(await word(), 'non-zero words B saw in its own fresh pages').toBe(0);
    // B cannot wander off its mappings towards A's: a load B has not mapped is a fault, not data
    const e = await failure(
      s.mB.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([0x7000_0000, 64, out, 0]), ranges: [{ va: out, bytes: 4, access: 'rw' }] }),
    );
    expect(e.code).toBe('ESEGV');
    expect(s.dev.uncaptured).toEqual([]);
  });
});

describe('page tables are written by the host only', () => {
  const WRITE_PTE = /* wgsl */ `@group(0) @binding(0) var<uniform> u: vec4u;
fn kernel(gid: vec3u) {
  atomicStore(&hmm_leaves[u.x], (u.y << 8u) | 3u);
}`;

  it('a kernel writing a leaf entry is refused at createKernel, naming hmm_leaves', async () => {
    const s = await scene();
    await refused(s.dev, WRITE_PTE, 'hmm_leaves', 3);
  });

  it("a permitted kernel's loads and stores change only the accessed and dirty bits; frames and permissions stay as the host wrote them", async () => {
    const s = await scene();
    const rw = s.mmB.mmap(4 * P);
    const ro = s.mmB.mmap(2 * P, { prot: 'r' });
    await s.mmB.write(rw, new Uint8Array(4 * P).fill(3));
    await s.mB.migrateToDevice(rw, 4);
    const pages = [...[0, 1, 2, 3].map((i) => rw / P + i), ro / P, ro / P + 1];
    const code = /* wgsl */ `@group(0) @binding(0) var<uniform> u: vec4u; // x: rw pages, y: ro pages
fn kernel(gid: vec3u) {
  let a = u.x + gid.x * 4u;
  hmm_store_u32(a, hmm_load_u32(a) + hmm_load_u32(u.y + (gid.x % 2048u) * 4u));
}`;
    const k = await s.dev.createKernel({ code, label: 'permitted' });
    const ranges = [
      { va: rw, bytes: 4 * P, access: 'rw' as const },
      { va: ro, bytes: 2 * P, access: 'r' as const },
    ];
    await s.mB.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([rw, ro, 0, 0]), ranges }); // maps every page, touches a few
    const before = await s.mB.table.readGpuEntries(pages);
    expect(before.every((e) => (e & 1) === 1)).toBe(true);
    await s.mB.dispatch(k, { workgroups: (4 * P) / 4 / 64, uniforms: new Uint32Array([rw, ro, 0, 0]), ranges });
    const after = await s.mB.table.readGpuEntries(pages);
    const AD = 0xc; // accessed | dirty: the only bits the prelude sets
    expect(after.map((e) => e & ~AD)).toEqual(before.map((e) => e & ~AD));
    expect(after.map((e) => e & AD)).toEqual([0xc, 0xc, 0xc, 0xc, 0x4, 0x4]); // stores dirtied the rw pages, loads only accessed the ro ones
    expect(after.slice(4).map((e) => e & 2)).toEqual([0, 0]); // read-only stays read-only
    expect(s.dev.uncaptured).toEqual([]);
  });
});

describe('the compiler reads comments as the check does', () => {
  // The check's one dangerous mistake would be to take for a comment what the compiler takes
  // for code. Each form the tokenizer skips holds text that is not WGSL: it must compile.
  it.each([
    ['a nested block comment', '/* outer /* inner */ still a comment: ) ( } */'],
    ['a block comment opened by /*/', '/*/ still a comment: ) ( } */'],
    ['a line comment inside a block comment', '/* // */ /* ) ( */'],
    ['a block opener inside a line comment', '// /* ) (\n'],
  ])('%s', async (_what, comment) => {
    const device = (await makeSystem()).devices[0]!.device;
    const code = `${comment}\n@compute @workgroup_size(1) fn main() { }\n`;
    const module = device.createShaderModule({ code });
    const info = await module.getCompilationInfo();
    expect(info.messages.filter((m) => m.type === 'error').map((m) => m.message)).toEqual([]);
    expect(
      lexWgsl(code)
        .tokens.map((t) => t.text)
        .join(' '),
    ).toBe('@ compute @ workgroup_size ( 1 ) fn main ( ) { }');
  });
});

describe('every internal of the prelude, and every way to name one, is refused on the adapter', () => {
  // Every hmm_/HMM_ name the prelude declares that is not public: buffers, tables, control, constants, helpers that take a frame.
  it('each internal', async () => {
    const prelude = await shaderSource('prelude');
    const tokens = lexWgsl(prelude).tokens;
    const internals = [
      ...new Set(
        tokens
          .filter((t, k) => t.kind === 'ident' && /^(hmm_|HMM_)/.test(t.text) && ['fn', 'var', 'const', 'override', '>'].includes(tokens[k - 1]?.text ?? ''))
          .map((t) => t.text),
      ),
    ].filter((n) => !KERNEL_API.includes(n));
    expect(internals).toEqual(
      expect.arrayContaining([
        'hmm_mem0',
        'hmm_mem3',
        'hmm_dir',
        'hmm_leaves',
        'hmm_ctl',
        'hmm_word_load',
        'hmm_word_store',
        'hmm_word_add',
        'hmm_word_and_or',
        'hmm_translate',
      ]),
    );
    const s = await scene();
    for (const name of internals)
      await refused(s.dev, `@group(0) @binding(0) var<uniform> u: vec4u;\nfn kernel(gid: vec3u) {\n  _ = ${name};\n}`, `'${name}'`, 3);
  });

  it.each([
    ['a pointer to the leaf table', 'fn kernel(gid: vec3u) {\n  let p = &hmm_leaves[0];\n  atomicStore(p, 0u);\n}', 'hmm_leaves', 2],
    ['an alias', 'alias Pool = hmm_mem0;\nfn kernel(gid: vec3u) { }', 'hmm_mem0', 1],
    ['a helper that takes a frame', 'fn kernel(gid: vec3u) {\n  hmm_word_store(7u, 0u, 0xC0FFEEu);\n}', 'hmm_word_store', 2],
    ['a local shadowing a public function', 'fn kernel(gid: vec3u) {\n  let hmm_load_u32 = 1u;\n}', 'hmm_load_u32', 2],
    ['the name split by a comment', 'fn kernel(gid: vec3u) {\n  _ = hmm_/**/mem0[0];\n}', "'hmm_'", 2],
    ['the name after a line comment ended by a carriage return', 'fn kernel(gid: vec3u) {\n  // harmless\r  _ = hmm_ctl[0];\n}', 'hmm_ctl', 2],
    ['the code after a nested comment', 'fn kernel(gid: vec3u) {\n  /* /* */ */ _ = hmm_dir[0];\n}', 'hmm_dir', 2],
    ['a binding in @group(2)', '@group(2) @binding(0) var<storage, read_write> m: array<u32>;\nfn kernel(gid: vec3u) { }', '@group(2)', 1],
    [
      'a group written as a constant',
      'const G = 1u;\n@group(G) @binding(0) var<storage, read_write> m: array<u32>;\nfn kernel(gid: vec3u) { }',
      '@group(...)',
      2,
    ],
    ['@binding(1) in group 0', '@group(0) @binding(1) var<storage, read_write> m: array<u32>;\nfn kernel(gid: vec3u) { }', '@binding(1)', 1],
    ['a type replaced at module scope', 'alias u32 = i32;\nfn kernel(gid: vec3u) { }', "'u32'", 1],
  ])('%s', async (_what, code, subject, line) => {
    const s = await scene();
    await refused(s.dev, code, subject, line);
  });

  it('the internal io binding cannot be asked for through createKernel', async () => {
    const s = await scene();
    const code = '@group(0) @binding(1) var<storage, read_write> io: array<u32>;\nfn kernel(gid: vec3u) { io[0] = 1u; }';
    const e = await failure(s.dev.createKernel({ code, label: 'attack', ioBinding: true } as Parameters<HmmDevice['createKernel']>[0]));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain("reaches past the prelude's public functions");
    expect(e.message).toContain('@binding(1): in @group(0) the dispatch provides only @binding(0)');
  });

  it('the code is read once: a getter cannot pass the check with one text and compile another', async () => {
    const s = await scene();
    let reads = 0;
    const opts = {
      label: 'swap',
      get code(): string {
        reads++;
        return reads === 1 ? 'fn kernel(gid: vec3u) { _ = hmm_ok(); }' : 'fn kernel(gid: vec3u) { _ = hmm_leaves[0]; }';
      },
    };
    const k = await s.dev.createKernel(opts);
    expect(reads).toBe(1);
    expect(k.label).toBe('swap');
  });

  it("a kernel's label is not WGSL: code smuggled in it is not compiled", async () => {
    const s = await scene();
    const label = 'x\nfn peek() -> u32 { return atomicLoad(&hmm_leaves[0]); }\n//';
    const e = await failure(s.dev.createKernel({ code: 'fn kernel(gid: vec3u) { _ = peek(); }', label }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('does not compile');
    expect(e.message).toContain('peek');
    // and an ordinary kernel with that label compiles
    await s.dev.createKernel({ code: 'fn kernel(gid: vec3u) { _ = hmm_ok(); }', label });
    expect(s.dev.uncaptured).toEqual([]);
  });
});
