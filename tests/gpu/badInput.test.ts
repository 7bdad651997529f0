// Bad input on a real adapter: every Mirror, HmmDevice and kernel call refuses malformed
// arguments with an HmmError whose code and message name the call, the argument and the
// address; compile errors point at the user's own lines; calls after destroy() fail clearly
// (never a crash or a hang); and a refused call loses nothing: the bytes it would have touched
// read back unchanged, and WebGPU reports no uncaptured error.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  HmmError,
  PAGE_SIZE,
  PROT,
  createSystem,
  type AddressSpace,
  type DispatchOptions,
  type HmmDevice,
  type HmmKernel,
  type KernelOptions,
  type Mirror,
  type System,
} from '../../src/index.ts';
import { failure, firstDiff, makeSystem, pattern, DOUBLE_KERNEL } from './helpers.ts';

const P = PAGE_SIZE;
const VA_LIMIT = 2 ** 32;
const hx = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;
/** Two mapped pages, a one-page hole, one more page; all 'rw' and written by the CPU. */
const BASE = 0x100000;
const HOLE = BASE + 2 * P;
const TAIL = BASE + 3 * P;

const DOUBLE = DOUBLE_KERNEL;
/** Wants a 32-byte uniform: 16 bytes of uniforms are too few. */
const WIDE = /* wgsl */ `
struct U { va: u32, n: u32, pad: vec2u, more: vec4u }
@group(0) @binding(0) var<uniform> u: U;
fn kernel(gid: vec3u) { if (gid.x < u.n) { hmm_store_u32(u.va + gid.x * 4u, 0xdeadu); } }`;

/** A result that is not an HmmError, or no error at all, fails here with what it was. */
async function refused(run: () => unknown): Promise<HmmError> {
  let p: Promise<unknown>;
  try {
    p = Promise.resolve(run());
  } catch (e) {
    p = Promise.reject(e);
  }
  return failure(p);
}

// One system for the argument tables: each refused call happens before anything changes, so
// the tables share it (creating a device per row would be slow on a software adapter).
let sys: System;
let mm: AddressSpace;
let dev: HmmDevice;
let m: Mirror;
let k: HmmKernel;
let wide: HmmKernel;
let head: Uint8Array;
let tail: Uint8Array;

beforeAll(async () => {
  sys = await createSystem({ systemRamBytes: 2 << 20, devices: [{ memoryBytes: 256 << 10 }] });
  mm = sys.createAddressSpace();
  dev = sys.devices[0]!;
  m = dev.mirror(mm);
  mm.mmap(2 * P, { addr: BASE });
  mm.mmap(P, { addr: TAIL });
  head = pattern(2 * P, 3);
  tail = pattern(P, 5);
  await mm.write(BASE, head);
  await mm.write(TAIL, tail);
  k = await dev.createKernel({ code: DOUBLE, label: 'double' });
  wide = await dev.createKernel({ code: WIDE, label: 'wide' });
});

afterAll(() => sys?.destroy());

/** Nothing was lost: the shared mappings read back their bytes, and WebGPU saw no invalid call. */
async function intact(): Promise<void> {
  expect(firstDiff(await mm.read(BASE, 2 * P), head)).toBe(-1);
  expect(firstDiff(await mm.read(TAIL, P), tail)).toBe(-1);
  expect(mm.vmaAt(HOLE)).toBeUndefined();
  expect(dev.uncaptured).toEqual([]);
}

