// The Atomics fault mailbox: how a CPU thread (a Web Worker, or a Node worker_thread) that
// cannot finish an access from the shared page table by itself asks the main thread, which
// owns the address space, to fault the pages in, and blocks until it has.
//
// One SharedArrayBuffer per address space holds a doorbell word and a fixed set of request
// slots. A thread claims a free slot (compare-exchange), writes its request, rings the
// doorbell and waits on the slot's state word with Atomics.wait. The main thread never blocks:
// it waits on the doorbell with Atomics.waitAsync, serves every request concurrently
// (AddressSpace.threadFault; requests for the same page share one migration through the
// address space's in-flight map), writes the result and notifies the slot.
//
// This module owns the layout and both ends of the protocol; it knows nothing of pages.

import { PAGE_SIZE, pageList } from '../constants.ts';
import { HmmError, type HmmErrorCode } from '../errors.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';

// ---- layout (Int32 words)
const DOORBELL = 0; // incremented by every request
const STOP = 1; // non-zero: the server has stopped (address space destroyed)
const HEADER_WORDS = 16;
export const SLOTS = 64;
const SLOT_WORDS = 80;
// slot words
const STATE = 0;
const OP = 1;
const VA = 2;
const LENGTH = 3;
const RESULT = 4; // 0 ok, else index in CODES + 1, or UNKNOWN_ERROR
const HAS_ADDRESS = 5;
const ADDRESS = 6;
const MESSAGE_BYTES = 7;
const MESSAGE = 16; // 64 words = 256 bytes of UTF-8
const MESSAGE_CAPACITY = (SLOT_WORDS - MESSAGE) * 4;

// slot states
const FREE = 0;
const CLAIMED = 1;
const REQUEST = 2;
const SERVING = 3;
const DONE = 4;
/** The thread gave up waiting while the main thread served it: the server frees the slot when done. */
const ABANDONED = 5;

const CODES: readonly HmmErrorCode[] = ['EFAULT', 'EPERM', 'EINVAL', 'ENOENT', 'ENOMEM', 'EBUSY', 'EDEVLOST', 'EPOISON', 'ESEGV'];
const UNKNOWN_ERROR = 0xff;

/** How long a thread waits for the main thread before giving up (it must never hang). */
export const THREAD_FAULT_TIMEOUT_MS = 30_000;

export const MAILBOX_BYTES = (HEADER_WORDS + SLOTS * SLOT_WORDS) * 4;

const slotBase = (slot: number): number => HEADER_WORDS + slot * SLOT_WORDS;

// ------------------------------------------------------------------ thread side

/**
 * Ask the main thread to make [va, va+length) accessible; throws its HmmError. Blocks. On
 * success the pages are pinned for the caller (one pin each): it makes its access, then unpins.
 */
export function requestFault(words: Int32Array, write: boolean, va: number, length: number, timeoutMs = THREAD_FAULT_TIMEOUT_MS): void {
  const slot = claimSlot(words, timeoutMs);
  const b = slotBase(slot);
  words[b + OP] = write ? 1 : 0;
  words[b + VA] = va | 0; // u32 in an i32 word; read back with >>> 0
  words[b + LENGTH] = length | 0;
  Atomics.store(words, b + STATE, REQUEST);
  Atomics.add(words, DOORBELL, 1);
  Atomics.notify(words, DOORBELL);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = Atomics.load(words, b + STATE);
    if (s === DONE) break;
    if (Atomics.load(words, STOP) !== 0 && s === REQUEST && Atomics.compareExchange(words, b + STATE, REQUEST, FREE) === REQUEST)
      throw new HmmError('EINVAL', `CPU thread access at 0x${(va >>> 0).toString(16)}: the address space was destroyed`, va >>> 0);
    const left = deadline - Date.now();
    // Give up, and give the slot back: at once if no server took the request, or through the
    // server when it finishes serving it (ABANDONED). A slot kept forever would leave every
    // thread with EBUSY once all of them were gone.
    if (left <= 0 && abandon(words, b))
      throw new HmmError(
        'EBUSY',
        `CPU thread access at 0x${(va >>> 0).toString(16)}: the main thread did not serve the fault within ${timeoutMs} ms (is it blocked?)`,
        va >>> 0,
      );
    Atomics.wait(words, b + STATE, s, Math.max(1, Math.min(left, 100)));
  }
  const result = words[b + RESULT]!;
  const error = result === 0 ? null : decodeError(words, b, result);
  Atomics.store(words, b + STATE, FREE);
  if (error) throw error;
}

/** The thread stops waiting for slot `b`: true when it is given up (false: the answer is there, DONE). */
function abandon(words: Int32Array, b: number): boolean {
  if (Atomics.compareExchange(words, b + STATE, REQUEST, FREE) === REQUEST) return true;
  return Atomics.compareExchange(words, b + STATE, SERVING, ABANDONED) === SERVING;
}

