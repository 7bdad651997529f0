// Streaming read: every invocation sums 64 consecutive words (256 bytes) of src and stores
// the sum in out (1/64 of the data). Goals G4, G5 and G6 time and count this kernel.
struct Args { src: u32, out: u32, n: u32, row: u32 }
@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x + gid.y * u.row;
  if (i >= u.n) { return; }
  let base = u.src + i * 256u;
  var s = 0u;
  for (var w = 0u; w < 64u; w++) {
    s += hmm_load_u32(base + w * 4u);
    if (!hmm_ok()) { return; } // one fault per invocation is enough
  }
  hmm_store_u32(u.out + i * 4u, s);
}
