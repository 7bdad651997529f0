// Kernel isolation (src/device/kernelCheck.ts, docs/threat-model.md): the WGSL tokenizer and
// every rule, with the attacks each one stops. No GPU: tests/gpu/isolation.test.ts shows the
// same on the real adapter.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkKernelSource, definesKernel, KERNEL_API, lexWgsl, moduleScopeReferences, type KernelViolation } from '../../src/device/kernelCheck.ts';
import { shaderSource } from '../../src/device/shaders.ts';

const prelude = await shaderSource('prelude');
// The entry point kernel.ts appends; its names are part of what a kernel may not redeclare.
const ENTRY = `
@compute @workgroup_size(1, 1, 1)
fn hmm_main(@builtin(global_invocation_id) hmm_gid: vec3u, @builtin(num_workgroups) hmm_nwg: vec3u) {
  if (HMM_REPLAYABLE) { let idx = hmm_invocation_index(hmm_gid, hmm_nwg, vec3u(1u, 1u, 1u)); if (hmm_is_done(idx)) { return; } kernel(hmm_gid); hmm_mark_done(idx); } else { kernel(hmm_gid); }
}`;
const preludeReferences = moduleScopeReferences(`${prelude}\n${ENTRY}`);
const user = { preludeReferences, bindings: [0] };
const io = { preludeReferences, bindings: [0, 1] };

const check = (code: string, opts = user): KernelViolation[] => checkKernelSource(code, opts);
const subjects = (code: string, opts = user): string[] => check(code, opts).map((v) => v.subject);
const idents = (code: string): string[] =>
  lexWgsl(code)
    .tokens.filter((t) => t.kind === 'ident')
    .map((t) => t.text);

/** A well-formed kernel around one body line. */
const body = (line: string): string => `@group(0) @binding(0) var<uniform> u: vec4u;\nfn kernel(gid: vec3u) {\n  ${line}\n}`;

/** Every hmm_/HMM_ name the prelude declares, public or not (functions, variables, constants, overrides). */
const preludeDeclared = [
  ...new Set(
    lexWgsl(prelude)
      .tokens.filter(
        (t, k, all) => t.kind === 'ident' && /^(hmm_|HMM_)/.test(t.text) && ['fn', 'var', 'const', 'override', '>'].includes(all[k - 1]?.text ?? ''),
      )
      .map((t) => t.text),
  ),
];
const internals = preludeDeclared.filter((n) => !KERNEL_API.includes(n));

