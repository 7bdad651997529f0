// Random gather: out[i] = table[idx[i]]. The indices touch only a share of the table's pages
// (the density), which is where on-demand paging can beat copying the whole table.
struct Args { idx: u32, table: u32, out: u32, n: u32, row: u32 }
@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x + gid.y * u.row;
  if (i >= u.n) { return; }
  let j = hmm_load_u32(u.idx + i * 4u);
  // A missed index reads as 0: stop before it sends the table load to a page it never wanted.
  if (!hmm_ok()) { return; }
  hmm_store_u32(u.out + i * 4u, hmm_load_u32(u.table + j * 4u));
}
