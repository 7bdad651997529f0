// One chunk of the stream: data[i] += hot[i % hotWords], through virtual addresses.
//
// The host launches this once per chunk of the stream region, pass after pass, so the
// working set (the hot table plus the whole stream) is twice the device's memory. Every
// launch also reads the small hot table: that is the reuse the eviction clock should keep.
// The dispatch is 'replayable': a page the device does not hold is recorded in the GPU
// fault queue, the host migrates it in (evicting something when memory is full), and the
// unfinished invocations run again. Each invocation stores once, at its end, so running it
// again after a fault is harmless (the kernel is restartable).

struct Args {
  data: u32,     // VA of this chunk's first word
  hot: u32,      // VA of the hot table
  words: u32,    // words in this chunk
  hotWords: u32, // words in the hot table
}

@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x;
  if (i >= u.words) {
    return;
  }
  let coefficient = hmm_load_u32(u.hot + (i % u.hotWords) * 4u);
  let p = u.data + i * 4u;
  hmm_store_u32(p, hmm_load_u32(p) + coefficient);
}