describe('dmirror page ranges', () => {
  type PageCall = (va: unknown, npages: unknown) => Promise<unknown>;
  const n = <T>(v: unknown): T => v as T;
  const calls: [string, PageCall][] = [
    ['read', (va, np) => m.read(n(va), n(np))],
    ['migrateToDevice', (va, np) => m.migrateToDevice(n(va), n(np))],
    ['migrateToSystem', (va, np) => m.migrateToSystem(n(va), n(np))],
    ['snapshot', (va, np) => m.snapshot(n(va), n(np))],
    ['makeExclusive', (va, np) => m.makeExclusive(n(va), n(np))],
    ['checkExclusive', (va, np) => m.checkExclusive(n(va), n(np))],
  ];
  const bad: [string, unknown, unknown, string][] = [
    ['an unaligned address', BASE + 1, 1, `address ${hx(BASE + 1)} is not 4 KiB aligned`],
    ['address BASE + 2048', BASE + 2048, 1, 'not 4 KiB aligned'],
    ['address NaN', NaN, 1, 'address NaN'],
    ['address Infinity', Infinity, 1, 'address Infinity'],
    ['a negative address', -P, 1, 'address -4096'],
    ['a non-integer address', BASE + 0.5, 1, 'not an integer'],
    ['a string address', String(BASE), 1, 'not an integer'],
    ['address 4 GiB', VA_LIMIT, 1, 'not an integer in [0, 4 GiB)'],
    ['a null address', null, 1, 'address null'],
    ['npages 0', BASE, 0, 'npages 0 is not a positive integer'],
    ['npages -1', BASE, -1, 'npages -1'],
    ['npages 1.5', BASE, 1.5, 'npages 1.5'],
    ['npages NaN', BASE, NaN, 'npages NaN'],
    ['npages Infinity', BASE, Infinity, 'npages Infinity'],
    ['npages "1"', BASE, '1', 'npages 1 is not'],
    ['npages undefined', BASE, undefined, 'npages undefined'],
    ['the last page + 1 (wraps past 4 GiB)', VA_LIMIT - P, 2, `range ${hx(VA_LIMIT - P)}`],
    ['2^20 pages from BASE (wraps past 4 GiB)', BASE, 1 << 20, 'past the end of the 4 GiB address space'],
  ];
  const rows = calls.flatMap(([name, call]) => bad.map(([what, va, np, text]) => [name, what, call, va, np, text] as const));
  it.each(rows)('mirror.%s with %s is EINVAL naming it; nothing moves', async (name, _what, call, va, np, text) => {
    const before = await m.snapshot(BASE, 4);
    const e = await failure(call(va, np));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain(`mirror.${name}`);
    expect(e.message).toContain(text);
    expect(await m.snapshot(BASE, 4)).toEqual(before);
    await intact();
  });

  // VA 0 and holes: the calls that need a mapping name the first address without one.
  const holes: [string, () => Promise<unknown>, string, number][] = [
    ['read of page 0', () => m.read(0, 1), 'EFAULT', 0],
    ['read across the hole', () => m.read(BASE, 4), 'EFAULT', HOLE],
    ['write to page 0', () => m.write(0, new Uint8Array(4)), 'EFAULT', 0],
    ['write across the hole', () => m.write(BASE + P, new Uint8Array(2 * P).fill(0xee)), 'EFAULT', HOLE],
    ['migrateToDevice of page 0', () => m.migrateToDevice(0, 1), 'EINVAL', 0],
    ['migrateToDevice across the hole', () => m.migrateToDevice(BASE, 4), 'EINVAL', HOLE],
    ['migrateToSystem of page 0', () => m.migrateToSystem(0, 1), 'EINVAL', 0],
    ['migrateToSystem across the hole', () => m.migrateToSystem(BASE, 4), 'EINVAL', HOLE],
    ['makeExclusive of page 0', () => m.makeExclusive(0, 1), 'EFAULT', 0],
    ['makeExclusive across the hole', () => m.makeExclusive(BASE, 4), 'EFAULT', HOLE],
    ['prefetch of page 0', () => m.prefetch(0, 4, 'device'), 'EFAULT', 0],
    ['prefetch across the hole', () => m.prefetch(BASE, 4 * P, 'device'), 'EFAULT', HOLE],
    ['dispatch declaring page 0', () => m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([0, 1]), ranges: [{ va: 0, bytes: 4 }] }), 'EFAULT', 0],
    [
      'dispatch declaring the hole',
      () => m.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([BASE, 1]), ranges: [{ va: BASE, bytes: 4 * P }] }),
      'EFAULT',
      HOLE,
    ],
  ];
  it.each(holes.map(([what, call, code, at]) => [what, code, at, call] as const))(
    '%s is %s naming the first unmapped address %s; nothing moves',
    async (_what, code, at, call) => {
      const before = await m.snapshot(BASE, 4);
      const e = await failure(call());
      expect(e.code).toBe(code);
      expect(e.address).toBe(at);
      expect(e.message).toContain(hx(at));
      expect(await m.snapshot(BASE, 4)).toEqual(before);
      await intact();
    },
  );

  it('snapshot of page 0 and of the hole reports ERROR for those pages, not an exception', async () => {
    expect([...(await m.snapshot(0, 1))]).toEqual([PROT.ERROR]);
    expect((await m.snapshot(BASE, 4))[2]).toBe(PROT.ERROR);
    await m.checkExclusive(0, 1); // nothing is held there
  });
});

