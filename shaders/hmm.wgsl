// webgpu-hmm prelude: every kernel is compiled with this file in front of it.
// It owns @group(1): the device page table (a 2048-entry directory of 2 MiB regions, each
// pointing at a 512-entry leaf table), the device memory buffers holding 4 KiB frames, and
// the status buffer where misses are recorded. Kernels reach memory only through virtual
// addresses; hmm_* functions translate them and set the accessed and dirty-block words.
//
// Isolation (docs/threat-model.md): a kernel may call only the functions under "the
// kernel-facing API" below (and hmm_atomic_add_u32 / hmm_store_u8); everything else here is
// out of its reach, and createKernel refuses a kernel that names it (src/device/kernelCheck.ts
// KERNEL_API: add a function there to make it public). The page tables are the host's: the
// directory is bound read-only, and the leaves read-write only so that hmm_translate can set
// the accessed and dirty-block words, the one write a kernel's access makes to them.
//
// Variants. One source serves every kernel; src/device/kernel.ts specialises it so that the
// resident path (a hit) carries as little code as possible (why: docs/design-notes.md §7):
// - Memory access. The lines between `//#if ATOMIC_MEMORY`, `//#else` and `//#endif` below
//   are kept or blanked out before compiling (blank, so line numbers stay those of this file).
//   Kernels that call hmm_atomic_* or hmm_store_u8 (kernel.ts: needsAtomicMemory) get the
//   device memory as array<atomic<u32>> and every access is atomic (one binding must serve
//   both kinds, and a second, aliasing binding is not allowed); every other kernel gets plain
//   array<u32> accesses. Both bind the same buffers through the same layout.
// - Mode. Each kernel has one pipeline per mode (the override HMM_REPLAYABLE): the validated
//   pipeline has no fault queue, pending bits or done bitmap, not even a test of the mode.
// - HMM_MEM_BUFFERS: how many memory buffers the pool really has; with one, the switch over
//   hmm_mem0..3 folds away.
// - Recording (sys.startRecording, src/replay/): a replayable pipeline with HMM_RECORD on also
//   marks every (page, access) hmm_translate is asked for, hit or miss, in a touched bitmap;
//   the other pipelines keep HMM_RECORD false and carry none of it.

// log2(frames per memory buffer); set by the host from the pool's layout.
override HMM_FRAME_SHIFT: u32 = 15u;
// Memory buffers the pool has (1 to 4); set by the host.
override HMM_MEM_BUFFERS: u32 = 4u;
// True in a kernel's replayable pipeline, false in its validated one.
override HMM_REPLAYABLE: bool = false;
// True only in the recording variant of a replayable pipeline (see "Recording" above).
override HMM_RECORD: bool = false;

@group(1) @binding(0) var<storage, read> hmm_dir: array<u32>;
@group(1) @binding(1) var<storage, read_write> hmm_leaves: array<atomic<u32>>;
@group(1) @binding(6) var<storage, read_write> hmm_ctl: array<atomic<u32>>;

// Directory entry: bit 0 valid, bit 1 huge (maps 2 MiB of contiguous frames), bit 2 write
// (huge only), bits 8..31 leaf table index or first frame.
const HMM_DIR_VALID: u32 = 1u;
const HMM_DIR_HUGE: u32 = 2u;
const HMM_DIR_WRITE: u32 = 4u;
// A leaf table is 1536 words: 512 entries (bit 0 valid, bit 1 write, bits 8..31 frame), which
// only the host writes, then 512 accessed words and 512 dirty-block words, which only the GPU
// sets (the host zeroes them when it maps a page there, and the accessed word for a second
// chance; it never uploads over them, so a page-table upload loses no bit a kernel set on
// another page: design-notes §20). Dirty-block word: bit b set when a kernel wrote the
// 256-byte block b of the page (16 blocks of a 4 KiB page); write-back copies only those.
const HMM_LEAF_WORDS: u32 = 1536u;
const HMM_LEAF_ACCESSED: u32 = 512u;
const HMM_LEAF_DIRTY: u32 = 1024u;
const HMM_PTE_VALID: u32 = 1u;
const HMM_PTE_WRITE: u32 = 2u;
const HMM_MISS: u32 = 0xffffffffu;

