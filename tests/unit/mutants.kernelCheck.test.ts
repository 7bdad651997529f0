// The WGSL token checker (src/device/kernelCheck.ts) at its edges, without a GPU: every numeric
// literal form of the WGSL grammar read as one token, operators and comments told apart, source
// that ends in the middle of a construct (a kernel is user input: the check must answer, not
// throw), the scoping rules moduleScopeReferences documents, and the exact words of each
// violation. Written while mutation testing (docs/testing.md) found these unchecked. Nothing
// here runs at module level: every call is inside a test.
import { describe, expect, it } from 'vitest';
import {
  checkKernelSource,
  definesKernel,
  KERNEL_API,
  lexWgsl,
  moduleScopeReferences,
  usesIdentifier,
  type KernelCheckOptions,
} from '../../src/device/kernelCheck.ts';

const opts = (bindings: number[] = [0], refs: string[] = ['atomicLoad', 'select', 'u32']): KernelCheckOptions => ({
  preludeReferences: new Set(refs),
  bindings,
});
const check = (code: string, o = opts()) => checkKernelSource(code, o);
const subjects = (code: string, o = opts()): string[] => check(code, o).map((v) => v.subject);
const texts = (src: string): string[] => lexWgsl(src).tokens.map((t) => `${t.kind[0]}:${t.text}`);
const KERNEL = '\nfn kernel(gid: vec3u) { }';

describe('numeric literals: every form of the WGSL grammar is one token', () => {
  const literals = [
    // hexadecimal floats: no integer part, no fraction, exponent only; signs, suffixes, long digit runs
    ['0x.8', '0x.8Ap4', '0x.8p+4f', '0X.8P-12h', '0xA.B', '0xAB.CDp12', '0x1.8p+10h', '0x.fE'],
    ['0x1.', '0xAB.', '0x1.p4', '0X1F.p-10f', '0xAB.p+12h'],
    ['0x1p4', '0x1P+12f', '0xABp-10h', '0x1p12'],
    // hexadecimal integers
    ['0x1F', '0xABCu', '0x1i', '0X0'],
    // decimal floats: no integer part, no fraction, exponent only
    ['.5', '.25e10', '.5e+3f', '.5E-10h', '.125'],
    ['1.', '12.5', '1.e-3h', '12.e+10f', '1.5E10', '10.25', '1.e12'],
    ['1e3', '12E+10f', '1e-10h', '99e12'],
    ['0f', '0h', '12f', '1h', '9f'],
    // decimal integers
    ['0', '0u', '0i', '9', '12', '123u', '10i', '90'],
  ].flat();

  it.each(literals)('%s', (lit) => {
    expect(texts(`${lit} x`)).toEqual([`n:${lit}`, 'i:x']);
    expect(texts(`(${lit})`)).toEqual(['p:(', `n:${lit}`, 'p:)']);
  });

  it('a literal stops where its form ends: what follows is the next token', () => {
    expect(texts('1.5.5')).toEqual(['n:1.5', 'n:.5']);
    expect(texts('0x1p4p4')).toEqual(['n:0x1p4', 'i:p4']);
    expect(texts('1e3e3')).toEqual(['n:1e3', 'i:e3']);
    expect(texts('1e+x')).toEqual(['n:1', 'i:e', 'p:+', 'i:x']);
    expect(texts('12fu')).toEqual(['n:12f', 'i:u']);
    expect(texts('0x.p4')).toEqual(['n:0', 'i:x', 'p:.', 'i:p4']);
    expect(texts('1.e')).toEqual(['n:1.', 'i:e']);
    // a hexadecimal float needs hex digits (or none) between 0x and its point
    expect(texts('0xg.8')).toEqual(['n:0', 'i:xg', 'n:.8']);
  });
});

