// One read per page: invocation i touches the page at base + i * stride. Goals G2 and G3 use
// it to make exactly n distinct pages fault, with no other work in the way.
struct Args { base: u32, stride: u32, n: u32, row: u32 }
@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x + gid.y * u.row;
  if (i >= u.n) { return; }
  _ = hmm_touch(u.base + i * u.stride, false);
}
