// Kernel isolation (docs/contract.md "Kernels", docs/threat-model.md): the check that keeps a user
// kernel to the prelude's public surface. User WGSL is compiled into one module with the
// prelude (shaders/hmm.wgsl), so without this check a kernel could name the device memory
// buffers, the page tables or the frame-taking helpers and read or map any address space's
// frames. This module owns the rules and the WGSL tokenizer they run on; it is pure (no GPU,
// no prelude loading): src/device/kernel.ts calls it and turns what it finds into an HmmError.
//
// It works on WGSL tokens, following the spec's lexical rules (blankspace, line-ending and
// nested block comments, identifiers, numeric literals), never on raw text: a name inside a
// comment is not a use, and a comment or line break cannot hide one. WGSL has no string
// literals, so comments are the only text that is not code. Where the tokenizer could disagree
// with the compiler, it errs towards seeing more code: a line comment ends at every character
// the spec or a compiler may treat as a line break.
//
// The rules, each with the hole it closes:
// 1. Reserved namespace. Every identifier beginning `hmm_` or `HMM_` belongs to the library.
//    A kernel may only call the public functions (KERNEL_API), by name followed by `(`; any
//    other such identifier (a buffer, a table, a constant, an override, a helper taking a
//    frame) or any other use of a public name (a local or parameter shadowing it) is refused.
// 2. No shadowing of what the prelude resolves at module scope. WGSL module-scope
//    declarations are order-independent and may shadow built-ins, so a kernel's own
//    `fn atomicOr(p: ptr<storage, atomic<u32>, read_write>, v: u32)` would be called by the
//    prelude's translation with a pointer into the page table. A kernel may not declare at
//    module scope any name the prelude or the entry point refers to there (the built-in
//    functions and types they use); names the prelude only uses as its own locals stay free.
// 3. Resources only in @group(0), and only at the bindings the dispatch provides (binding 0,
//    the uniforms; binding 1 too for the internal copy kernel). A second declaration of a
//    prelude binding in @group(1) would alias the device memory under a name of the kernel's
//    choosing. The arguments must be plain integer literals, so no constant can disguise them.
// 4. The kernel's text is closed: an unterminated block comment would swallow the entry point
//    the library appends.

/** The prelude functions a kernel may call (shaders/hmm.wgsl, "the kernel-facing API"). */
export const KERNEL_API: readonly string[] = [
  'hmm_load_u32',
  'hmm_load_f32',
  'hmm_store_u32',
  'hmm_store_f32',
  'hmm_atomic_add_u32',
  'hmm_load_u8',
  'hmm_store_u8',
  'hmm_touch',
  'hmm_ok',
];
const API = new Set(KERNEL_API);
const RESERVED = /^(hmm_|HMM_)/;
/** The name a kernel must define: the entry point calls it, so declaring it is the point. */
const KERNEL_FN = 'kernel';

export interface Token {
  kind: 'ident' | 'number' | 'punct';
  text: string;
  /** 1-based line, counting '\n' as the compiler's messages and editors do. */
  line: number;
  /** 1-based column in UTF-16 code units. */
  column: number;
}

export interface Lexed {
  tokens: Token[];
  /** Where an unterminated block comment opens, if one does. */
  unterminatedComment?: { line: number; column: number };
}

