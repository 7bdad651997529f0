// Stream triad (McCalpin's STREAM): a[i] = b[i] + 3 * c[i]. In u32 so the CPU can check every
// word exactly. One word per invocation; the grid may be 2-D (row = invocations per row).
struct Args { a: u32, b: u32, c: u32, n: u32, row: u32 }
@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x + gid.y * u.row;
  if (i >= u.n) { return; }
  let off = i * 4u;
  let v = hmm_load_u32(u.b + off) + 3u * hmm_load_u32(u.c + off);
  hmm_store_u32(u.a + off, v);
}
