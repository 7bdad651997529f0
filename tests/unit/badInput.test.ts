// Bad input, without a GPU: every public AddressSpace call and createSystem refuse malformed
// arguments with an HmmError whose code and message name the call, the argument and the
// address, and a refused call loses nothing: the data and mappings it would have touched are
// still there, byte for byte, and no frame leaked.
import { describe, expect, it } from 'vitest';
import { HUGE_SIZE, MMAP_MIN_ADDR, PAGE_SIZE, VA_LIMIT } from '../../src/constants.ts';
import { createSystem, type Advice, type Prot, type SystemConfig } from '../../src/index.ts';
import { MAX_DEVICES } from '../../src/mm/cpuPageTable.ts';
import { hx, makeMm, pattern, throwsAsync, throwsSync, type Env } from './helpers.ts';

const P = PAGE_SIZE;
/** Two mapped pages, a one-page hole, two more mapped pages, all 'rw' and written. */
const BASE = 0x100000;
const HOLE = BASE + 2 * P;
const TAIL = BASE + 3 * P;

interface World extends Env {
  head: Uint8Array;
  tail: Uint8Array;
  freeFrames: number;
}

async function world(): Promise<World> {
  const env = makeMm();
  env.mm.mmap(2 * P, { addr: BASE });
  env.mm.mmap(2 * P, { addr: TAIL });
  const head = pattern(2 * P, 3);
  const tail = pattern(2 * P, 5);
  await env.mm.write(BASE, head);
  await env.mm.write(TAIL, tail);
  return { ...env, head, tail, freeFrames: env.ram.freeFrames };
}

/** Byte-equal (toEqual is slow on typed arrays; thousands of these run here). */
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0;

/** Nothing was lost: both mappings still read back their bytes, prot 'rw', and no frame moved. */
async function intact(w: World): Promise<void> {
  expect(same(await w.mm.read(BASE, 2 * P), w.head), 'head bytes changed').toBe(true);
  expect(same(await w.mm.read(TAIL, 2 * P), w.tail), 'tail bytes changed').toBe(true);
  expect(w.mm.vmaAt(BASE)?.prot).toBe('rw');
  expect(w.mm.vmaAt(TAIL)?.prot).toBe('rw');
  expect(w.mm.vmaAt(HOLE)).toBeUndefined();
  expect(w.mm.vmaAt(0)).toBeUndefined();
  expect(w.ram.freeFrames).toBe(w.freeFrames);
}

/** Values that are not a usable byte address or count, whatever the call. */
const NOT_NUMBERS: [string, unknown][] = [
  ['NaN', NaN],
  ['Infinity', Infinity],
  ['-Infinity', -Infinity],
  ['a negative number', -P],
  ['a non-integer', BASE + 0.5],
  ['a numeric string', String(BASE)],
  ['a bigint', BigInt(BASE)],
  ['null', null],
  ['undefined', undefined],
];
const BAD_ADDRESSES: [string, unknown][] = [...NOT_NUMBERS, ['4 GiB', VA_LIMIT], ['2^53', 2 ** 53]];
const BAD_LENGTHS: [string, unknown][] = [['zero', 0], ['-0', -0], ...NOT_NUMBERS];

type Call = (w: World, va: unknown, len: unknown) => unknown;
const as = <T>(v: unknown): T => v as T;
/** Every public AddressSpace call that takes an address and a length. */
const CALLS: [string, Call][] = [
  ['mmap', (w, va, len) => w.mm.mmap(as<number>(len), { addr: as<number>(va) })],
  ['munmap', (w, va, len) => w.mm.munmap(as<number>(va), as<number>(len))],
  ['mprotect', (w, va, len) => w.mm.mprotect(as<number>(va), as<number>(len), 'r')],
  ['advise', (w, va, len) => w.mm.advise(as<number>(va), as<number>(len), { readMostly: true })],
  ['read', (w, va, len) => w.mm.read(as<number>(va), as<number>(len))],
  ['write', (w, va, len) => w.mm.write(as<number>(va), new Uint8Array(typeof len === 'number' && len > 0 && len < 1 << 20 ? len : 1))],
];
/** Calls whose address must be page-aligned. */
const ALIGNED_CALLS = CALLS.filter(([name]) => ['mmap', 'munmap', 'mprotect', 'advise'].includes(name));
/** Calls that take a length argument (write takes it from the data). */
const LENGTH_CALLS = CALLS.filter(([name]) => name !== 'write');

