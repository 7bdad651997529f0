// Plain-buffer prelude for the bench: the same kernel source as the HMM version runs against
// one ordinary storage buffer, with no page table in between. It is what the "explicit copies"
// strategy launches, and the baseline of the translation tax (goal G10). The buffer holds a
// workload's whole region at the same offsets as in the virtual address space, so a VA
// (pointers included) becomes an index by subtracting the region's base address.

@group(1) @binding(0) var<storage, read_write> plain_mem: array<u32>;
@group(1) @binding(1) var<uniform> plain_base: vec4u; // x: the VA byte 0 of plain_mem stands for

fn plain_index(va: u32) -> u32 {
  return (va - plain_base.x) >> 2u;
}

// Nothing ever misses in a plain buffer.
fn hmm_ok() -> bool {
  return true;
}

fn hmm_touch(va: u32, write: bool) -> bool {
  return true;
}

fn hmm_load_u32(va: u32) -> u32 {
  return plain_mem[plain_index(va)];
}

fn hmm_store_u32(va: u32, v: u32) {
  plain_mem[plain_index(va)] = v;
}