describe('operators, comments and unusual characters', () => {
  it('division and multiplication are operators, not comments', () => {
    expect(texts('a / b * c')).toEqual(['i:a', 'p:/', 'i:b', 'p:*', 'i:c']);
    expect(texts('a*b/c')).toEqual(['i:a', 'p:*', 'i:b', 'p:/', 'i:c']);
  });

  it('a comment leaves no token behind, not even its slashes', () => {
    expect(texts('a // b\nc')).toEqual(['i:a', 'i:c']);
    expect(texts('a /* b */ c')).toEqual(['i:a', 'i:c']);
  });

  it('a line comment may end the source, without a line break', () => {
    expect(texts('a // the end')).toEqual(['i:a']);
    expect(lexWgsl('a /* never closed').unterminatedComment).toEqual({ line: 1, column: 3 });
  });

  it('a character outside the BMP is one token; U+FFFF is one code unit', () => {
    expect(texts('a 😀 b')).toEqual(['i:a', 'p:😀', 'i:b']);
    expect(texts('\uffffa')).toEqual(['p:\uffff', 'i:a']);
  });

  it('9 is a digit', () => {
    expect(texts('9 .9 x9')).toEqual(['n:9', 'n:.9', 'i:x9']);
  });
});

describe('source that ends in the middle of a construct is answered, not thrown at', () => {
  it.each([
    ['a public name as the last token', '_ = hmm_ok', ['hmm_ok']],
    ['an attribute sign as the last token', '@', []],
    ['@group as the last token', '@group', ['@group(...)']],
    ['@group( as the last token', '@group(', ['@group(...)']],
    ['@group(0 as the last token', '@group(0', ['@group(...)']],
    ['@binding(1, as the last token', '@binding(1,', ['@binding(...)']],
    ['var as the last token', 'var', []],
    ['an unfinished template', 'var<private', []],
    ['fn as the last token', 'fn', []],
  ])('%s', (_what, tail, want) => {
    expect(subjects(`fn kernel(gid: vec3u) { }\n${tail}`)).toEqual(want);
  });

  it('definesKernel on `fn kernel` at the end of the source, or without its parameters', () => {
    expect(definesKernel('fn kernel')).toBe(false);
    expect(definesKernel('fn kernel;')).toBe(false);
  });

  it('a declaration keyword as the last token, or followed by no name', () => {
    for (const src of ['fn', 'var', 'const c = 1u; struct', 'fn (', 'var<private>']) {
      expect(definesKernel(src), src).toBe(false);
      expect(check(src), src).toEqual([]);
    }
  });

  it('a public function called as the very first token is still checked, not thrown at', () => {
    expect(check('hmm_ok()')).toEqual([]);
    expect(subjects('hmm_ok')).toEqual(['hmm_ok']);
  });

  it('an unfinished parameter list ends with the source', () => {
    expect([...moduleScopeReferences('fn f(a: u32, b')]).toContain('u32');
    expect(() => moduleScopeReferences('fn f(a')).not.toThrow();
  });
});

describe('what a kernel may declare at module scope', () => {
  it('a var without a template (a sampler, a texture) is a declaration too', () => {
    expect(subjects(`@group(0) @binding(0) var select: sampler;${KERNEL}`)).toEqual(['select']);
    expect(subjects(`var<private> select: u32;${KERNEL}`)).toEqual(['select']);
    expect(subjects(`var<storage, read_write> atomicLoad: array<u32>;${KERNEL}`)).toEqual(['atomicLoad']);
  });

  it('declaring kernel itself is the point; naming a prelude reference inside a function is fine', () => {
    expect(check(`fn kernel(gid: vec3u) { let select = 1u; _ = select; }`, opts([0], ['select', 'kernel']))).toEqual([]);
  });

  it('a local may be named group or binding', () => {
    expect(check(`fn kernel(gid: vec3u) { let group = 1u; let binding = group; _ = binding; }`)).toEqual([]);
  });

  it('attributes other than @group and @binding are not resource placements', () => {
    expect(check(`@must_use fn f() -> u32 { return 1u; }\nstruct S { @align(16) a: vec4u }${KERNEL}`)).toEqual([]);
  });
});