describe('mirror.write data', () => {
  const words = new Uint32Array(P / 4);
  it.each(
    [
      ['a number array', [1, 2, 3, 4], 'data is not a Uint8Array'],
      ['an ArrayBuffer', words.buffer, 'data is not a Uint8Array'],
      ['a Uint32Array', words, 'data is not a Uint8Array'],
      ['a DataView', new DataView(words.buffer), 'data is not a Uint8Array'],
      ['a Uint8ClampedArray', new Uint8ClampedArray(P), 'data is not a Uint8Array'],
      ['a string', 'abcd', 'data is not a Uint8Array'],
      ['null', null, 'data is not a Uint8Array'],
      ['empty data', new Uint8Array(0), 'data length 0'],
      ['3 bytes (not a multiple of 4)', new Uint8Array(3), 'data length 3 is not a multiple of 4'],
      ['4097 bytes', new Uint8Array(P + 1), 'data length 4097 is not a multiple of 4'],
    ].map(([what, data, text]) => [what, text, data] as const),
  )('%s is EINVAL (%s); nothing is written', async (_what, text, data) => {
    const e = await failure(m.write(BASE, data as Uint8Array));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('mirror.write');
    expect(e.message).toContain(text);
    await intact();
  });

  it.each(
    [
      ['an unaligned address', BASE + 4, 'not 4 KiB aligned'],
      ['address NaN', NaN, 'address NaN'],
      ['address -4096', -P, 'address -4096'],
      ['address 4 GiB', VA_LIMIT, 'not an integer in [0, 4 GiB)'],
      ['the last page, 2 pages of data (wraps)', VA_LIMIT - P, 'past the end'],
    ].map(([what, va, text]) => [what, text, va] as const),
  )('at %s is EINVAL (%s); nothing is written', async (_what, text, va) => {
    const e = await failure(m.write(va as number, new Uint8Array(2 * P).fill(0xee)));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain(text);
    await intact();
  });
});

describe('mirror.prefetch arguments', () => {
  it.each(
    [
      ['address NaN', NaN, P, 'device', 'address NaN'],
      ['address -1', -1, P, 'device', 'address -1'],
      ['address 4 GiB', VA_LIMIT, P, 'device', 'not an integer in [0, 4 GiB)'],
      ['bytes 0', BASE, 0, 'device', 'bytes 0 is not a positive integer'],
      ['bytes -4096', BASE, -P, 'device', 'bytes -4096'],
      ['bytes 1.5', BASE, 1.5, 'device', 'bytes 1.5'],
      ['bytes NaN', BASE, NaN, 'device', 'bytes NaN'],
      ['a range wrapping past 4 GiB', VA_LIMIT - P, 2 * P, 'device', 'past the end'],
      ["location 'gpu'", BASE, P, 'gpu', "location gpu is not 'device' or 'system'"],
      ['location undefined', BASE, P, undefined, 'location undefined'],
      ['location 0', BASE, P, 0, 'location 0'],
    ].map(([what, va, bytes, loc, text]) => [what, text, va, bytes, loc] as const),
  )('%s is EINVAL (%s); nothing moves', async (_what, text, va, bytes, loc) => {
    const before = await m.snapshot(BASE, 4);
    const e = await failure(m.prefetch(va as number, bytes as number, loc as 'device'));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('mirror.prefetch');
    expect(e.message).toContain(text);
    expect(await m.snapshot(BASE, 4)).toEqual(before);
    await intact();
  });
});

