// Random pointer chase: every invocation walks one linked list the CPU built ({ value, next }
// nodes at random places in a table, `next` a virtual address, 0 at the end) and stores the sum
// of its values. Each step depends on the last load, so a fault-driven walk advances one node
// per fault round unless a prefetch policy brings the nodes ahead of it; the pages are random,
// so neither density nor stride can tell which. The placement policy decides whether a page the
// walk faults on moves to the device or is read through a copy.

struct Args {
  heads: u32,  // VA of the list heads (one VA per list)
  out: u32,    // VA of the sums (one word per list)
  chains: u32, // lists
  steps: u32,  // nodes per list
}

@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let c = gid.x;
  if (c >= u.chains) {
    return;
  }
  var p = hmm_load_u32(u.heads + c * 4u);
  var sum = 0u;
  for (var s = 0u; s < u.steps; s++) {
    if (p == 0u || !hmm_ok()) {
      break;
    }
    sum += hmm_load_u32(p);
    p = hmm_load_u32(p + 4u);
  }
  hmm_store_u32(u.out + c * 4u, sum);
}
