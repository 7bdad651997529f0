// The prelude's memory variants (shaders/hmm.wgsl, design-notes §7): which kernels get atomic
// device memory, and what each variant keeps of the file.
import { describe, expect, it } from 'vitest';
import { needsAtomicMemory, preludeVariant } from '../../src/device/kernel.ts';
import { shaderSource } from '../../src/device/shaders.ts';

describe('prelude variants', () => {
  it('kernels that use atomics or byte stores need atomic memory; the rest do not', () => {
    expect(needsAtomicMemory('fn kernel(gid: vec3u) { hmm_store_u32(4u, hmm_load_u32(8u)); }')).toBe(false);
    expect(needsAtomicMemory('fn kernel(gid: vec3u) { _ = hmm_load_u8(8u); hmm_store_f32(4u, 1.0); }')).toBe(false);
    expect(needsAtomicMemory('fn kernel(gid: vec3u) { _ = hmm_atomic_add_u32(4u, 1u); }')).toBe(true);
    expect(needsAtomicMemory('fn kernel(gid: vec3u) { hmm_store_u8(4u, 1u); }')).toBe(true);
    // read from tokens: a comment does not count (a kernel naming the memory bindings is refused before this is asked)
    expect(needsAtomicMemory('// calls hmm_atomic_add_u32 later\nfn kernel(gid: vec3u) {}')).toBe(false);
    expect(needsAtomicMemory('/* hmm_store_u8 */ fn kernel(gid: vec3u) {}')).toBe(false);
    expect(needsAtomicMemory('fn kernel(gid: vec3u) { let my_hmm_store_u8x = 1u; }')).toBe(false);
  });

  it('each variant keeps one branch, binds memory as it says, and keeps the line numbers of hmm.wgsl', async () => {
    const src = await shaderSource('prelude');
    const atomic = preludeVariant(src, true);
    const plain = preludeVariant(src, false);
    const lines = src.split('\n').length;
    expect(atomic.split('\n').length).toBe(lines);
    expect(plain.split('\n').length).toBe(lines);
    expect(atomic).toMatch(/hmm_mem0: array<atomic<u32>>/);
    expect(atomic).toMatch(/fn hmm_atomic_add_u32/);
    expect(atomic).toMatch(/fn hmm_store_u8/);
    expect(plain).toMatch(/hmm_mem0: array<u32>/);
    expect(plain).not.toMatch(/hmm_mem\d: array<atomic/);
    expect(plain).not.toMatch(/atomic\w*\(&hmm_mem/);
    expect(plain).not.toMatch(/fn hmm_atomic_add_u32|fn hmm_store_u8/);
    for (const v of [atomic, plain]) {
      expect(v).not.toMatch(/^\s*\/\/#/m);
      expect(v).toMatch(/fn hmm_translate/); // the common part stays in both
      expect(v).toMatch(/fn hmm_load_u32/);
    }
    // a line that survives is where it was in the file
    const at = src.split('\n').findIndex((l) => l.includes('fn hmm_translate'));
    expect(plain.split('\n')[at]).toContain('fn hmm_translate');
  });

  it('rejects a malformed variant block', () => {
    expect(() => preludeVariant('//#if ATOMIC_MEMORY\na\n//#else\nb\n', true)).toThrow(/unterminated/);
    expect(() => preludeVariant('//#else\n', true)).toThrow(/unexpected/);
    expect(() => preludeVariant('//#if ATOMIC_MEMORY\n//#if ATOMIC_MEMORY\n', true)).toThrow(/unexpected/);
  });
});