// Control words: [0] misses, [1] lowest missed address, [2] lowest missed write address, [3]
// the fault buffer's capacity this round (replayable; the host's faultBufferPages, at most
// HMM_QUEUE_CAP), [4] fault-queue length (every (page, access) that asked for a slot, those
// past the capacity included: they overflowed and fault again next round), [5] invocations that
// faulted this launch (replayable), [6] and [7] the window of invocations a replayable launch
// runs, [start, end) of the linear ids (the host narrows it to guarantee progress, §20), [8 ..)
// the fault queue (HMM_QUEUE_CAP entries of page*2 + write), then the pending bitmap (one bit
// per page and access kind) that lets each (page, access) enter the queue once per round, then
// (recording pipelines only) the touched bitmap of the same shape, then the done bitmap of
// replayable mode (one bit per invocation, set when it finished without a fault). The touched
// bitmap sits before the done bitmap so that only recording pipelines, whose control buffers
// are that much larger, see the done bitmap move.
const HMM_STATUS_MISSES: u32 = 0u;
const HMM_STATUS_MIN_MISS: u32 = 1u;
const HMM_STATUS_MIN_WRITE_MISS: u32 = 2u;
const HMM_CTL_QCAP: u32 = 3u;
const HMM_CTL_QLEN: u32 = 4u;
const HMM_CTL_FAULTED: u32 = 5u;
const HMM_CTL_WINDOW_START: u32 = 6u;
const HMM_CTL_WINDOW_END: u32 = 7u;
const HMM_CTL_QUEUE: u32 = 8u;
override HMM_QUEUE_CAP: u32 = 4096u;
const HMM_PENDING_WORDS: u32 = 65536u; // 2^20 pages x 2 access kinds / 32
fn hmm_done_base() -> u32 {
  return HMM_CTL_QUEUE + HMM_QUEUE_CAP + HMM_PENDING_WORDS + select(0u, HMM_PENDING_WORDS, HMM_RECORD);
}

// Recording: this (page, access) was asked for this round. A plain load first, so a page many
// invocations touch costs one atomic per round, not one per access.
fn hmm_record_touch(va: u32, write: bool) {
  let key = (va >> 12u) * 2u + select(0u, 1u, write);
  let word = HMM_CTL_QUEUE + HMM_QUEUE_CAP + HMM_PENDING_WORDS + (key >> 5u);
  let bit = 1u << (key & 31u);
  if ((atomicLoad(&hmm_ctl[word]) & bit) == 0u) {
    atomicOr(&hmm_ctl[word], bit);
  }
}

// Set once this invocation missed; its later stores are suppressed.
var<private> hmm_faulted: bool = false;

fn hmm_record_miss(va: u32, write: bool) {
  if (HMM_REPLAYABLE && !hmm_faulted) { // this invocation's first miss: it will not finish this round
    atomicAdd(&hmm_ctl[HMM_CTL_FAULTED], 1u);
  }
  hmm_faulted = true;
  atomicAdd(&hmm_ctl[HMM_STATUS_MISSES], 1u);
  atomicMin(&hmm_ctl[HMM_STATUS_MIN_MISS], va);
  if (write) {
    atomicMin(&hmm_ctl[HMM_STATUS_MIN_WRITE_MISS], va);
  }
  if (HMM_REPLAYABLE) { // a pipeline constant: validated pipelines have none of this
    // Deduplicate on the GPU: only the first miss of a (page, access) this round is queued,
    // and only while the fault buffer has room; the rest overflow and fault again next round.
    let key = (va >> 12u) * 2u + select(0u, 1u, write);
    let bit = 1u << (key & 31u);
    let old = atomicOr(&hmm_ctl[HMM_CTL_QUEUE + HMM_QUEUE_CAP + (key >> 5u)], bit);
    if ((old & bit) == 0u) {
      let slot = atomicAdd(&hmm_ctl[HMM_CTL_QLEN], 1u);
      if (slot < min(atomicLoad(&hmm_ctl[HMM_CTL_QCAP]), HMM_QUEUE_CAP)) {
        atomicStore(&hmm_ctl[HMM_CTL_QUEUE + slot], key);
      }
    }
  }
}

// Replayable mode's done bitmap, indexed by the invocation's linear global id.
fn hmm_invocation_index(gid: vec3u, nwg: vec3u, wg: vec3u) -> u32 {
  let row = nwg.x * wg.x;
  return gid.x + gid.y * row + gid.z * row * nwg.y * wg.y;
}