function claimSlot(words: Int32Array, timeoutMs: number): number {
  const deadline = Date.now() + timeoutMs;
  for (let spin = 0; ; spin++) {
    for (let i = 0; i < SLOTS; i++) if (Atomics.compareExchange(words, slotBase(i) + STATE, FREE, CLAIMED) === FREE) return i;
    if (Date.now() > deadline) throw new HmmError('EBUSY', `CPU thread: all ${SLOTS} fault mailbox slots stayed busy for ${timeoutMs} ms`);
    Atomics.wait(words, slotBase(spin % SLOTS) + STATE, Atomics.load(words, slotBase(spin % SLOTS) + STATE), 1);
  }
}

function decodeError(words: Int32Array, b: number, result: number): Error {
  const n = Math.min(words[b + MESSAGE_BYTES]!, MESSAGE_CAPACITY);
  // TextDecoder refuses views of shared memory: copy the bytes out first.
  const bytes = new Uint8Array(words.buffer, words.byteOffset + (b + MESSAGE) * 4, n).slice();
  const text = new TextDecoder().decode(bytes);
  if (result === UNKNOWN_ERROR) return new Error(text);
  const code = CODES[result - 1] ?? 'EINVAL';
  // The main thread's message already starts with "CODE: "; HmmError adds it again.
  const message = text.startsWith(`${code}: `) ? text.slice(code.length + 2) : text;
  return new HmmError(code, message, words[b + HAS_ADDRESS] ? words[b + ADDRESS]! >>> 0 : undefined);
}

// ------------------------------------------------------------------ main-thread side

/** The pages of [va, va+length). */
function pagesOf(va: number, length: number): number[] {
  const first = Math.floor(va / PAGE_SIZE);
  return pageList(first, Math.floor((va + length - 1) / PAGE_SIZE) - first + 1);
}

/** How many of the mailbox's slots are free (a leak check: all of them, when no access is in flight). */
export function freeSlots(buffer: SharedArrayBuffer): number {
  const words = new Int32Array(buffer);
  let n = 0;
  for (let i = 0; i < SLOTS; i++) if (Atomics.load(words, slotBase(i) + STATE) === FREE) n++;
  return n;
}

/** Serves one address space's mailbox on the main thread until stopped. */
export class MailboxServer {
  readonly buffer = new SharedArrayBuffer(MAILBOX_BYTES);
  private readonly words = new Int32Array(this.buffer);
  private stopped = false;
  /** Requests served, and how many of them ended in an error. */
  served = 0;
  failed = 0;

  constructor(private readonly mm: AddressSpace) {
    void this.loop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    Atomics.store(this.words, STOP, 1);
    Atomics.add(this.words, DOORBELL, 1);
    Atomics.notify(this.words, DOORBELL);
    // wake threads waiting on requests nobody will serve now
    for (let i = 0; i < SLOTS; i++) Atomics.notify(this.words, slotBase(i) + STATE);
  }

  private async loop(): Promise<void> {
    let seen = Atomics.load(this.words, DOORBELL);
    while (!this.stopped) {
      for (let i = 0; i < SLOTS; i++) {
        const b = slotBase(i);
        if (Atomics.compareExchange(this.words, b + STATE, REQUEST, SERVING) === REQUEST) void this.serve(b);
      }
      const now = Atomics.load(this.words, DOORBELL);
      if (now !== seen) {
        seen = now;
        continue;
      }
      const w = Atomics.waitAsync(this.words, DOORBELL, seen);
      if (w.async) await w.value;
    }
  }

  private async serve(b: number): Promise<void> {
    const write = this.words[b + OP] === 1;
    const va = this.words[b + VA]! >>> 0;
    const length = this.words[b + LENGTH]! >>> 0;
    let result = 0;
    let pinned = false;
    try {
      this.mm.stats.add('threadFaults');
      // On success the pages come back pinned for the thread: it makes its access and unpins.
      await this.mm.threadFault(va, length, write, true);
      pinned = true;
    } catch (e) {
      result = this.encodeError(b, e);
      this.failed++;
    }
    this.served++;
    this.words[b + RESULT] = result;
    // The thread gave up meanwhile (ABANDONED): nobody reads the answer or takes the pins, and
    // the slot is free again.
    if (Atomics.compareExchange(this.words, b + STATE, SERVING, DONE) !== SERVING) {
      if (pinned) for (const p of pagesOf(va, length)) this.mm.pageTable.unpin(p);
      Atomics.store(this.words, b + STATE, FREE);
    }
    Atomics.notify(this.words, b + STATE);
  }

  private encodeError(b: number, e: unknown): number {
    const he = e instanceof HmmError ? e : null;
    const text = e instanceof Error ? e.message : String(e);
    let bytes = new TextEncoder().encode(text);
    if (bytes.length > MESSAGE_CAPACITY) bytes = bytes.subarray(0, MESSAGE_CAPACITY);
    new Uint8Array(this.buffer, (b + MESSAGE) * 4, bytes.length).set(bytes);
    this.words[b + MESSAGE_BYTES] = bytes.length;
    this.words[b + HAS_ADDRESS] = he?.address !== undefined ? 1 : 0;
    this.words[b + ADDRESS] = (he?.address ?? 0) | 0;
    return he ? CODES.indexOf(he.code) + 1 : UNKNOWN_ERROR;
  }
}
