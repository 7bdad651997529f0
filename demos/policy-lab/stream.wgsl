// Streaming with oversubscription: one chunk of the stream, data[i] += hot[i % hotWords].
//
// The lab launches this once per chunk, pass after pass, over a working set (a small hot table
// plus the stream) twice the device's memory, so the eviction policy decides what stays. Every
// launch also reads the hot table: the reuse a good eviction policy keeps on the device. The
// dispatch is 'replayable': a page the device lacks is a GPU fault, the host brings it in (the
// prefetch policy may add pages, the placement policy says migrate or copy), and the unfinished
// invocations run again. Each invocation stores once, at its end, so a replay is harmless.

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