// Replayable mode: the invocations a launch runs, [start, end) of the linear ids (§20).
fn hmm_in_window(idx: u32) -> bool {
  return idx >= atomicLoad(&hmm_ctl[HMM_CTL_WINDOW_START]) && idx < atomicLoad(&hmm_ctl[HMM_CTL_WINDOW_END]);
}

fn hmm_is_done(idx: u32) -> bool {
  return (atomicLoad(&hmm_ctl[hmm_done_base() + (idx >> 5u)]) & (1u << (idx & 31u))) != 0u;
}

// Called after the kernel: finished without a fault, so a replay skips this invocation.
fn hmm_mark_done(idx: u32) {
  if (hmm_faulted) { return; }
  atomicOr(&hmm_ctl[hmm_done_base() + (idx >> 5u)], 1u << (idx & 31u));
}

// Frame holding `va`, or HMM_MISS (and the miss recorded) when the device may not access it.
// The miss is recorded in one place, after the walk, not at each way out: every hmm_* call
// inlines this function, and a hit carries the miss path's code too (SwiftShader even runs
// it, masked off, when no invocation misses).
fn hmm_translate(va: u32, write: bool) -> u32 {
  if (HMM_RECORD) { // a pipeline constant: only recording pipelines have this
    hmm_record_touch(va, write);
  }
  let d = hmm_dir[va >> 21u];
  var frame = HMM_MISS;
  if ((d & HMM_DIR_VALID) != 0u) {
    if ((d & HMM_DIR_HUGE) != 0u) {
      // 2 MiB of consecutive frames; no accessed/dirty bits (design-notes §12)
      if (!write || (d & HMM_DIR_WRITE) != 0u) {
        frame = (d >> 8u) + ((va >> 12u) & 511u);
      }
    } else {
      let li = (d >> 8u) * HMM_LEAF_WORDS + ((va >> 12u) & 511u);
      let e = atomicLoad(&hmm_leaves[li]);
      if ((e & HMM_PTE_VALID) != 0u && (!write || (e & HMM_PTE_WRITE) != 0u)) {
        // The GPU keeps accessed and dirty blocks for eviction and write-back, each set once.
        if (atomicLoad(&hmm_leaves[li + HMM_LEAF_ACCESSED]) == 0u) {
          atomicStore(&hmm_leaves[li + HMM_LEAF_ACCESSED], 1u);
        }
        if (write) {
          let block = 1u << ((va >> 8u) & 15u);
          if ((atomicLoad(&hmm_leaves[li + HMM_LEAF_DIRTY]) & block) == 0u) {
            atomicOr(&hmm_leaves[li + HMM_LEAF_DIRTY], block);
          }
        }
        frame = e >> 8u;
      }
    }
  }
  if (frame == HMM_MISS) {
    hmm_record_miss(va, write);
  }
  return frame;
}

fn hmm_word_index(frame: u32, va: u32) -> u32 {
  let mask = (1u << HMM_FRAME_SHIFT) - 1u;
  return ((frame & mask) << 10u) | ((va >> 2u) & 1023u);
}

// Which memory buffer holds `frame`: a constant 0 when the pool has one buffer.
fn hmm_buffer_of(frame: u32) -> u32 {
  return select(frame >> HMM_FRAME_SHIFT, 0u, HMM_MEM_BUFFERS == 1u);
}

//#if ATOMIC_MEMORY
@group(1) @binding(2) var<storage, read_write> hmm_mem0: array<atomic<u32>>;
@group(1) @binding(3) var<storage, read_write> hmm_mem1: array<atomic<u32>>;
@group(1) @binding(4) var<storage, read_write> hmm_mem2: array<atomic<u32>>;
@group(1) @binding(5) var<storage, read_write> hmm_mem3: array<atomic<u32>>;

fn hmm_word_load(frame: u32, va: u32) -> u32 {
  let i = hmm_word_index(frame, va);
  switch (hmm_buffer_of(frame)) {
    case 0u: { return atomicLoad(&hmm_mem0[i]); }
    case 1u: { return atomicLoad(&hmm_mem1[i]); }
    case 2u: { return atomicLoad(&hmm_mem2[i]); }
    default: { return atomicLoad(&hmm_mem3[i]); }
  }
}

fn hmm_word_store(frame: u32, va: u32, v: u32) {
  let i = hmm_word_index(frame, va);
  switch (hmm_buffer_of(frame)) {
    case 0u: { atomicStore(&hmm_mem0[i], v); }
    case 1u: { atomicStore(&hmm_mem1[i], v); }
    case 2u: { atomicStore(&hmm_mem2[i], v); }
    default: { atomicStore(&hmm_mem3[i], v); }
  }
}