// WGSL blankspace and line breaks (spec §"Blankspace and line breaks").
const BLANKSPACE = new Set([0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x85, 0x200e, 0x200f, 0x2028, 0x2029]);
const LINE_BREAK = new Set([0x0a, 0x0b, 0x0c, 0x0d, 0x85, 0x2028, 0x2029]);
// WGSL identifiers: XID_Start then XID_Continue, or `_` then at least one XID_Continue.
const IDENT = /[_\p{XID_Start}]\p{XID_Continue}+|\p{XID_Start}/uy;
// WGSL numeric literals, every form of the grammar; the longest match wins, as in the spec.
const NUMBER_FORMS = [
  /0[xX][0-9a-fA-F]*\.[0-9a-fA-F]+(?:[pP][+-]?[0-9]+[fh]?)?/y,
  /0[xX][0-9a-fA-F]+\.[0-9a-fA-F]*(?:[pP][+-]?[0-9]+[fh]?)?/y,
  /0[xX][0-9a-fA-F]+[pP][+-]?[0-9]+[fh]?/y,
  /0[xX][0-9a-fA-F]+[iu]?/y,
  // Equivalent mutant (not disabled: that would hide this line's killed ones): `[^0-9]*`: the lexer starts a number only at a digit or at '.' before a digit, where it matches nothing
  /[0-9]*\.[0-9]+(?:[eE][+-]?[0-9]+)?[fh]?/y,
  /[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?[fh]?/y,
  /[0-9]+[eE][+-]?[0-9]+[fh]?/y,
  /0[fh]/y,
  /[1-9][0-9]*[fh]/y,
  /0[iu]?/y,
  /[1-9][0-9]*[iu]?/y,
];
const INT_LITERAL = /^(?:0[xX]([0-9a-fA-F]+)|(0|[1-9][0-9]*))[iu]?$/;

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

function matchAt(re: RegExp, src: string, at: number): number {
  re.lastIndex = at;
  const m = re.exec(src);
  return m ? m[0].length : 0;
}

/** WGSL source as tokens; comments and blankspace are dropped. Operators come one character each. */
export function lexWgsl(src: string): Lexed {
  const tokens: Token[] = [];
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const n = src.length;
  // advances over [i, to), counting lines
  const skipTo = (to: number): void => {
    for (; i < to; i++) {
      if (src.charCodeAt(i) === 0x0a) {
        line++;
        lineStart = i + 1;
      }
    }
  };
  while (i < n) {
    const c = src.charCodeAt(i);
    if (BLANKSPACE.has(c)) {
      skipTo(i + 1);
      continue;
    }
    if (c === 0x2f && src.charCodeAt(i + 1) === 0x2f) {
      // line comment: to the next line break of any kind
      let j = i + 2;
      // Stryker disable next-line EqualityOperator: `j <= n`: charCodeAt(n) is NaN, no line break, and the scan ends one past the end to the same effect
      while (j < n && !LINE_BREAK.has(src.charCodeAt(j))) j++;
      skipTo(j);
      continue;
    }
    if (c === 0x2f && src.charCodeAt(i + 1) === 0x2a) {
      // block comment: nests, so it ends where its own depth returns to zero
      const open = { line, column: i - lineStart + 1 };
      let depth = 1;
      let j = i + 2;
      // Equivalent mutant (not disabled: that would hide this line's killed ones): `j <= n`: at n nothing starts with '/*' or '*/', and depth > 0 reports the same open comment
      while (j < n && depth > 0) {
        if (src.startsWith('/*', j)) {
          depth++;
          j += 2;
        } else if (src.startsWith('*/', j)) {
          depth--;
          j += 2;
        } else j++;
      }
      skipTo(j);
      if (depth > 0) return { tokens, unterminatedComment: open };
      continue;
    }
    const column = i - lineStart + 1;
    if (isDigit(c) || (c === 0x2e && isDigit(src.charCodeAt(i + 1)))) {
      const len = Math.max(...NUMBER_FORMS.map((re) => matchAt(re, src, i)));
      tokens.push({ kind: 'number', text: src.slice(i, i + len), line, column });
      skipTo(i + len);
      continue;
    }
    const id = matchAt(IDENT, src, i);
    if (id > 0) {
      tokens.push({ kind: 'ident', text: src.slice(i, i + id), line, column });
      skipTo(i + id);
      continue;
    }
    const cp = src.codePointAt(i)!;
    const len = cp > 0xffff ? 2 : 1;
    tokens.push({ kind: 'punct', text: src.slice(i, i + len), line, column });
    skipTo(i + len);
  }
  return { tokens };
}

/** The value of a plain integer literal token (`0`, `1u`, `0x1i`), or undefined for anything else. */
function intLiteral(t: Token | undefined): number | undefined {
  // Equivalent mutant (not disabled: that would hide this line's killed ones): the test as false for a token; an identifier or operator never matches INT_LITERAL, which starts with a digit
  if (t?.kind !== 'number') return undefined;
  const m = INT_LITERAL.exec(t.text);
  if (!m) return undefined;
  return m[1] !== undefined ? parseInt(m[1], 16) : Number(m[2]);
}

const DECLARATION = new Set(['fn', 'var', 'const', 'override', 'alias', 'struct']);
const LOCAL_DECLARATION = new Set(['let', 'var', 'const']);

/**
 * Indexes of the tokens that name a module-scope declaration (`fn f`, `var<...> v`, `const c`,
 * `override o`, `alias a`, `struct s`): brace depth 0, after the keyword and any template list.
 */
function moduleScopeNames(tokens: readonly Token[]): number[] {
  const out: number[] = [];
  let depth = 0;
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k]!;
    if (t.text === '{') depth++;
    else if (t.text === '}') depth = Math.max(0, depth - 1);
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the kind test as true; only identifiers spell a keyword
    else if (depth === 0 && t.kind === 'ident' && DECLARATION.has(t.text)) {
      let j = k + 1;
      // Equivalent mutant (not disabled: that would hide this line's killed ones): the `var` test as true; only `var` takes a template list (the compiler refuses `const<`)
      if (t.text === 'var' && tokens[j]?.text === '<') {
        for (let open = 0; j < tokens.length; j++) {
          if (tokens[j]!.text === '<') open++;
          // Equivalent mutant (not disabled: that would hide this line's killed ones): `--open === 0` as true; var's template (address space, access mode) never nests
          else if (tokens[j]!.text === '>' && --open === 0) break;
        }
        j++;
      }
      if (tokens[j]?.kind === 'ident') out.push(j);
    }
  }
  return out;
}