/** Every (call, value) pair as [callName, valueName, call, value], for it.each titles. */
const cross = <A, B>(as: [string, A][], bs: [string, B][]): [string, string, A, B][] =>
  as.flatMap(([an, a]) => bs.map(([bn, b]): [string, string, A, B] => [an, bn, a, b]));

describe('bad addresses', () => {
  // mmap with addr undefined simply means "no fixed address"
  const rows = cross(CALLS, BAD_ADDRESSES).filter(([name, what]) => !(name === 'mmap' && what === 'undefined'));
  it.each(rows)('%s at %s is EINVAL naming the call and the address; nothing changes', async (name, _what, call, va) => {
    const w = await world();
    const e = await throwsAsync('EINVAL', () => call(w, va, P));
    expect(e.message).toContain(name);
    expect(e.message).toContain('address');
    await intact(w);
  });

  it.each(
    cross(ALIGNED_CALLS, [
      ['+1', 1],
      ['+4095', P - 1],
      ['+2049', 2049],
    ] as [string, number][]),
  )('%s at an unaligned address (BASE %s) is EINVAL naming it; nothing changes', async (name, _what, call, off) => {
    const w = await world();
    const e = await throwsAsync('EINVAL', () => call(w, BASE + off, P));
    expect(e.message).toContain(name);
    expect(e.message).toContain(hx(BASE + off));
    expect(e.message).toContain('not 4 KiB aligned');
    expect(e.address).toBe(BASE + off);
    await intact(w);
  });
});

describe('bad lengths', () => {
  it.each(cross(LENGTH_CALLS, BAD_LENGTHS))('%s with length %s is EINVAL naming the length; nothing changes', async (name, _what, call, len) => {
    const w = await world();
    const e = await throwsAsync('EINVAL', () => call(w, BASE, len));
    expect(e.message).toContain(name);
    expect(e.message).toContain('length');
    expect(e.message).toContain('not a positive integer');
    await intact(w);
  });

  it('write of empty data is EINVAL naming the length', async () => {
    const w = await world();
    expect((await throwsAsync('EINVAL', () => w.mm.write(BASE, new Uint8Array(0)))).message).toContain('length 0');
    await intact(w);
  });
});

describe('ranges running past 4 GiB (va + len wraps)', () => {
  const cases: [string, number, number][] = [
    ['last page + 1 byte', VA_LIMIT - P, P + 1],
    ['last page + a page', VA_LIMIT - P, 2 * P],
    ['4 GiB from BASE', BASE, VA_LIMIT],
    ['2^40 bytes', BASE, 2 ** 40],
    ['2^53 bytes', BASE, 2 ** 53],
  ];
  it.each(
    cross(
      LENGTH_CALLS,
      cases.map(([n, va, len]) => [n, [va, len]] as [string, [number, number]]),
    ),
  )('%s over %s is EINVAL naming the start; nothing changes', async (name, _what, call, [va, len]) => {
    const w = await world();
    const e = await throwsAsync('EINVAL', () => call(w, va, len));
    expect(e.message).toContain(name);
    expect(e.message).toContain(hx(va));
    expect(e.message).toContain('past the end of the 4 GiB address space');
    expect(e.address).toBe(va);
    await intact(w);
  });

  it.each([
    [VA_LIMIT - 1, 2],
    [VA_LIMIT - 3, 4],
    [VA_LIMIT - P + 1, P],
  ])('a CPU write at %s of %s bytes is EINVAL; nothing changes', async (va, len) => {
    const w = await world();
    const e = await throwsAsync('EINVAL', () => w.mm.write(va, new Uint8Array(len).fill(9)));
    expect(e.message).toContain('past the end');
    await intact(w);
  });

  it('a mapping as large as the address space is ENOMEM, a larger fixed one EINVAL', async () => {
    const w = await world();
    expect(throwsSync('ENOMEM', () => w.mm.mmap(VA_LIMIT - MMAP_MIN_ADDR + P)).message).toContain('no free range');
    expect(throwsSync('ENOMEM', () => w.mm.mmap(2 ** 53)).message).toContain('no free range');
    throwsSync('EINVAL', () => w.mm.mmap(VA_LIMIT, { addr: MMAP_MIN_ADDR }));
    throwsSync('EINVAL', () => w.mm.mmap(HUGE_SIZE, { huge: true, addr: VA_LIMIT - HUGE_SIZE / 2 }));
    await intact(w);
  });
});

