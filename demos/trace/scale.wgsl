// x = 3x + 1 for every u32 in [va, va + 4 * words), through virtual addresses.
//
// Replayable: a page the device lacks becomes a GPU fault, the host migrates it in
// (evicting when device memory is full) and the unfinished invocations run again. Each
// invocation stores once, at its end, so running it again after a fault is harmless.

struct Args {
  va: u32,    // first word
  words: u32, // how many
}

@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  if (gid.x >= u.words) {
    return;
  }
  let p = u.va + gid.x * 4u;
  hmm_store_u32(p, 3u * hmm_load_u32(p) + 1u);
}
