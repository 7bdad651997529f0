// Mirror.read and Mirror.write: the device copies between `io` and [va, va + 4*nwords)
// through its page table, as the dmirror read and write ioctls do. One invocation per word.
struct MirrorArgs {
  va: u32,
  nwords: u32,
  row: u32, // invocations per row of the 2D dispatch
  write: u32, // 0: read memory into io; 1: write io into memory
}
@group(0) @binding(0) var<uniform> args: MirrorArgs;
@group(0) @binding(1) var<storage, read_write> io: array<u32>;

fn kernel(gid: vec3u) {
  let i = gid.x + gid.y * args.row;
  if (i >= args.nwords) { return; }
  if (args.write == 1u) {
    hmm_store_u32(args.va + i * 4u, io[i]);
  } else {
    io[i] = hmm_load_u32(args.va + i * 4u);
  }
}
