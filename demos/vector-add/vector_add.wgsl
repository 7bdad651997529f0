// c[i] = a[i] + b[i], through virtual addresses.
//
// The three arrays were mmap'ed and written by the CPU. The kernel gets only their
// addresses: hmm_load_f32 / hmm_store_f32 (the prelude, shaders/hmm.wgsl) translate each
// address through this device's page table. The dispatch is 'validated': the host faulted
// the declared ranges in (migrating a, b and c to the device) before it launched us.

struct Args {
  a: u32, // VA of a[0]
  b: u32, // VA of b[0]
  c: u32, // VA of c[0]
  n: u32, // number of elements
}

@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x;
  if (i >= u.n) {
    return;
  }
  let offset = i * 4u; // 4 bytes per f32
  let sum = hmm_load_f32(u.a + offset) + hmm_load_f32(u.b + offset);
  hmm_store_f32(u.c + offset, sum);
}