fn hmm_word_add(frame: u32, va: u32, v: u32) -> u32 {
  let i = hmm_word_index(frame, va);
  switch (hmm_buffer_of(frame)) {
    case 0u: { return atomicAdd(&hmm_mem0[i], v); }
    case 1u: { return atomicAdd(&hmm_mem1[i], v); }
    case 2u: { return atomicAdd(&hmm_mem2[i], v); }
    default: { return atomicAdd(&hmm_mem3[i], v); }
  }
}

fn hmm_word_and_or(frame: u32, va: u32, keep: u32, bits: u32) {
  let i = hmm_word_index(frame, va);
  switch (hmm_buffer_of(frame)) {
    case 0u: { atomicAnd(&hmm_mem0[i], keep); atomicOr(&hmm_mem0[i], bits); }
    case 1u: { atomicAnd(&hmm_mem1[i], keep); atomicOr(&hmm_mem1[i], bits); }
    case 2u: { atomicAnd(&hmm_mem2[i], keep); atomicOr(&hmm_mem2[i], bits); }
    default: { atomicAnd(&hmm_mem3[i], keep); atomicOr(&hmm_mem3[i], bits); }
  }
}

// Returns the old value (0 on a miss).
fn hmm_atomic_add_u32(va: u32, v: u32) -> u32 {
  if (hmm_faulted) { return 0u; }
  let f = hmm_translate(va, true);
  if (f == HMM_MISS) { return 0u; }
  return hmm_word_add(f, va, v);
}

// A byte store is a read-modify-write of its word: atomic, so invocations storing different
// bytes of one word do not lose each other's.
fn hmm_store_u8(va: u32, v: u32) {
  if (hmm_faulted) { return; }
  let f = hmm_translate(va, true);
  if (f == HMM_MISS) { return; }
  let shift = (va & 3u) * 8u;
  hmm_word_and_or(f, va, ~(0xffu << shift), (v & 0xffu) << shift);
}
//#else
@group(1) @binding(2) var<storage, read_write> hmm_mem0: array<u32>;
@group(1) @binding(3) var<storage, read_write> hmm_mem1: array<u32>;
@group(1) @binding(4) var<storage, read_write> hmm_mem2: array<u32>;
@group(1) @binding(5) var<storage, read_write> hmm_mem3: array<u32>;

fn hmm_word_load(frame: u32, va: u32) -> u32 {
  let i = hmm_word_index(frame, va);
  switch (hmm_buffer_of(frame)) {
    case 0u: { return hmm_mem0[i]; }
    case 1u: { return hmm_mem1[i]; }
    case 2u: { return hmm_mem2[i]; }
    default: { return hmm_mem3[i]; }
  }
}

fn hmm_word_store(frame: u32, va: u32, v: u32) {
  let i = hmm_word_index(frame, va);
  switch (hmm_buffer_of(frame)) {
    case 0u: { hmm_mem0[i] = v; }
    case 1u: { hmm_mem1[i] = v; }
    case 2u: { hmm_mem2[i] = v; }
    default: { hmm_mem3[i] = v; }
  }
}
//#endif

// ---- the kernel-facing API ------------------------------------------------------------

// True while this invocation has not missed.
fn hmm_ok() -> bool {
  return !hmm_faulted;
}

// Translate without accessing, so a kernel can fault in what it needs before side effects.
fn hmm_touch(va: u32, write: bool) -> bool {
  return hmm_translate(va, write) != HMM_MISS;
}

// Loads return 0 on a miss; the miss is recorded, never silent.
fn hmm_load_u32(va: u32) -> u32 {
  let f = hmm_translate(va, false);
  if (f == HMM_MISS) { return 0u; }
  return hmm_word_load(f, va);
}

fn hmm_store_u32(va: u32, v: u32) {
  if (hmm_faulted) { return; }
  let f = hmm_translate(va, true);
  if (f == HMM_MISS) { return; }
  hmm_word_store(f, va, v);
}

fn hmm_load_f32(va: u32) -> f32 {
  return bitcast<f32>(hmm_load_u32(va));
}

fn hmm_store_f32(va: u32, v: f32) {
  hmm_store_u32(va, bitcast<u32>(v));
}

fn hmm_load_u8(va: u32) -> u32 {
  return (hmm_load_u32(va) >> ((va & 3u) * 8u)) & 0xffu;
}