describe('kernels that do not compile', () => {
  // [what, code, user line, text of that line]
  const cases: [string, string, number, string][] = [
    ['an unresolved name', 'fn kernel(gid: vec3u) {\n  let x: u32 = 1u;\n  let y = x + undefined_thing;\n}', 3, 'let y = x + undefined_thing;'],
    ['a type error', 'fn kernel(gid: vec3u) {\n  let a: u32 = 1.5;\n}', 2, 'let a: u32 = 1.5;'],
    ['a bad prelude call', '// header comment\n\nfn kernel(gid: vec3u) {\n  hmm_store_u32(gid.x, 1.5);\n}', 4, 'hmm_store_u32(gid.x, 1.5);'],
    ['a missing semicolon', 'fn kernel(gid: vec3u) {\n  var a = 1u;\n  a = a + 1u\n  a = 2u;\n}', 4, 'a = 2u;'],
    ['an error far down', `${'// padding\n'.repeat(40)}fn kernel(gid: vec3u) {\n  let q = nope(gid.x);\n}`, 42, 'let q = nope(gid.x);'],
    [
      'a bad uniform struct',
      'struct U { a: u32, b: boo }\n@group(0) @binding(0) var<uniform> u: U;\nfn kernel(gid: vec3u) { _ = u.a; }',
      1,
      'struct U { a: u32, b: boo }',
    ],
  ];
  const rows = cases.map(([what, code, line, text]) => [what, line, text, code] as const);
  it.each(rows)('%s is EINVAL at the user line %s, quoting it (%s), never at a prelude line', async (_what, line, text, code) => {
    const e = await failure(dev.createKernel({ code, label: 'broken' }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain("kernel 'broken' does not compile");
    expect(e.message).toMatch(new RegExp(`\\bline ${line}:\\d+: `));
    expect(e.message).toContain(`${line} | ${text}`);
    expect(e.message).not.toContain('prelude line');
    expect(dev.uncaptured).toEqual([]);
  });

  it.each([
    ['an unclosed brace', 'fn kernel(gid: vec3u) {\n  let a = 1u;\n'],
    ['a kernel with another signature', 'fn kernel(i: u32) {\n}'],
  ])('%s is reported after the user code, at the entry point, not at a prelude line', async (_what, code) => {
    const e = await failure(dev.createKernel({ code, label: 'tail' }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain("after the kernel's last line");
    expect(e.message).toContain('entry point');
    expect(e.message).not.toContain('prelude line');
    expect(dev.uncaptured).toEqual([]);
  });
});

describe('createKernel options', () => {
  it.each(
    [
      ['no options', undefined, 'options { code'],
      ['null options', null, 'options { code'],
      ['a bare string', 'fn kernel(gid: vec3u) {}', 'options { code'],
      ['code a number', { code: 42 }, 'code must be WGSL defining fn kernel'],
      ['no fn kernel', { code: 'fn main() {}' }, 'code must be WGSL defining fn kernel'],
      ['label a number', { code: DOUBLE, label: 7 }, 'label 7 is not a string'],
      ['workgroupSize 0', { code: DOUBLE, workgroupSize: 0 }, 'workgroupSize[0] = 0'],
      ['workgroupSize -64', { code: DOUBLE, workgroupSize: -64 }, 'workgroupSize[0] = -64'],
      ['workgroupSize 1.5', { code: DOUBLE, workgroupSize: 1.5 }, 'workgroupSize[0] = 1.5'],
      ['workgroupSize NaN', { code: DOUBLE, workgroupSize: NaN }, 'workgroupSize[0] = NaN'],
      ['workgroupSize "64"', { code: DOUBLE, workgroupSize: '64' }, 'workgroupSize 64 is not a number or an array'],
      ['workgroupSize []', { code: DOUBLE, workgroupSize: [] }, 'workgroupSize [] is not a number or an array'],
      ['workgroupSize [1, 1, 1, 1]', { code: DOUBLE, workgroupSize: [1, 1, 1, 1] }, 'workgroupSize [1, 1, 1, 1]'],
      ['workgroupSize x beyond the limit', { code: DOUBLE, workgroupSize: 100_000 }, 'workgroupSize[0] = 100000'],
      ['workgroupSize z beyond the limit', { code: DOUBLE, workgroupSize: [1, 1, 100_000] }, 'workgroupSize[2] = 100000'],
      ['too many invocations', { code: DOUBLE, workgroupSize: [64, 64, 1] }, 'workgroup of 64x64x1 exceeds'],
    ].map(([what, opts, text]) => [what, text, opts] as const),
  )('%s is EINVAL (%s)', async (_what, text, opts) => {
    const e = await refused(() => dev.createKernel(opts as KernelOptions));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain(text);
    expect(dev.uncaptured).toEqual([]);
  });
});

describe('dispatch workgroups', () => {
  // Filled in beforeAll: the adapter's own limit.
  const max = (): number => dev.device.limits.maxComputeWorkgroupsPerDimension;
  const cases: [string, () => unknown, string][] = [
    ['x one past the device limit', () => max() + 1, 'workgroups[0] = '],
    ['y one past the device limit', () => [1, max() + 1], 'workgroups[1] = '],
    ['z one past the device limit', () => [1, 1, max() + 1], 'workgroups[2] = '],
    ['2^32', () => 2 ** 32, 'workgroups[0] = 4294967296'],
    ['0', () => 0, 'workgroups[0] = 0'],
    ['-1', () => -1, 'workgroups[0] = -1'],
    ['1.5', () => 1.5, 'workgroups[0] = 1.5'],
    ['NaN', () => NaN, 'workgroups[0] = NaN'],
    ['Infinity', () => Infinity, 'workgroups[0] = Infinity'],
    ['[1, 0]', () => [1, 0], 'workgroups[1] = 0'],
    ['[1, 1, 2.5]', () => [1, 1, 2.5], 'workgroups[2] = 2.5'],
    ['"4"', () => '4', 'workgroups 4 is not a number or an array'],
    ['null', () => null, 'workgroups null is not a number or an array'],
    ['missing', () => undefined, 'workgroups undefined is not a number or an array'],
    ['[]', () => [], 'workgroups [] is not a number or an array'],
    ['[1, 1, 1, 1]', () => [1, 1, 1, 1], 'workgroups [1, 1, 1, 1]'],
  ];
  const rows = cases.flatMap(([what, wg, text]) => (['validated', 'replayable'] as const).map((mode) => [what, mode, text, wg] as const));
  it.each(rows)('workgroups %s (%s) is EINVAL naming the argument (%s); no kernel runs', async (_what, mode, text, wg) => {
    const dispatches = sys.stats().dispatches ?? 0;
    const e = await failure(
      m.dispatch(k, { mode, workgroups: wg() as number, uniforms: new Uint32Array([BASE, 4]), ranges: [{ va: BASE, bytes: 16, access: 'rw' }] }),
    );
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain("dispatch 'double'");
    expect(e.message).toContain(text);
    if (text.endsWith('= ')) expect(e.message).toContain(`is not an integer in [1, ${max()}]`);
    expect(sys.stats().dispatches ?? 0).toBe(dispatches);
    await intact();
  });
});

describe('dispatch options', () => {
  const u = (): Uint32Array => new Uint32Array([BASE, 4]);
  const cases: [string, () => Promise<unknown>, string][] = [
    ['no kernel', () => m.dispatch(undefined as unknown as HmmKernel, { workgroups: 1 }), 'kernel undefined is not a kernel from createKernel()'],
    ['a kernel that is a string', () => m.dispatch(DOUBLE as unknown as HmmKernel, { workgroups: 1 }), 'is not a kernel from createKernel()'],
    [
      'a kernel-shaped object',
      () => m.dispatch({ label: 'fake', device: dev.device } as unknown as HmmKernel, { workgroups: 1 }),
      'is not a kernel from createKernel()',
    ],
    ['no options', () => m.dispatch(k, undefined as unknown as DispatchOptions), 'options { workgroups'],
    ['null options', () => m.dispatch(k, null as unknown as DispatchOptions), 'options { workgroups'],
    ['uniforms a number array', () => m.dispatch(k, { workgroups: 1, uniforms: [BASE, 4] as unknown as Uint32Array }), 'uniforms'],
    ['uniforms a string', () => m.dispatch(k, { workgroups: 1, uniforms: 'abc' as unknown as Uint32Array }), 'is not an ArrayBuffer or a typed array'],
    ['uniforms a number', () => m.dispatch(k, { workgroups: 1, uniforms: 7 as unknown as Uint32Array }), 'uniforms 7 is not an ArrayBuffer'],
    [
      'uniforms a plain object',
      () => m.dispatch(k, { workgroups: 1, uniforms: { va: BASE } as unknown as Uint32Array }),
      'is not an ArrayBuffer or a typed array',
    ],
    [
      'uniforms a SharedArrayBuffer itself',
      () => m.dispatch(k, { workgroups: 1, uniforms: new SharedArrayBuffer(16) as unknown as ArrayBuffer }),
      'is not an ArrayBuffer or a typed array',
    ],
    [
      'uniforms past the binding limit',
      () => m.dispatch(k, { workgroups: 1, uniforms: new Uint8Array(dev.device.limits.maxUniformBufferBindingSize + 16) }),
      'uniform binding limit',
    ],
    ['uniforms of 5 bytes', () => m.dispatch(k, { workgroups: 1, uniforms: new Uint8Array(5) }), 'uniforms of 5 bytes: the length must be a multiple of 4'],
    [
      'uniforms of 9 bytes',
      () => m.dispatch(k, { workgroups: 1, uniforms: new Uint8Array(new Uint32Array([BASE, 4, 0]).buffer, 0, 9) }),
      'uniforms of 9 bytes',
    ],
    [
      'uniforms smaller than the kernel declares',
      () => m.dispatch(wide, { workgroups: 1, uniforms: new Uint32Array([BASE, 4]), ranges: [{ va: BASE, bytes: 16, access: 'rw' }] }),
      "kernel 'wide' could not be launched",
    ],
    ["mode 'fast'", () => m.dispatch(k, { workgroups: 1, uniforms: u(), mode: 'fast' as 'validated' }), "mode 'fast' is not 'validated' or 'replayable'"],
    ['ranges an object', () => m.dispatch(k, { workgroups: 1, uniforms: u(), ranges: { va: BASE, bytes: 16 } as unknown as [] }), 'ranges is not an array'],
    [
      'a null range',
      () => m.dispatch(k, { workgroups: 1, uniforms: u(), ranges: [null as unknown as { va: number; bytes: number }] }),
      'ranges[0]: null is not',
    ],
    ['a range at NaN', () => m.dispatch(k, { workgroups: 1, uniforms: u(), ranges: [{ va: NaN, bytes: 16 }] }), 'ranges[0]: address NaN'],
    [
      'a range of 0 bytes',
      () =>
        m.dispatch(k, {
          workgroups: 1,
          uniforms: u(),
          ranges: [
            { va: BASE, bytes: 16 },
            { va: BASE, bytes: 0 },
          ],
        }),
      'ranges[1]: bytes 0',
    ],
    ['a range wrapping past 4 GiB', () => m.dispatch(k, { workgroups: 1, uniforms: u(), ranges: [{ va: VA_LIMIT - 4, bytes: 8 }] }), 'past the end'],
    [
      "a range with access 'w'",
      () => m.dispatch(k, { workgroups: 1, uniforms: u(), ranges: [{ va: BASE, bytes: 16, access: 'w' as 'rw' }] }),
      "access w is not 'r' or 'rw'",
    ],
    ['maxRounds 0', () => m.dispatch(k, { workgroups: 1, uniforms: u(), mode: 'replayable', maxRounds: 0 }), 'maxRounds 0 is not a positive integer'],
    ['maxRounds 1.5', () => m.dispatch(k, { workgroups: 1, uniforms: u(), mode: 'replayable', maxRounds: 1.5 }), 'maxRounds 1.5'],
    [
      'prefetch threshold 500',
      () => m.dispatch(k, { workgroups: 1, uniforms: u(), mode: 'replayable', prefetch: { threshold: 500 } }),
      'prefetch.threshold 500',
    ],
  ];
  it.each(cases.map(([what, call, text]) => [what, text, call] as const))('%s is EINVAL (%s); nothing runs, nothing is written', async (_what, text, call) => {
    const dispatches = sys.stats().dispatches ?? 0;
    const e = await failure(call());
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/dispatch|could not be launched/);
    expect(e.message).toContain(text);
    expect(sys.stats().dispatches ?? 0).toBe(dispatches);
    await intact();
  });

  it('uniforms at an odd byte offset, or a subarray of words, are fine', async () => {
    const words = new Uint32Array([0, BASE, 4, 0]);
    const odd = new Uint8Array(new ArrayBuffer(9 + 8));
    odd.set(new Uint8Array(words.buffer, 4, 8), 9);
    await m.dispatch(k, { workgroups: 1, uniforms: new Uint8Array(odd.buffer, 9, 8), ranges: [{ va: BASE, bytes: 16, access: 'rw' }] });
    await m.dispatch(k, { workgroups: 1, uniforms: words.subarray(1, 3), ranges: [{ va: BASE, bytes: 16, access: 'rw' }] });
    const got = new Uint32Array((await mm.read(BASE, 16)).slice().buffer);
    const want = new Uint32Array(head.slice(0, 16).buffer).map((x) => (x * 4) >>> 0);
    expect(Array.from(got)).toEqual(Array.from(want));
    await mm.write(BASE, head); // restore for the other tests
    await intact();
  });

  it('a kernel made on another device is EINVAL', async () => {
    const other = await makeSystem({ devices: [{ memoryBytes: 64 << 10 }] });
    const foreign = await other.devices[0]!.createKernel({ code: DOUBLE, label: 'foreign' });
    const e = await failure(m.dispatch(foreign, { workgroups: 1, uniforms: new Uint32Array([BASE, 4]) }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('created on another device');
    await intact();
  });

  it('a failing kernel (it touches the hole) loses nothing the CPU wrote', async () => {
    const e = await failure(m.dispatch(k, { workgroups: 1, mode: 'replayable', uniforms: new Uint32Array([BASE + 2 * P - 128, 64]) }));
    expect(e.code).toBe('ESEGV');
    expect(e.address).toBe(HOLE);
    // the invocations that did run doubled their word in place; every other byte is as written
    const now = await mm.read(BASE, 2 * P);
    expect(firstDiff(now.subarray(0, 2 * P - 128), head.subarray(0, 2 * P - 128))).toBe(-1);
    await mm.write(BASE, head); // restore for the other tests
    await intact();
  });
});

describe('HmmDevice.mirror arguments', () => {
  it.each([
    ['undefined', () => undefined, 'is not an AddressSpace'],
    ['a plain object', () => ({ id: 1 }), 'is not an AddressSpace'],
    ['a number', () => 1, 'is not an AddressSpace'],
  ])('%s is EINVAL', async (_what, arg, text) => {
    const e = await refused(() => dev.mirror(arg() as AddressSpace));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain(`${dev.name}: mirror`);
    expect(e.message).toContain(text);
  });

  it('an address space of another System is EINVAL', async () => {
    const other = await createSystem({ systemRamBytes: 1 << 20 });
    const e = await refused(() => dev.mirror(other.createAddressSpace()));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('belongs to another System');
    other.destroy();
  });
});

describe('use after destroy', () => {
  afterEach(() => expect(dev.uncaptured).toEqual([]));

  it('after mm.destroy(): the mirror and the device refuse that address space with EINVAL; the device still works', async () => {
    const mm2 = sys.createAddressSpace();
    const m2 = dev.mirror(mm2);
    const va = mm2.mmap(2 * P);
    await mm2.write(va, pattern(2 * P, 9));
    await m2.migrateToDevice(va, 1);
    mm2.destroy();
    const calls: [string, () => unknown][] = [
      ['mirror.read', () => m2.read(va, 1)],
      ['mirror.write', () => m2.write(va, new Uint8Array(4))],
      ['migrateToDevice', () => m2.migrateToDevice(va, 1)],
      ['migrateToSystem', () => m2.migrateToSystem(va, 1)],
      ['snapshot', () => m2.snapshot(va, 1)],
      ['makeExclusive', () => m2.makeExclusive(va, 1)],
      ['checkExclusive', () => m2.checkExclusive(va, 1)],
      ['prefetch', () => m2.prefetch(va, P, 'device')],
      ['dispatch', () => m2.dispatch(k, { workgroups: 1, uniforms: new Uint32Array([va, 1]), ranges: [{ va, bytes: 4 }] })],
      ['mirror', () => dev.mirror(mm2)],
    ];
    for (const [name, call] of calls) {
      const e = await refused(call);
      expect(e.code, name).toBe('EINVAL');
      expect(e.message, name).toContain(`${dev.name}: ${name}: address space ${mm2.id} was destroyed`);
    }
    // the device and the other address space are unaffected
    expect((await m.read(BASE, 2)).data).toEqual(head);
    await intact();
  });

  // Each row builds its own system, destroys it, then makes one call: EDEVLOST for the device
  // and its mirrors and kernels, EINVAL for the address spaces and the system (and for the
  // host-side snapshot/checkExclusive, which also work on a lost device); never a hang.
  type Ctx = { sys: System; mm: AddressSpace; dev: HmmDevice; m: Mirror; k: HmmKernel; va: number };
  const calls: [string, string, string, (c: Ctx) => unknown][] = [
    ['mm.mmap', 'EINVAL', 'mmap: address space', (c) => c.mm.mmap(P)],
    ['mm.read', 'EINVAL', 'read: address space', (c) => c.mm.read(c.va, 4)],
    ['mm.write', 'EINVAL', 'write: address space', (c) => c.mm.write(c.va, new Uint8Array(4))],
    ['mm.munmap', 'EINVAL', 'munmap: address space', (c) => c.mm.munmap(c.va, P)],
    ['mm.mprotect', 'EINVAL', 'mprotect: address space', (c) => c.mm.mprotect(c.va, P, 'r')],
    ['mm.advise', 'EINVAL', 'advise: address space', (c) => c.mm.advise(c.va, P, { readMostly: true })],
    ['sys.createAddressSpace', 'EINVAL', 'createAddressSpace: the system was destroyed', (c) => c.sys.createAddressSpace()],
    ['m.read', 'EDEVLOST', 'mirror.read: device lost (destroyed)', (c) => c.m.read(c.va, 1)],
    ['m.write', 'EDEVLOST', 'mirror.write: device lost (destroyed)', (c) => c.m.write(c.va, new Uint8Array(4))],
    ['m.migrateToDevice', 'EDEVLOST', 'migrateToDevice: device lost (destroyed)', (c) => c.m.migrateToDevice(c.va, 1)],
    ['m.migrateToSystem', 'EDEVLOST', 'migrateToSystem: device lost (destroyed)', (c) => c.m.migrateToSystem(c.va, 1)],
    ['m.snapshot', 'EINVAL', 'snapshot: address space', (c) => c.m.snapshot(c.va, 1)],
    ['m.makeExclusive', 'EDEVLOST', 'makeExclusive: device lost (destroyed)', (c) => c.m.makeExclusive(c.va, 1)],
    ['m.checkExclusive', 'EINVAL', 'checkExclusive: address space', (c) => c.m.checkExclusive(c.va, 1)],
    ['m.prefetch', 'EDEVLOST', 'prefetch: device lost (destroyed)', (c) => c.m.prefetch(c.va, P, 'device')],
    [
      'm.dispatch',
      'EDEVLOST',
      'dispatch: device lost (destroyed)',
      (c) => c.m.dispatch(c.k, { workgroups: 1, uniforms: new Uint32Array([c.va, 1]), ranges: [{ va: c.va, bytes: 4, access: 'rw' }] }),
    ],
    [
      'm.dispatch replayable',
      'EDEVLOST',
      'dispatch: device lost (destroyed)',
      (c) => c.m.dispatch(c.k, { workgroups: 1, mode: 'replayable', uniforms: new Uint32Array([c.va, 1]) }),
    ],
    ['dev.createKernel', 'EDEVLOST', 'createKernel: device lost (destroyed)', (c) => c.dev.createKernel({ code: DOUBLE })],
    ['dev.mirror', 'EDEVLOST', 'mirror: device lost (destroyed)', (c) => c.dev.mirror(c.mm)],
    ['dev.release', 'EDEVLOST', 'release: device lost (destroyed)', (c) => c.dev.release()],
  ];
  describe('after sys.destroy()', () => {
    // One destroyed system serves every row: each call is refused, so nothing changes.
    let c: Ctx;
    beforeAll(async () => {
      const s = await createSystem({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 64 << 10 }] });
      const d = s.devices[0]!;
      const mm4 = s.createAddressSpace();
      c = { sys: s, mm: mm4, dev: d, m: d.mirror(mm4), k: await d.createKernel({ code: DOUBLE }), va: mm4.mmap(2 * P) };
      await c.mm.write(c.va, pattern(2 * P));
      await c.m.migrateToDevice(c.va, 1); // one page device-private when the system goes
      s.destroy();
      s.destroy(); // idempotent
    });
    it.each(calls)('%s is %s (%s)', async (_name, code, text, call) => {
      const e = await refused(() => call(c));
      expect(e.code).toBe(code);
      expect(e.message).toContain(text);
      expect(c.dev.uncaptured).toEqual([]);
    });
  });

  it('a kernel outlives its system only as an EINVAL on another device', async () => {
    const s = await makeSystem({ devices: [{ memoryBytes: 64 << 10 }] });
    const old = await s.devices[0]!.createKernel({ code: DOUBLE, label: 'orphan' });
    s.destroy();
    const e = await failure(m.dispatch(old, { workgroups: 1, uniforms: new Uint32Array([BASE, 4]) }));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain("dispatch 'orphan': the kernel was created on another device");
    await intact();
  });

  it('calls in flight when the system is destroyed settle with an HmmError, never hang or crash', async () => {
    const s = await makeSystem({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 64 << 10 }] });
    const mm3 = s.createAddressSpace();
    const d = s.devices[0]!;
    const m3 = d.mirror(mm3);
    const va = mm3.mmap(4 * P);
    await mm3.write(va, pattern(4 * P));
    const kk = await d.createKernel({ code: DOUBLE });
    const inflight = [
      m3.dispatch(kk, { workgroups: 1, mode: 'replayable', uniforms: new Uint32Array([va, 64]) }),
      m3.read(va, 2),
      m3.migrateToDevice(va + 2 * P, 2),
      m3.write(va, new Uint8Array(P)),
      mm3.read(va, 4 * P),
    ];
    s.destroy();
    const settled = await Promise.allSettled(inflight);
    for (const r of settled) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(HmmError);
    expect(d.uncaptured).toEqual([]);
  });
});

describe('the address space goes away under a call in flight', () => {
  // Each call is started, then (before it can finish) the address space is destroyed or its
  // range unmapped: the call settles with an HmmError and no device or RAM frame is leaked.
  type Start = (m: Mirror, mm: AddressSpace, k: HmmKernel, va: number) => Promise<unknown>;
  const starts: [string, Start][] = [
    ['migrateToDevice', (m, _mm, _k, va) => m.migrateToDevice(va, 8)],
    ['mirror.read', (m, _mm, _k, va) => m.read(va, 8)],
    ['mirror.write', (m, _mm, _k, va) => m.write(va, new Uint8Array(8 * P))],
    ['replayable dispatch', (m, _mm, k, va) => m.dispatch(k, { workgroups: 8, mode: 'replayable', uniforms: new Uint32Array([va, 8 * 1024]) })],
    ['prefetch', (m, _mm, _k, va) => m.prefetch(va, 8 * P, 'device')],
    ['makeExclusive', (m, _mm, _k, va) => m.makeExclusive(va, 8)],
    ['migrateToDevice then a CPU read', (m, mm, _k, va) => m.migrateToDevice(va, 8).then(() => mm.read(va, 8 * P))],
  ];
  const ends: [string, (mm: AddressSpace, va: number) => unknown][] = [
    ['mm.destroy()', (mm) => mm.destroy()],
    ['munmap', (mm, va) => mm.munmap(va, 8 * P)],
  ];
  const rows = starts.flatMap(([what, start]) => ends.map(([how, end]) => [what, how, start, end] as const));
  it.each(rows)('%s, then %s: an HmmError, nothing leaked', async (_what, _how, start, end) => {
    const devFree = dev.memory.freeFrames;
    const ramFree = sys.ram.freeFrames;
    const mm3 = sys.createAddressSpace();
    const m3 = dev.mirror(mm3);
    const va = mm3.mmap(8 * P);
    await mm3.write(va, pattern(8 * P));
    const running = start(m3, mm3, k, va); // runs up to its first await
    await end(mm3, va);
    const e = await failure(running);
    expect(['EFAULT', 'EINVAL', 'ENOENT', 'ESEGV']).toContain(e.code);
    mm3.destroy();
    expect(dev.memory.freeFrames).toBe(devFree);
    expect(sys.ram.freeFrames).toBe(ramFree);
    await intact();
  });
});

describe('createSystem with a device that cannot be built', () => {
  it('is EINVAL naming the device, and no device of it stays acquired', async () => {
    // 64 KiB of memory in 4 KiB buffers needs 16 bindings; at most 4 are bound
    const e = await failure(
      createSystem({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 64 << 10 }, { memoryBytes: 64 << 10, maxBufferBytes: P, label: 'tiny' }] }),
    );
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain('tiny');
    expect(e.message).toContain('at most 4 are bound');
  });
});