describe('violations in words', () => {
  it('an internal name: the reason lists the public functions', () => {
    const [v] = check(`fn kernel(gid: vec3u) { _ = hmm_mem0[0]; }`);
    expect(v!.reason).toBe(
      `'hmm_mem0' is internal to the prelude: names beginning hmm_ or HMM_ are reserved, and a kernel may use only the prelude's public functions (${KERNEL_API.join(', ')})`,
    );
  });

  it('a public name used but not called', () => {
    const [v] = check(`fn kernel(gid: vec3u) { let f = hmm_ok; }`);
    expect(v).toEqual({
      rule: 'reserved',
      subject: 'hmm_ok',
      line: 1,
      column: 33,
      reason: "'hmm_ok' is a prelude function: a kernel may call it, 'hmm_ok(...)', but not declare or shadow it (names beginning hmm_ or HMM_ are reserved)",
    });
    expect(check(`fn hmm_ok() -> bool { return true; }${KERNEL}`)[0]).toMatchObject({ rule: 'reserved', subject: 'hmm_ok', column: 4 });
  });

  it('a module-scope declaration of a prelude reference', () => {
    const [v] = check(`const select = 1u;${KERNEL}`);
    expect(v).toEqual({
      rule: 'shadow',
      subject: 'select',
      line: 1,
      column: 7,
      reason:
        "a kernel may not declare 'select' at module scope: the prelude uses that name, and a module-scope declaration would replace it there too (use another name)",
    });
  });

  it('an unterminated block comment', () => {
    expect(check(`fn kernel(gid: vec3u) { }\n  /* open`)).toEqual([
      {
        rule: 'comment',
        subject: '/*',
        line: 2,
        column: 3,
        reason: "'/*' opens a block comment that never closes (block comments nest: each '/*' needs its own '*/')",
      },
    ]);
  });

  it('a group or binding that is not one plain integer literal', () => {
    for (const [attrs, subject] of [
      ['@group(G) @binding(0)', '@group(...)'],
      ['@group(0) @binding(1.0)', '@binding(...)'],
      ['@group(0f) @binding(0)', '@group(...)'],
      ['@group[0) @binding(0)', '@group(...)'],
      ['@group(0) @binding(0 1)', '@binding(...)'],
    ]) {
      const v = check(`${attrs} var<uniform> u: vec4u;${KERNEL}`);
      expect(
        v.map((x) => x.subject),
        attrs,
      ).toEqual([subject]);
      const attr = subject!.slice(1, subject!.indexOf('('));
      expect(v[0]!.reason).toBe(
        `${subject}: a kernel writes @${attr} with one plain integer literal, as @${attr}(0), so the check can see where its resources go`,
      );
    }
  });

  it('integer literals are read by their value: hex, and numbers of more than one digit', () => {
    expect(check(`@group(0x00) @binding(0x0) var<uniform> u: vec4u;${KERNEL}`)).toEqual([]);
    expect(subjects(`@group(0) @binding(10) var<uniform> u: vec4u;${KERNEL}`)).toEqual(['@binding(10)']);
    expect(subjects(`@group(0) @binding(0x10) var<uniform> u: vec4u;${KERNEL}`)).toEqual(['@binding(0x10)']);
  });

  it('a binding the dispatch does not provide: the reason lists the ones it does', () => {
    const one = check(`@group(0) @binding(3) var<uniform> u: vec4u;${KERNEL}`, opts([0]));
    expect(one[0]!.reason).toBe('@binding(3): in @group(0) the dispatch provides only @binding(0) (the uniforms)');
    const two = check(`@group(0) @binding(3) var<uniform> u: vec4u;${KERNEL}`, opts([0, 1]));
    expect(two[0]!.reason).toBe('@binding(3): in @group(0) the dispatch provides only @binding(0) and @binding(1)');
  });

  it('@group(0) is allowed whatever bindings the dispatch provides', () => {
    expect(check(`@group(0) @binding(1) var<storage, read_write> io: array<u32>;${KERNEL}`, opts([1]))).toEqual([]);
  });
});

