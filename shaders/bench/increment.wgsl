// In-place increment, one word per invocation: the GPU half of the CPU/GPU ping-pong. An
// invocation loads and stores one word of one page, so a replay never applies it twice (a
// miss on the load suppresses the store).
struct Args { a: u32, n: u32, row: u32, pad: u32 }
@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x + gid.y * u.row;
  if (i >= u.n) { return; }
  let p = u.a + i * 4u;
  hmm_store_u32(p, hmm_load_u32(p) + 1u);
}