describe('WGSL tokens', () => {
  it('drop line comments, block comments and nested block comments, and nothing else', () => {
    expect(idents('a // b c\nd')).toEqual(['a', 'd']);
    expect(idents('a /* b */ c')).toEqual(['a', 'c']);
    expect(idents('a /* b /* c */ d */ e')).toEqual(['a', 'e']); // nested: the first */ closes the inner one
    expect(idents('a /* /* */ */ b')).toEqual(['a', 'b']);
    expect(idents('a /*/ b */ c')).toEqual(['a', 'c']); // `/*/` opens, does not close
    expect(idents('a /* // b */ c')).toEqual(['a', 'c']); // a line comment means nothing inside a block one
    expect(idents('a // /* b\nc')).toEqual(['a', 'c']); // nor a block opener inside a line comment
    expect(idents('a/**/b')).toEqual(['a', 'b']); // a comment separates tokens
  });

  it('end a line comment at every WGSL line break, not only \\n', () => {
    for (const br of ['\n', '\r', '\r\n', '\v', '\f', '\u0085', '\u2028', '\u2029']) expect(idents(`a // b${br}c`), JSON.stringify(br)).toEqual(['a', 'c']);
  });

  it('split identifiers at WGSL blankspace, including the Unicode marks', () => {
    for (const sp of [' ', '\t', '\u200e', '\u200f', '\u2028']) expect(idents(`a${sp}b`), JSON.stringify(sp)).toEqual(['a', 'b']);
  });

  it('take identifiers whole, by the spec (XID, a leading underscore needs a second character)', () => {
    expect(idents('xhmm_mem0 hmm_mem0x my_hmm_mem0 _hmm σ1 __x')).toEqual(['xhmm_mem0', 'hmm_mem0x', 'my_hmm_mem0', '_hmm', 'σ1', '__x']);
    expect(lexWgsl('_ = 1;').tokens.map((t) => t.kind)).toEqual(['punct', 'punct', 'number', 'punct']);
  });

  it('read numeric literals by the longest form, so a suffix never swallows the identifier after it', () => {
    const texts = (s: string) => lexWgsl(s).tokens.map((t) => `${t.kind[0]}:${t.text}`);
    expect(texts('1u 0x1F 1.5 .5e3f 0x1p4 1e-3 0i 2h')).toEqual(['n:1u', 'n:0x1F', 'n:1.5', 'n:.5e3f', 'n:0x1p4', 'n:1e-3', 'n:0i', 'n:2h']);
    expect(texts('1uhmm_mem0')).toEqual(['n:1u', 'i:hmm_mem0']);
    expect(texts('0hmm_mem0')).toEqual(['n:0h', 'i:mm_mem0']); // `0h` is an f16 literal
    expect(texts('0xhmm')).toEqual(['n:0', 'i:xhmm']);
  });

  it('count lines by \\n and columns from 1', () => {
    const t = lexWgsl('a\n  /* x\n y */ b\r\n\tc').tokens;
    expect(t.map((x) => [x.text, x.line, x.column])).toEqual([
      ['a', 1, 1],
      ['b', 3, 7],
      ['c', 4, 2],
    ]);
  });

  it('report an unterminated block comment where it opens', () => {
    expect(lexWgsl('a\n /* b /* c */').unterminatedComment).toEqual({ line: 2, column: 2 });
    expect(lexWgsl('a /* b */').unterminatedComment).toBeUndefined();
  });
});

describe('the public surface', () => {
  it('is what the prelude defines as functions, and the kernel-facing API is all of it', () => {
    for (const name of KERNEL_API) expect(prelude, name).toMatch(new RegExp(`\\bfn ${name}\\(`));
    // the prelude's internals the rules must cover: buffers, tables, control, helpers that take a frame
    for (const name of [
      'hmm_mem0',
      'hmm_mem1',
      'hmm_mem2',
      'hmm_mem3',
      'hmm_dir',
      'hmm_leaves',
      'hmm_ctl',
      'hmm_word_load',
      'hmm_word_store',
      'hmm_word_add',
      'hmm_word_and_or',
      'hmm_word_index',
      'hmm_buffer_of',
      'hmm_translate',
      'hmm_faulted',
      'hmm_record_miss',
      'HMM_FRAME_SHIFT',
      'HMM_MISS',
      'HMM_PTE_WRITE',
    ])
      expect(internals).toContain(name);
  });

  it('a kernel may call every public function', () => {
    const code = body(
      'hmm_store_u32(u.x, hmm_load_u32(u.y)); hmm_store_f32(u.x, hmm_load_f32(u.y)); _ = hmm_atomic_add_u32(u.x, 1u); hmm_store_u8(u.x, hmm_load_u8(u.y)); if (hmm_touch(u.x, true) && hmm_ok()) { return; }',
    );
    expect(check(code)).toEqual([]);
  });

  it.each(internals)('a kernel that names the internal %s is refused, naming it and its own line', (name) => {
    const code = `// uses ${name} below\n@group(0) @binding(0) var<uniform> u: vec4u;\nfn kernel(gid: vec3u) {\n  _ = ${name};\n}`;
    const v = check(code);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ rule: 'reserved', subject: name, line: 4, column: 7 });
    expect(v[0]!.reason).toContain(`'${name}' is internal to the prelude`);
  });

  it("the issue's attacks are refused: a scan of the memory pool, a page-table write, a store to a frame of its choosing", () => {
    expect(subjects(body('let w = atomicLoad(&hmm_mem0[gid.x]);'))).toEqual(['hmm_mem0']);
    expect(subjects(body('atomicStore(&hmm_leaves[u.x], (u.y << 8u) | 3u);'))).toEqual(['hmm_leaves']);
    expect(subjects(body('hmm_word_store(u.x, u.y, 0xC0FFEEu);'))).toEqual(['hmm_word_store']);
    expect(subjects(body('let f = hmm_translate(u.x, true);'))).toEqual(['hmm_translate']);
  });

  it('the reserved namespace covers names the prelude does not have, and both spellings', () => {
    expect(subjects(body('let hmm_mine = 1u;'))).toEqual(['hmm_mine']);
    expect(subjects(body('let HMM_MINE = 1u;'))).toEqual(['HMM_MINE']);
    expect(subjects(body('_ = hmm_mem0x;'))).toEqual(['hmm_mem0x']);
    expect(subjects(body('_ = hmm_;'))).toEqual(['hmm_']);
  });

  it("names that only contain the prefix are the kernel's own", () => {
    expect(
      check(body('let xhmm_mem0 = 1u; let my_hmm_leaves = 2u; let Hmm_mem0 = 3u; let hmmmem0 = 4u; _ = xhmm_mem0 + my_hmm_leaves + Hmm_mem0 + hmmmem0;')),
    ).toEqual([]);
  });

  it('a public name may only be called: declaring, shadowing or taking it otherwise is refused', () => {
    expect(subjects(body('let hmm_ok = true;'))).toEqual(['hmm_ok']);
    expect(subjects(body('var hmm_load_u32: u32 = 0u;'))).toEqual(['hmm_load_u32']);
    expect(subjects('@group(0) @binding(0) var<uniform> u: vec4u;\nfn kernel(hmm_touch: vec3u) { }')).toEqual(['hmm_touch']);
    expect(subjects('fn hmm_store_u32(va: u32, v: u32) { }\nfn kernel(gid: vec3u) { }')).toEqual(['hmm_store_u32']);
    expect(subjects('struct S { hmm_ok: u32 }\nfn kernel(gid: vec3u) { }')).toEqual(['hmm_ok']);
    expect(subjects(body('let f = hmm_load_u32;'))).toEqual(['hmm_load_u32']);
  });
});