describe('ranges over holes', () => {
  const cases: [string, (w: World) => Promise<unknown>, string, number][] = [
    ['read across the hole', (w) => w.mm.read(BASE + P, 2 * P), 'EFAULT', HOLE],
    ['read starting in the hole', (w) => w.mm.read(HOLE + 100, 10), 'EFAULT', HOLE + 100],
    ['write across the hole', (w) => w.mm.write(BASE + P, new Uint8Array(3 * P).fill(0xee)), 'EFAULT', HOLE],
    ['write ending in the hole', (w) => w.mm.write(HOLE - 8, new Uint8Array(16).fill(0xee)), 'EFAULT', HOLE],
    ['mprotect across the hole', (w) => w.mm.mprotect(BASE, 5 * P, 'r'), 'ENOMEM', HOLE],
    ['advise across the hole', (w) => w.mm.advise(BASE, 5 * P, { readMostly: true }), 'ENOMEM', HOLE],
  ];
  it.each(cases)('%s is %s naming the first unmapped address; nothing changes', async (_name, call, code, at) => {
    const w = await world();
    const e = await throwsAsync(code as 'EFAULT', () => call(w));
    expect(e.address).toBe(at);
    expect(e.message).toContain(hx(at));
    expect(e.message).toContain('not mapped');
    await intact(w);
    expect(w.mm.vmaAt(BASE)?.readMostly).toBeUndefined();
  });

  it('munmap over a hole is allowed (as the kernel) and unmaps only what was mapped', async () => {
    const w = await world();
    await w.mm.munmap(BASE + P, 2 * P);
    expect(same(await w.mm.read(BASE, P), w.head.subarray(0, P))).toBe(true);
    expect(same(await w.mm.read(TAIL, 2 * P), w.tail)).toBe(true);
    await throwsAsync('EFAULT', () => w.mm.read(BASE + P, 1));
  });
});

describe('VA 0: page 0 stays unmapped', () => {
  const cases: [string, string, number, (w: World) => unknown][] = [
    ['mmap fixed at 0', 'EINVAL', 0, (w) => w.mm.mmap(P, { addr: 0 })],
    ['mmap fixed at 0, huge', 'EINVAL', 0, (w) => w.mm.mmap(HUGE_SIZE, { addr: 0, huge: true })],
    ['mmap fixed just below MMAP_MIN_ADDR', 'EINVAL', MMAP_MIN_ADDR - P, (w) => w.mm.mmap(2 * P, { addr: MMAP_MIN_ADDR - P })],
    ['read of 0', 'EFAULT', 0, (w) => w.mm.read(0, 1)],
    ['read of 0..4', 'EFAULT', 0, (w) => w.mm.read(0, 4)],
    ['write to 0', 'EFAULT', 0, (w) => w.mm.write(0, new Uint8Array(4))],
    ['mprotect of page 0', 'ENOMEM', 0, (w) => w.mm.mprotect(0, P, 'rw')],
    ['advise of page 0', 'ENOMEM', 0, (w) => w.mm.advise(0, P, { readMostly: true })],
  ];
  it.each(cases)('%s is %s naming address %s', async (_name, code, at, call) => {
    const w = await world();
    const e = await throwsAsync(code as 'EFAULT', () => call(w));
    expect(e.message).toContain(hx(at));
    expect(e.address).toBe(at);
    await intact(w);
  });

  it('an mmap with no address never returns 0', async () => {
    const w = await world();
    for (let i = 0; i < 8; i++) expect(w.mm.mmap(P)).toBeGreaterThanOrEqual(MMAP_MIN_ADDR);
  });
});