/**
 * The names WGSL source resolves at module scope: every identifier it uses that is not one of
 * its own function parameters or locals in scope at that point, not a member after `.`, not
 * an attribute name after `@`, and not the name a module-scope declaration introduces. For the
 * prelude and entry point these are the built-in functions and types they call and name, plus
 * their own hmm_/HMM_ declarations; a kernel's module-scope declaration of any of them would
 * take their place (rule 2).
 */
export function moduleScopeReferences(src: string): Set<string> {
  const { tokens } = lexWgsl(src);
  const declared = new Set(moduleScopeNames(tokens));
  const refs = new Set<string>();
  // Scopes by brace depth: scopes[d] holds names declared in the block opened at depth d.
  // Stryker disable next-line ArrayDeclaration: `[]`; nothing is declared at depth 0 here (locals need depth > 0), and some() skips the hole
  const scopes: Set<string>[] = [new Set()];
  let params = new Set<string>(); // the parameters of the fn whose body opens next
  let pending: { name: string; depth: number } | undefined; // a local, in scope after its `;`
  let depth = 0;
  const inScope = (name: string): boolean => scopes.some((s) => s.has(name));
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k]!;
    const prev = tokens[k - 1];
    if (t.text === '{') {
      depth++;
      // Stryker disable next-line ConditionalExpression: `depth === 1` as true; `params` is empty after any `{` but a function body's
      scopes[depth] = depth === 1 ? params : new Set();
      params = new Set();
    } else if (t.text === '}') {
      scopes.length = depth;
      depth = Math.max(0, depth - 1);
    } else if (t.text === ';' && pending && pending.depth === depth) {
      // (Equivalent mutant: `pending.depth === depth` as true; no braces come between a local's name and its `;` in WGSL)
      scopes[depth]!.add(pending.name);
      pending = undefined;
    } else if (t.kind === 'ident') {
      if (declared.has(k)) {
        // Stryker disable next-line OptionalChaining: `prev.text`; a declared name always follows its keyword, so prev exists
        if (prev?.text === 'fn') {
          // its parameters: `name :` pairs up to the closing parenthesis
          for (let j = k + 2, parens = 1; j < tokens.length && parens > 0; j++) {
            const u = tokens[j]!;
            if (u.text === '(') parens++;
            else if (u.text === ')') parens--;
            // Equivalent mutants: `parens === 1`, the kind test and the (, ',' or ')' test, each as true, and `tokens[j - 1].text` (j - 1 > k); in a parameter list only a parameter's name is followed by `:`
            else if (
              parens === 1 &&
              u.kind === 'ident' &&
              tokens[j + 1]?.text === ':' &&
              (tokens[j - 1]?.text === '(' || tokens[j - 1]?.text === ',' || tokens[j - 1]?.text === ')')
            )
              params.add(u.text);
          }
        }
        continue;
      }
      // Equivalent mutant (not disabled: that would hide this line's killed ones): `depth > 0` as true, `>= 0`, or `||`; at module scope `var` and `const` names are declared ones (skipped above) and `let` is refused by the compiler
      if (depth > 0 && prev && LOCAL_DECLARATION.has(prev.text)) {
        pending = { name: t.text, depth };
        continue;
      }
      if (prev?.text === '.' || prev?.text === '@') continue;
      // (Equivalent mutant: `depth === 0` as true; inside a body `params` is empty, a function is declared only at module scope)
      if (params.has(t.text) && depth === 0) continue; // a parameter's own declaration
      if (!inScope(t.text)) refs.add(t.text);
    }
  }
  return refs;
}

export type KernelRule = 'reserved' | 'shadow' | 'binding' | 'comment';