describe('comments neither hide nor fake a use', () => {
  it('a name inside a comment of any form is not a use', () => {
    expect(check(body('// atomicLoad(&hmm_mem0[0])'))).toEqual([]);
    expect(check(body('/* hmm_leaves */ _ = 1u;'))).toEqual([]);
    expect(check(body('/* /* hmm_mem0 */ still hmm_ctl */ _ = 1u;'))).toEqual([]);
    expect(check(body('/**/ // hmm_dir\n'))).toEqual([]);
  });

  it('code after a comment closes is code, nested or not', () => {
    expect(subjects(body('/* /* */ */ _ = hmm_mem0[0];'))).toEqual(['hmm_mem0']);
    expect(subjects(body('/* a */ _ = hmm_dir[0]; /* b */'))).toEqual(['hmm_dir']);
  });

  it('a line comment ends at every line break the compiler may honour', () => {
    for (const br of ['\r', '\v', '\f', '\u0085', '\u2028', '\u2029'])
      expect(subjects(body(`// innocent${br}_ = hmm_mem0[0];`)), JSON.stringify(br)).toEqual(['hmm_mem0']);
  });

  it('a comment inside a name splits it, and the reserved half is still refused', () => {
    expect(subjects(body('_ = hmm_/**/mem0[0];'))).toEqual(['hmm_']);
    expect(subjects(body('_ = hmm_\u200emem0[0];'))).toEqual(['hmm_']);
  });

  it('an unterminated block comment is refused: it would swallow the entry point', () => {
    const v = check('fn kernel(gid: vec3u) { }\n/* /* */');
    expect(v).toHaveLength(1);
    expect(v[0]).toMatchObject({ rule: 'comment', line: 2, column: 1 });
  });

  it('fn kernel must be code, not a comment', () => {
    expect(definesKernel('fn kernel(gid: vec3u) {}')).toBe(true);
    expect(definesKernel('fn  kernel /* x */ (gid: vec3u) {}')).toBe(true);
    expect(definesKernel('// fn kernel(gid: vec3u) {}\nfn main() {}')).toBe(false);
    expect(definesKernel('fn f() { let kernel = 1; }')).toBe(false);
  });
});