describe('huge mappings at unaligned fixed addresses', () => {
  it.each([
    ['page- but not 2 MiB-aligned', HUGE_SIZE + P, 'not 2 MiB aligned'],
    ['half-way into a 2 MiB block', 3 * (HUGE_SIZE / 2), 'not 2 MiB aligned'],
    ['not even page-aligned', HUGE_SIZE + 1, 'not 4 KiB aligned'],
    ['the last 2 MiB block minus a page', VA_LIMIT - HUGE_SIZE - P, 'not 2 MiB aligned'],
  ])('%s (%s) is EINVAL naming the address; nothing changes', async (_name, addr, text) => {
    const w = await world();
    const e = throwsSync('EINVAL', () => w.mm.mmap(HUGE_SIZE, { huge: true, addr }));
    expect(e.message).toContain(hx(addr));
    expect(e.message).toContain(text);
    expect(e.address).toBe(addr);
    await intact(w);
    expect(w.mm.vmaAt(addr)).toBeUndefined();
  });

  it('a huge fixed mapping that would replace existing data fails before replacing it', async () => {
    const w = await world();
    throwsSync('EINVAL', () => w.mm.mmap(HUGE_SIZE, { huge: true, addr: BASE - P })); // BASE - P is not 2 MiB aligned
    await intact(w);
  });
});

describe('bad mmap options', () => {
  it.each([
    ['null options', null, 'options'],
    ['a string for options', 'rw', 'options'],
    ['a number for options', 3, 'options'],
    ['prot x', { prot: 'x' }, 'prot'],
    ['prot RW', { prot: 'RW' }, 'prot'],
    ['prot rwx', { prot: 'rwx' }, 'prot'],
    ['prot empty', { prot: '' }, 'prot'],
    ['shared "yes"', { shared: 'yes' }, 'shared'],
    ['shared 1', { shared: 1 }, 'shared'],
    ['huge "true"', { huge: 'true' }, 'huge'],
    ['huge 1', { huge: 1 }, 'huge'],
    ['addr string', { addr: '0x100000' }, 'address'],
    ['addr NaN', { addr: NaN }, 'address'],
    ['addr null', { addr: null }, 'address'],
  ])('%s is EINVAL naming %s; nothing changes', async (_name, opts, word) => {
    const w = await world();
    const e = throwsSync('EINVAL', () => w.mm.mmap(P, opts as never));
    expect(e.message).toContain('mmap');
    expect(e.message).toContain(word);
    await intact(w);
  });

  it('a refused fixed mmap over existing data leaves that data in place', async () => {
    const w = await world();
    for (const opts of [{ prot: 'bad' }, { shared: 'no' }, { huge: 0 }]) throwsSync('EINVAL', () => w.mm.mmap(2 * P, { addr: BASE, ...opts } as never));
    await intact(w);
  });
});

describe('bad prot for mprotect', () => {
  it.each(['x', 'w', 'RW', 'rwx', '', ' r', null, undefined, 3, true, { prot: 'r' }])('prot %s is EINVAL naming it; prot and data stay', async (prot) => {
    const w = await world();
    const e = await throwsAsync('EINVAL', () => w.mm.mprotect(BASE, 2 * P, prot as Prot));
    expect(e.message).toContain('mprotect');
    expect(e.message).toContain('prot');
    await intact(w);
    await w.mm.write(BASE, new Uint8Array([1])); // still writable
  });
});

