// Out-of-place stream: dst[i] = 2 * src[i] + 1, one word per invocation. The oversubscribed
// workloads and goals G7 and G8 run it over working sets larger than the device pool.
struct Args { src: u32, dst: u32, n: u32, row: u32 }
@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x + gid.y * u.row;
  if (i >= u.n) { return; }
  let v = hmm_load_u32(u.src + i * 4u);
  hmm_store_u32(u.dst + i * 4u, 2u * v + 1u);
}
