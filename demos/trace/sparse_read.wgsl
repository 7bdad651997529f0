// out[i] = the first word of page i * stride: a sparse read, one word per touched page.
//
// The pages it touches are far apart, so the density prefetcher has something to do: each
// fault grows to its 64 KiB big page, and the trace shows those extra pages as 'prefetch'.

struct Args {
  buffer: u32, // VA of the first page
  out: u32,    // VA of out[0]
  count: u32,  // pages read
  stride: u32, // pages between two reads
}

@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x;
  if (i >= u.count) {
    return;
  }
  hmm_store_u32(u.out + i * 4u, hmm_load_u32(u.buffer + i * u.stride * 4096u));
}