describe('bad advise objects', () => {
  it.each([
    ['null', null, 'advice must be an object'],
    ['undefined', undefined, 'advice must be an object'],
    ['a string', 'readMostly', 'advice must be an object'],
    ['a number', 1, 'advice must be an object'],
    ['an array', [{ readMostly: true }], 'advice must be an object'],
    ['a misspelt key', { prefered: 'system' }, "unknown advice 'prefered'"],
    ['an unknown key next to good ones', { readMostly: true, pinned: true }, "unknown advice 'pinned'"],
    ['readMostly "yes"', { readMostly: 'yes' }, 'readMostly must be a boolean'],
    ['readMostly 1', { readMostly: 1 }, 'readMostly must be a boolean'],
    ['preferred device 0 with no devices', { preferred: 0 }, 'preferred 0 is not a device'],
    ['preferred "gpu"', { preferred: 'gpu' }, 'preferred gpu is not a device'],
    ['preferred -1', { preferred: -1 }, 'preferred -1 is not a device'],
    ['preferred 0.5', { preferred: 0.5 }, 'preferred 0.5 is not a device'],
    ['preferred NaN', { preferred: NaN }, 'preferred NaN is not a device'],
    ['accessedBy a number', { accessedBy: 0 }, 'accessedBy must be an array'],
    ['accessedBy a string', { accessedBy: 'all' }, 'accessedBy must be an array'],
    ['accessedBy an unknown device', { accessedBy: [0] }, 'accessedBy device 0 is not a device'],
  ])('%s is EINVAL (%s); the advice already given stays', async (_name, advice, text) => {
    const w = await world();
    await w.mm.advise(BASE, 2 * P, { preferred: 'system' });
    const e = await throwsAsync('EINVAL', () => w.mm.advise(BASE, 2 * P, advice as Advice));
    expect(e.message).toContain('advise');
    expect(e.message).toContain(hx(BASE));
    expect(e.message).toContain(text);
    expect(e.address).toBe(BASE);
    expect(w.mm.vmaAt(BASE)?.preferred).toBe('system');
    expect(w.mm.vmaAt(BASE)?.readMostly).toBeUndefined();
    await intact(w);
  });

  it('good advice is still accepted (empty, null preferred, booleans)', async () => {
    const w = await world();
    await w.mm.advise(BASE, P, {});
    await w.mm.advise(BASE, P, { preferred: 'system', readMostly: false, accessedBy: [] });
    await w.mm.advise(BASE, P, { preferred: null });
    expect(w.mm.vmaAt(BASE)?.preferred).toBeUndefined();
  });
});

describe('non-Uint8Array data', () => {
  const words = new Uint32Array([1, 2, 3, 4]);
  it.each([
    ['a number array', [1, 2, 3, 4]],
    ['an ArrayBuffer', words.buffer],
    ['a Uint32Array', words],
    ['an Int8Array', new Int8Array(16)],
    ['a Uint8ClampedArray', new Uint8ClampedArray(16)],
    ['a DataView', new DataView(words.buffer)],
    ['a string', 'abcd'],
    ['null', null],
    ['undefined', undefined],
    ['an array-like object', { length: 4, 0: 1, 1: 2, 2: 3, 3: 4 }],
  ])('write of %s is EINVAL naming data and the address; nothing is written', async (_name, data) => {
    const w = await world();
    const e = await throwsAsync('EINVAL', () => w.mm.write(BASE + 8, data as unknown as Uint8Array));
    expect(e.message).toContain('data');
    expect(e.message).toContain('not a Uint8Array');
    expect(e.message).toContain(hx(BASE + 8));
    await intact(w);
  });

  it('Uint8Array views are fine: a Buffer, a subarray, a view on a SharedArrayBuffer', async () => {
    const w = await world();
    await w.mm.write(BASE, Buffer.from([1, 2, 3]));
    await w.mm.write(BASE + 3, new Uint8Array([9, 4, 5, 9]).subarray(1, 3));
    const shared = new Uint8Array(new SharedArrayBuffer(2));
    shared.set([6, 7]);
    await w.mm.write(BASE + 5, shared);
    expect(await w.mm.read(BASE, 8)).toEqual(new Uint8Array([1, 2, 3, 4, 5, 6, 7, w.head[7]!]));
  });
});