describe('aliases and pointers reach nothing', () => {
  it('an alias or a pointer to an internal names it, and is refused', () => {
    expect(subjects(body('let p = &hmm_leaves;'))).toEqual(['hmm_leaves']);
    expect(subjects(body('let p = &hmm_mem0[0]; atomicStore(p, 1u);'))).toEqual(['hmm_mem0']);
    expect(subjects('alias Table = hmm_dir;\nfn kernel(gid: vec3u) { }')).toEqual(['hmm_dir']);
    expect(subjects('const S = HMM_FRAME_SHIFT;\nfn kernel(gid: vec3u) { }')).toEqual(['HMM_FRAME_SHIFT']);
  });

  it("aliases and pointers of the kernel's own things are fine", () => {
    const code = 'alias Words = array<u32, 4>;\nvar<private> w: Words;\nfn kernel(gid: vec3u) {\n  let p = &w[1];\n  *p = hmm_load_u32(gid.x);\n}';
    expect(check(code)).toEqual([]);
  });
});

describe('a kernel may not replace what the prelude resolves at module scope', () => {
  it('the prelude resolves the built-ins it calls and the types it names there, not its own locals', () => {
    for (const name of [
      'atomicLoad',
      'atomicStore',
      'atomicOr',
      'atomicAnd',
      'atomicAdd',
      'atomicMin',
      'select',
      'bitcast',
      'u32',
      'f32',
      'bool',
      'vec3u',
      'array',
      'atomic',
      'hmm_leaves',
      'HMM_MISS',
      'kernel',
    ])
      expect(preludeReferences.has(name), name).toBe(true);
    // (`kernel` is one too: the entry point calls it, and declaring it is the one exception)
    for (const name of ['va', 'write', 'frame', 'idx', 'mask', 'shift', 'row', 'slot', 'key']) expect(preludeReferences.has(name), name).toBe(false);
  });

  it.each([
    [
      'a function named like a built-in the translation calls',
      'fn atomicOr(p: ptr<storage, atomic<u32>, read_write>, v: u32) -> u32 { atomicStore(p, v); return 0u; }',
      'atomicOr',
    ],
    ['select', 'fn select(a: u32, b: u32, c: bool) -> u32 { return 0u; }', 'select'],
    ['an alias replacing a type', 'alias u32 = i32;', 'u32'],
    ['a struct replacing a type', 'struct vec3u { x: u32 }', 'vec3u'],
    ['a constant replacing a built-in', 'const bitcast = 1u;', 'bitcast'],
    ['a module variable', 'var<private> atomicLoad: u32;', 'atomicLoad'],
    ['an override', 'override atomicAdd: u32 = 1u;', 'atomicAdd'],
  ])('%s is refused (%s)', (_what, decl, name) => {
    const v = check(`${decl}\nfn kernel(gid: vec3u) { }`);
    expect(v.map((x) => [x.rule, x.subject, x.line])).toEqual([['shadow', name, 1]]);
  });

  it('locals may use those names, and module-scope names the prelude only uses locally are free', () => {
    expect(check(body('let select = 1u; let atomicOr = 2u; _ = select + atomicOr;'))).toEqual([]);
    expect(check('const mask = 0xffu;\nfn idx(i: u32) -> u32 { return i & mask; }\nfn kernel(gid: vec3u) { hmm_store_u32(idx(gid.x), 1u); }')).toEqual([]);
  });
});

