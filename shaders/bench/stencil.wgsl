// 2-D five-point stencil over a width x height grid of u32: dst = centre + the four
// neighbours, clamped at the edges. One cell per invocation, 8x8 workgroups.
struct Args { src: u32, dst: u32, width: u32, height: u32 }
@group(0) @binding(0) var<uniform> u: Args;

fn cell(x: u32, y: u32) -> u32 {
  return hmm_load_u32(u.src + (y * u.width + x) * 4u);
}

fn kernel(gid: vec3u) {
  let x = gid.x;
  let y = gid.y;
  if (x >= u.width || y >= u.height) { return; }
  let l = select(x - 1u, 0u, x == 0u);
  let r = min(x + 1u, u.width - 1u);
  let t = select(y - 1u, 0u, y == 0u);
  let b = min(y + 1u, u.height - 1u);
  let v = cell(x, y) + cell(l, y) + cell(r, y) + cell(x, t) + cell(x, b);
  hmm_store_u32(u.dst + (y * u.width + x) * 4u, v);
}
