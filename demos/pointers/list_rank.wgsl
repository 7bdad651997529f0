// List ranking by pointer jumping (Wyllie's algorithm), one invocation per node.
//
// The CPU worker built the list: nodes scattered over the pool's pages, each pointing at the
// next by virtual address. A node's rank is the number of nodes after it. Every pass, each
// node adds the rank of the node it points at and jumps twice as far, so log2(n) passes rank
// the whole list. Node layout (bytes): value 0, next 4, then two (rank, jump) slots at 8 and
// 16: pass k reads slot k % 2 (pass 0 starts from next) and writes the other, so no
// invocation reads what another writes in the same pass.
//
// Dispatched in replayable mode: a page the GPU does not hold faults; the invocation stops and
// runs again once the host has migrated the page. It touches the page it writes first, so the
// read and the write fault together, and it stores only while hmm_ok(): a rerun is harmless.

struct Args {
  index: u32, // VA of the node table: node i's address is at index + 4 i
  n: u32,     // nodes
  step: u32,  // pass number k
  _pad: u32,
}

@group(0) @binding(0) var<uniform> u: Args;

// (rank, jump) of a node as this pass reads it.
fn state(node: u32) -> vec2u {
  if (u.step == 0u) {
    let next = hmm_load_u32(node + 4u);
    return vec2u(select(0u, 1u, next != 0u), next);
  }
  let slot = 8u + (u.step & 1u) * 8u;
  return vec2u(hmm_load_u32(node + slot), hmm_load_u32(node + slot + 4u));
}

fn kernel(gid: vec3u) {
  let i = gid.x;
  if (i >= u.n) {
    return;
  }
  let node = hmm_load_u32(u.index + i * 4u);
  if (!hmm_ok()) {
    return;
  }
  let out = 8u + ((u.step + 1u) & 1u) * 8u;
  hmm_touch(node + out, true);
  var s = state(node);
  if (s.y != 0u && hmm_ok()) {
    let far = state(s.y);
    s = vec2u(s.x + far.x, far.y);
  }
  if (!hmm_ok()) {
    return;
  }
  hmm_store_u32(node + out, s.x);
  hmm_store_u32(node + out + 4u, s.y);
}