describe('resources only in @group(0), at the bindings the dispatch provides', () => {
  it('the uniforms at @group(0) @binding(0), however written', () => {
    for (const attrs of [
      '@group(0) @binding(0)',
      '@group( 0 ) @binding( 0 )',
      '@group(0u) @binding(0i)',
      '@group(0x0) @binding(0,)',
      '@binding(0)\n@group(0)',
      '@ group\n(\n0\n) @/* c */binding/* c */(/* c */0/* c */)',
    ])
      expect(check(`${attrs} var<uniform> u: vec4u;\nfn kernel(gid: vec3u) { }`), attrs).toEqual([]);
  });

  it.each([
    ['@group(1)', '@group(1) @binding(0) var<storage, read_write> m: array<u32>;', '@group(1)'],
    ['@group(2)', '@group(2) @binding(0) var<storage, read_write> m: array<u32>;', '@group(2)'],
    ['@group(1) spaced and split over lines', '@ group (\n 1 )\n@binding(0) var<storage, read_write> m: array<u32>;', '@group(1)'],
    ['@group(1) behind comments', '@/* a */group/* b */(/* c */1/* d */) @binding(0) var<storage, read_write> m: array<u32>;', '@group(1)'],
    ['@group(1u)', '@group(1u) @binding(0) var<storage, read_write> m: array<u32>;', '@group(1u)'],
    ['@group(0x1)', '@group(0x1) @binding(0) var<storage, read_write> m: array<u32>;', '@group(0x1)'],
    ['a group from a constant', 'const G = 1u;\n@group(G) @binding(0) var<storage, read_write> m: array<u32>;', '@group(...)'],
    ['a group from an expression', '@group(0 + 1) @binding(0) var<storage, read_write> m: array<u32>;', '@group(...)'],
    ['@binding(1) in group 0', '@group(0) @binding(1) var<storage, read_write> m: array<u32>;', '@binding(1)'],
    ['@binding(7) in group 0', '@group(0) @binding(7) var<storage, read_write> m: array<u32>;', '@binding(7)'],
    ['a binding from a constant', 'const B = 0u;\n@group(0) @binding(B) var<uniform> u: vec4u;', '@binding(...)'],
  ])('%s is refused', (_what, decl, subject) => {
    const v = check(`${decl}\nfn kernel(gid: vec3u) { }`);
    expect(v.map((x) => x.subject)).toEqual([subject]);
    expect(v[0]!.rule).toBe('binding');
  });

  it('the message says where resources may go', () => {
    expect(check('@group(1) @binding(0) var<storage> m: array<u32>;\nfn kernel(gid: vec3u) { }')[0]!.reason).toContain(
      "a kernel's resources live in @group(0) only",
    );
    expect(check('@group(0) @binding(1) var<storage> m: array<u32>;\nfn kernel(gid: vec3u) { }')[0]!.reason).toContain('only @binding(0) (the uniforms)');
  });

  it('@group(1) in a comment is not a declaration', () => {
    expect(check('// @group(1) @binding(2) var<storage, read_write> m: array<u32>;\n/* @group(1) */\nfn kernel(gid: vec3u) { }')).toEqual([]);
  });

  it('the internal copy kernel may use @binding(1), and nothing more', () => {
    expect(check('@group(0) @binding(1) var<storage, read_write> io: array<u32>;\nfn kernel(gid: vec3u) { }', io)).toEqual([]);
    expect(subjects('@group(0) @binding(2) var<storage, read_write> io: array<u32>;\nfn kernel(gid: vec3u) { }', io)).toEqual(['@binding(2)']);
  });
});

describe('every kernel the project ships passes', () => {
  const wgsl = (dir: string): string[] =>
    readdirSync(new URL(`../../${dir}`, import.meta.url), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.wgsl'))
      .map((f) => `${dir}/${f}`);
  // plain.wgsl and *_plain.wgsl are the explicit-copy baselines: compiled without the prelude, never through createKernel
  const kernels = [...wgsl('shaders/bench'), ...wgsl('demos')].filter((f) => !/plain\.wgsl$/.test(f));

  it('finds the kernels', () => {
    expect(kernels.length).toBeGreaterThanOrEqual(12);
  });

  it.each(kernels)('%s', (file) => {
    const code = readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');
    expect(definesKernel(code)).toBe(true);
    expect(check(code)).toEqual([]);
  });

  it('shaders/mirror_copy.wgsl, with its io binding', async () => {
    expect(check(await shaderSource('mirrorCopy'), io)).toEqual([]);
    expect(subjects(await shaderSource('mirrorCopy'))).toEqual(['@binding(1)']); // not as a user kernel
  });

  it('the prelude itself would not pass as a kernel: the check is not vacuous', () => {
    expect(check(`${prelude}\nfn kernel(gid: vec3u) { }`).length).toBeGreaterThan(50);
  });
});