describe('use after AddressSpace.destroy()', () => {
  const calls: [string, (w: World) => unknown][] = [
    ['mmap', (w) => w.mm.mmap(P)],
    ['mmap fixed', (w) => w.mm.mmap(P, { addr: BASE })],
    ['munmap', (w) => w.mm.munmap(BASE, P)],
    ['mprotect', (w) => w.mm.mprotect(BASE, P, 'r')],
    ['advise', (w) => w.mm.advise(BASE, P, { readMostly: true })],
    ['read', (w) => w.mm.read(BASE, 1)],
    ['write', (w) => w.mm.write(BASE, new Uint8Array(1))],
  ];
  it.each(calls)('%s is EINVAL naming the call and the destroyed address space', async (name, call) => {
    const w = await world();
    w.mm.destroy();
    const free = w.ram.freeFrames;
    const e = await throwsAsync('EINVAL', () => call(w));
    expect(e.message).toContain(`${name.split(' ')[0]}: address space ${w.mm.id} was destroyed`);
    expect(w.ram.freeFrames).toBe(free); // no frame taken
    expect(w.mm.vmaAt(BASE)).toBeUndefined();
  });

  it('destroy() checks the address space before its arguments: bad arguments are still "destroyed"', async () => {
    const w = await world();
    w.mm.destroy();
    expect((await throwsAsync('EINVAL', () => w.mm.read(NaN, -1))).message).toContain('destroyed');
    expect(throwsSync('EINVAL', () => w.mm.mmap(0)).message).toContain('destroyed');
  });
});

