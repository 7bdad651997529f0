// Tree path sums, one invocation per node: follow the parent pointers up to the root, adding
// the values on the way, and store the node's depth and its root-to-node sum in the node.
//
// The CPU worker built a random binary tree: nodes scattered over the pool's pages, linked by
// virtual addresses. Node layout (bytes): value 0, parent 4, left 8, right 12, depth 16,
// path sum 20. The CPU checks the answer by walking down the child pointers instead.
//
// Dispatched in replayable mode: a page the GPU does not hold faults; the invocation stops and
// runs again once the host has migrated the page. It touches the page it writes first, and
// stores only at the end, while hmm_ok(): a rerun is harmless.

struct Args {
  index: u32, // VA of the node table: node i's address is at index + 4 i
  n: u32,     // nodes
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x;
  if (i >= u.n) {
    return;
  }
  let node = hmm_load_u32(u.index + i * 4u);
  if (!hmm_ok()) {
    return;
  }
  hmm_touch(node + 16u, true);
  var depth = 0u;
  var sum = 0u;
  var p = node;
  // At most n steps: a broken tree (a cycle) ends the walk instead of hanging the GPU.
  for (var steps = 0u; steps < u.n && p != 0u; steps++) {
    sum += hmm_load_u32(p);
    p = hmm_load_u32(p + 4u);
    if (!hmm_ok()) {
      return; // a page on the way up is missing: we run again once it is here
    }
    if (p != 0u) {
      depth += 1u;
    }
  }
  hmm_store_u32(node + 16u, depth);
  hmm_store_u32(node + 20u, sum);
}
