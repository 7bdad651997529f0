// Breadth-first search, level by level, one invocation per node. The host dispatches once per
// level; a node on the current level marks each neighbour not reached yet with the next level,
// and raises the level's flag so the host knows to go on.
//
// The CPU worker built a random directed graph: nodes scattered over the pool's pages, each
// with up to six neighbour pointers (virtual addresses). Node layout (bytes): level 0
// (0xffffffff until reached), degree 4, neighbours 8..31. Two nodes may mark the same
// neighbour in one pass: both store the same level, so the race is harmless.
//
// Dispatched in replayable mode: a page the GPU does not hold faults; the invocation stops and
// runs again once the host has migrated the page. It touches every page it may write before
// its first store, and stores only while hmm_ok(): a rerun is harmless.

const UNREACHED: u32 = 0xffffffffu;
const MAX_DEGREE: u32 = 6u;

struct Args {
  index: u32, // VA of the node table: node i's address is at index + 4 i
  n: u32,     // nodes
  level: u32, // the frontier's level
  flags: u32, // VA of one u32 per level: set to 1 when this level found new nodes
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
  let level = hmm_load_u32(node);
  if (!hmm_ok() || level != u.level) {
    return; // not on the frontier (or a fault: we run again)
  }
  let degree = min(hmm_load_u32(node + 4u), MAX_DEGREE);
  for (var k = 0u; k < degree; k++) {
    hmm_touch(hmm_load_u32(node + 8u + 4u * k), true);
  }
  hmm_touch(u.flags + 4u * u.level, true);
  if (!hmm_ok()) {
    return;
  }
  var found = false;
  for (var k = 0u; k < degree; k++) {
    let next = hmm_load_u32(node + 8u + 4u * k);
    if (hmm_load_u32(next) == UNREACHED) {
      hmm_store_u32(next, u.level + 1u);
      found = true;
    }
  }
  if (found) {
    hmm_store_u32(u.flags + 4u * u.level, 1u);
  }
}
