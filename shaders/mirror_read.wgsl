// Mirror.read: the device reads [va, va + 4*nwords) through its page table into `io`,
// as the dmirror read ioctl does. One invocation per 32-bit word.
struct MirrorArgs {
  va: u32,
  nwords: u32,
  row: u32, // invocations per row of the 2D dispatch
  pad: u32,
}
@group(0) @binding(0) var<uniform> args: MirrorArgs;
@group(0) @binding(1) var<storage, read_write> io: array<u32>;

fn kernel(gid: vec3u) {
  let i = gid.x + gid.y * args.row;
  if (i >= args.nwords) { return; }
  io[i] = hmm_load_u32(args.va + i * 4u);
}
