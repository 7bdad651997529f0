// Strided walk: each launch updates `pages` whole pages of a walk that takes one page in every
// `stride` (x = 3x + 1 for every word), the next launch the next `pages` of the walk. The pages a
// launch faults on sit at one constant distance: too sparse for the density prefetcher to call
// any region dense, the case a stride prefetcher is for (it can bring the next launches' pages
// with this launch's faults).

struct Args {
  base: u32,   // VA of the region
  first: u32,  // the walk's first page this launch (walk page k is region page k * stride)
  pages: u32,  // walk pages this launch
  stride: u32, // region pages from one walk page to the next
}

@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x;
  if (i >= u.pages * 1024u) {
    return;
  }
  let k = u.first + i / 1024u;
  let p = u.base + k * u.stride * 4096u + (i % 1024u) * 4u;
  hmm_store_u32(p, hmm_load_u32(p) * 3u + 1u);
}