export interface KernelViolation {
  rule: KernelRule;
  /** The identifier or attribute the violation is about, as written. */
  subject: string;
  line: number;
  column: number;
  /** Why it is refused, in words. */
  reason: string;
}

export interface KernelCheckOptions {
  /** Names the prelude and the entry point resolve at module scope (moduleScopeReferences). */
  preludeReferences: ReadonlySet<string>;
  /** The @binding numbers the dispatch provides in @group(0). */
  bindings: readonly number[];
}

const apiList = (): string => KERNEL_API.join(', ');

/** Everything in a kernel's source that the isolation rules refuse (empty when it may be compiled). */
export function checkKernelSource(code: string, opts: KernelCheckOptions): KernelViolation[] {
  const { tokens, unterminatedComment } = lexWgsl(code);
  const out: KernelViolation[] = [];
  if (unterminatedComment) {
    out.push({
      rule: 'comment',
      subject: '/*',
      ...unterminatedComment,
      reason: "'/*' opens a block comment that never closes (block comments nest: each '/*' needs its own '*/')",
    });
  }
  const declaredAt = new Set(moduleScopeNames(tokens));
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k]!;
    const at = { line: t.line, column: t.column };
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the kind test as true; no number or operator begins hmm_
    if (t.kind === 'ident' && RESERVED.test(t.text)) {
      if (!API.has(t.text)) {
        out.push({
          rule: 'reserved',
          subject: t.text,
          ...at,
          reason: `'${t.text}' is internal to the prelude: names beginning hmm_ or HMM_ are reserved, and a kernel may use only the prelude's public functions (${apiList()})`,
        });
      } else if (tokens[k + 1]?.text !== '(' || tokens[k - 1]?.text === 'fn') {
        out.push({
          rule: 'reserved',
          subject: t.text,
          ...at,
          reason: `'${t.text}' is a prelude function: a kernel may call it, '${t.text}(...)', but not declare or shadow it (names beginning hmm_ or HMM_ are reserved)`,
        });
      }
      continue;
    }
    // Equivalent mutant (not disabled: that would hide this line's killed ones): the kind test as true; declaredAt holds identifiers only
    if (t.kind === 'ident' && declaredAt.has(k) && t.text !== KERNEL_FN && opts.preludeReferences.has(t.text)) {
      out.push({
        rule: 'shadow',
        subject: t.text,
        ...at,
        reason: `a kernel may not declare '${t.text}' at module scope: the prelude uses that name, and a module-scope declaration would replace it there too (use another name)`,
      });
      continue;
    }
    if (t.text === '@' && (tokens[k + 1]?.text === 'group' || tokens[k + 1]?.text === 'binding')) {
      const attr = tokens[k + 1]!.text;
      const arg = tokens[k + 3];
      const value = tokens[k + 2]?.text === '(' ? intLiteral(arg) : undefined;
      const close = tokens[k + 4]?.text === ',' ? tokens[k + 5] : tokens[k + 4];
      const written = value === undefined || close?.text !== ')' ? `@${attr}(...)` : `@${attr}(${arg!.text})`;
      let reason: string | undefined;
      if (value === undefined || close?.text !== ')') {
        reason = `${written}: a kernel writes @${attr} with one plain integer literal, as @${attr}(0), so the check can see where its resources go`;
      } else if (attr === 'group' && value !== 0) {
        reason = `${written}: a kernel's resources live in @group(0) only; the other groups belong to the prelude`;
      } else if (attr === 'binding' && !opts.bindings.includes(value)) {
        const allowed = opts.bindings.map((b) => `@binding(${b})`).join(' and ');
        reason = `${written}: in @group(0) the dispatch provides only ${allowed}${opts.bindings.length === 1 ? ' (the uniforms)' : ''}`;
      }
      if (reason) out.push({ rule: 'binding', subject: written, ...at, reason });
    }
  }
  return out;
}

/** Does the source define `fn kernel(` at module scope (comments do not count)? */
export function definesKernel(code: string): boolean {
  const { tokens } = lexWgsl(code);
  return moduleScopeNames(tokens).some((j) => tokens[j]!.text === KERNEL_FN && tokens[j - 1]!.text === 'fn' && tokens[j + 1]?.text === '(');
}

/** Does the source use any of these identifiers (as tokens: comments do not count)? */
export function usesIdentifier(code: string, test: (name: string) => boolean): boolean {
  return lexWgsl(code).tokens.some((t) => t.kind === 'ident' && test(t.text));
}
