// The GPU's turn: out[i] = 2 * in[i] + turn, through virtual addresses.
//
// The CPU wrote `in` on its turn, and will read `out` on its next one, so both arrays change
// hands every turn. The dispatch is 'replayable': a page the device does not hold faults,
// and the host either migrates it here or, when policy keeps it in system RAM (thrashing
// detection, or read-mostly advice for `in`), maps a copy of it. Each invocation stores once,
// at its end, so running it again after a fault is harmless.

struct Args {
  input: u32,  // VA of in[0]
  output: u32, // VA of out[0]
  words: u32,  // elements in each array
  turn: u32,   // this turn's number
}

@group(0) @binding(0) var<uniform> u: Args;

fn kernel(gid: vec3u) {
  let i = gid.x;
  if (i >= u.words) {
    return;
  }
  let offset = i * 4u; // 4 bytes per u32
  hmm_store_u32(u.output + offset, 2u * hmm_load_u32(u.input + offset) + u.turn);
}