describe('createSystem options', () => {
  const dev = (o: object): SystemConfig => ({ systemRamBytes: 1 << 20, devices: [{ memoryBytes: 1 << 16, ...o }] });
  const cases: [string, unknown, string][] = [
    ['no config', undefined, 'config object required'],
    ['null config', null, 'config object required'],
    ['a number for config', 1 << 20, 'config object required'],
    ['no systemRamBytes', {}, 'systemRamBytes undefined'],
    ['systemRamBytes 0', { systemRamBytes: 0 }, 'systemRamBytes 0'],
    ['systemRamBytes negative', { systemRamBytes: -4096 }, 'systemRamBytes -4096'],
    ['systemRamBytes unaligned', { systemRamBytes: 4097 }, 'systemRamBytes 4097'],
    ['systemRamBytes NaN', { systemRamBytes: NaN }, 'systemRamBytes NaN'],
    ['systemRamBytes Infinity', { systemRamBytes: Infinity }, 'systemRamBytes Infinity'],
    ['systemRamBytes a string', { systemRamBytes: '1048576' }, "systemRamBytes '1048576'"],
    ['devices an object', { systemRamBytes: 1 << 20, devices: { memoryBytes: 1 << 16 } }, 'devices {object} is not an array'],
    ['devices a string', { systemRamBytes: 1 << 20, devices: 'gpu' }, "devices 'gpu' is not an array"],
    [
      'too many devices',
      { systemRamBytes: 1 << 20, devices: Array.from({ length: MAX_DEVICES + 1 }, () => ({ memoryBytes: 1 << 16 })) },
      `at most ${MAX_DEVICES} devices`,
    ],
    ['a null device', { systemRamBytes: 1 << 20, devices: [null] }, 'devices[0] null is not an object'],
    ['a number device', { systemRamBytes: 1 << 20, devices: [4096] }, 'devices[0] 4096 is not an object'],
    ['no memoryBytes', { systemRamBytes: 1 << 20, devices: [{}] }, 'devices[0].memoryBytes undefined'],
    ['memoryBytes 100', dev({ memoryBytes: 100 }), 'devices[0].memoryBytes 100'],
    ['memoryBytes negative', dev({ memoryBytes: -(1 << 16) }), 'devices[0].memoryBytes -65536'],
    ['memoryBytes NaN', dev({ memoryBytes: NaN }), 'devices[0].memoryBytes NaN'],
    ['memoryBytes non-integer', dev({ memoryBytes: 4096.5 }), 'devices[0].memoryBytes 4096.5'],
    [
      'a bad second device (the first is never acquired)',
      { systemRamBytes: 1 << 20, devices: [{ memoryBytes: 1 << 16 }, { memoryBytes: 0 }] },
      'devices[1].memoryBytes 0',
    ],
    ['maxBufferBytes 0', dev({ maxBufferBytes: 0 }), 'devices[0].maxBufferBytes 0'],
    ['maxBufferBytes NaN', dev({ maxBufferBytes: NaN }), 'devices[0].maxBufferBytes NaN'],
    ['maxBufferBytes unaligned', dev({ maxBufferBytes: 5000 }), 'devices[0].maxBufferBytes 5000'],
    ['label a number', dev({ label: 7 }), 'devices[0].label 7 is not a string'],
    ['evictionBytes 8192', dev({ evictionBytes: 8192 }), 'devices[0].evictionBytes 8192'],
    ['prefetch null', dev({ prefetch: null }), 'devices[0].prefetch null is not an object'],
    ['prefetch threshold 500', dev({ prefetch: { threshold: 500 } }), 'devices[0].prefetch.threshold 500'],
    ['prefetch threshold NaN', dev({ prefetch: { threshold: NaN } }), 'devices[0].prefetch.threshold NaN'],
    ['prefetch upgradePages 3', dev({ prefetch: { upgradePages: 3 } }), 'devices[0].prefetch.upgradePages 3'],
    ['prefetch upgradePages 1024', dev({ prefetch: { upgradePages: 1024 } }), 'devices[0].prefetch.upgradePages 1024'],
    ['prefetch enabled "yes"', dev({ prefetch: { enabled: 'yes' } }), "devices[0].prefetch.enabled 'yes'"],
    ['thrashing a number', { systemRamBytes: 1 << 20, thrashing: 5 }, 'thrashing 5 is not an object'],
    ['thrashing enabled 1', { systemRamBytes: 1 << 20, thrashing: { enabled: 1 } }, 'thrashing.enabled 1'],
    ['thrashing windowMs -1', { systemRamBytes: 1 << 20, thrashing: { windowMs: -1 } }, 'thrashing.windowMs -1'],
    ['thrashing pinMs NaN', { systemRamBytes: 1 << 20, thrashing: { pinMs: NaN } }, 'thrashing.pinMs NaN'],
  ];
  it.each(cases.map(([n, c, t]) => [n, t, c] as const))('%s is EINVAL (%s), before any device is acquired', async (_name, text, config) => {
    const e = await throwsAsync('EINVAL', () => createSystem(config as SystemConfig));
    expect(e.message).toContain('createSystem');
    expect(e.message).toContain(text);
  });

  it('system RAM that cannot be allocated is ENOMEM, not a RangeError', async () => {
    const e = await throwsAsync('ENOMEM', () => createSystem({ systemRamBytes: 2 ** 50 }));
    expect(e.message).toContain('cannot allocate');
  });
});

describe('use after System.destroy() (no devices)', () => {
  it('createAddressSpace is EINVAL; address spaces made before are EINVAL; destroy is idempotent', async () => {
    const sys = await createSystem({ systemRamBytes: 1 << 20 });
    const mm = sys.createAddressSpace();
    const va = mm.mmap(P);
    await mm.write(va, new Uint8Array([1]));
    sys.destroy();
    sys.destroy();
    expect(throwsSync('EINVAL', () => sys.createAddressSpace()).message).toContain('createAddressSpace: the system was destroyed');
    expect((await throwsAsync('EINVAL', () => mm.read(va, 1))).message).toContain(`read: address space ${mm.id} was destroyed`);
    expect(throwsSync('EINVAL', () => mm.mmap(P)).message).toContain('destroyed');
    expect(sys.ram.freeFrames).toBe(sys.ram.frameCount); // everything given back
  });
});