describe('definesKernel and usesIdentifier', () => {
  it('definesKernel wants a function named kernel, not another declaration of that name', () => {
    expect(definesKernel('const kernel = 1u;')).toBe(false);
    expect(definesKernel('struct kernel { a: u32 }')).toBe(false);
    expect(definesKernel('fn kernel(gid: vec3u) { }')).toBe(true);
    // a name followed by `(` that another keyword declares is no function (the compiler refuses it)
    expect(definesKernel('const kernel(1u);')).toBe(false);
    expect(definesKernel('alias kernel(u32);')).toBe(false);
  });

  it('usesIdentifier looks at identifiers only, not numbers or operators', () => {
    expect(usesIdentifier('x = 1 + y;', (n) => n === '1' || n === '+' || n === ';')).toBe(false);
    expect(usesIdentifier('x = 1 + y;', (n) => n === 'y')).toBe(true);
  });
});

describe('moduleScopeReferences: the names WGSL source resolves at module scope', () => {
  // (keywords come out as references too: harmless, nobody can declare them, so left out here)
  const KEYWORDS = new Set(['fn', 'let', 'var', 'const', 'return', 'struct', 'alias', 'override']);
  const refs = (src: string): string[] => [...moduleScopeReferences(src)].filter((n) => !KEYWORDS.has(n)).sort();

  it("a function's parameters are not references in its body, and only there", () => {
    const src = 'fn f(a: u32, b: vec3u) -> u32 { return a + b.x + c; }\nfn g(d: u32) { _ = a + d; }';
    expect(refs(src)).toEqual(['a', 'c', 'u32', 'vec3u']);
  });

  it('a parameter after an attribute is a parameter', () => {
    expect(refs('fn f(@builtin(global_invocation_id) gid: vec3u, @location(0) v: u32) { _ = gid + v; }')).toEqual(['global_invocation_id', 'u32', 'vec3u']);
  });

  it('a parameter of a pointer or array type is a parameter', () => {
    expect(refs('fn f(p: ptr<function, array<u32, 4>>, n: u32) { _ = p; _ = n; }')).toEqual(['array', 'function', 'ptr', 'u32']);
  });

  it('a local is in scope from the end of its declaration to the end of its block', () => {
    expect(refs('fn f() { let x = x; let y = 1u; { var z: u32 = y; const k = 2u; _ = k + z; } _ = z + y; }')).toEqual(['u32', 'x', 'z']);
  });

  it('a local declared after an inner block closes is a local (the block nesting is counted back down, not reset)', () => {
    expect(refs('fn f() { { } let x = 1u; _ = x; }')).toEqual([]);
    expect(refs('fn f() { { { } } var y: u32 = 2u; _ = y; }')).toEqual(['u32']);
  });

  it("a function's parameters end at its closing parenthesis: the next function's are not its own", () => {
    expect(refs('fn f(a: u32) { _ = d; }\nfn g(x: u32, d: u32) { _ = x + d; }')).toEqual(['d', 'u32']);
  });

  it('only a function has parameters: names with colons later in the source do not hide references', () => {
    expect(refs('const c = 1u;\nfn f() { _ = b; }\nstruct S { a: u32, b: u32 }')).toContain('b');
  });

  it('a local of one function is not in scope in the next', () => {
    expect(refs('fn f() { let x = 1u; }\nfn g() { _ = x; }')).toEqual(['x']);
  });

  it('members after `.` and attribute names after `@` are not references; their arguments are', () => {
    expect(refs('@compute @workgroup_size(WG) fn main(@builtin(local_invocation_id) l: vec3u) { _ = l.zz; }')).toEqual(['WG', 'local_invocation_id', 'vec3u']);
  });

  it("a module-scope declaration's own name is not a reference; a use of it is", () => {
    expect(refs('const limit = 4u;')).toEqual([]);
    expect(refs('const limit = 4u;\nfn f() -> u32 { return limit; }')).toEqual(['limit', 'u32']);
  });

  it('only identifiers are references, never numbers or operators', () => {
    for (const name of moduleScopeReferences('fn f(a: u32) -> u32 { return (a + 1u) * 2u; }')) expect(name).toMatch(/^[_\p{XID_Start}][\p{XID_Continue}]*$/u);
  });
});
