// c[i] = a[i] + b[i], through virtual addresses: the kernel of the two HMM strategies.
//
// The three arrays were mmap'ed and a, b written by the CPU. The kernel gets only their
// addresses: hmm_load_f32 / hmm_store_f32 (the prelude, shaders/hmm.wgsl) translate each
// address through this device's page table. The same kernel runs both ways:
//
// - validated: the host faulted the declared ranges in (migrating a, b and c to the device)
//   before it launched us; every access hits.
// - replayable (fault-driven): nothing was moved first. An access to a page the device does
//   not hold records a GPU fault, and the invocation stops storing. The host services the
//   whole batch of faults and relaunches the invocations that did not finish. So the kernel
//   touches all three pages first (one fault round gathers a, b and c together) and stores
//   only while hmm_ok(): redoing an invocation is then harmless.

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
  hmm_touch(u.a + offset, false);
  hmm_touch(u.b + offset, false);
  hmm_touch(u.c + offset, true);
  if (!hmm_ok()) {
    return; // a page is missing: its fault is queued, and we run again once it is here
  }
  let sum = hmm_load_f32(u.a + offset) + hmm_load_f32(u.b + offset);
  hmm_store_f32(u.c + offset, sum);
}
