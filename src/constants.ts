// Address-space geometry shared by every part of the project: page size, huge-page size,
// the 32-bit virtual address range. The GPU side reads the same numbers from shaders/hmm.wgsl.

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT; // 4 KiB
export const WORDS_PER_PAGE = PAGE_SIZE / 4;
export const HUGE_SHIFT = 21;
export const HUGE_SIZE = 1 << HUGE_SHIFT; // 2 MiB, one device directory entry
export const PAGES_PER_HUGE = HUGE_SIZE / PAGE_SIZE; // 512
export const VA_BITS = 32;
export const VA_LIMIT = 2 ** VA_BITS; // addresses are [0, 4 GiB)
export const VA_PAGES = VA_LIMIT / PAGE_SIZE; // 1,048,576
export const DIR_ENTRIES = VA_LIMIT / HUGE_SIZE; // 2048
/** The lowest page mmap hands out by itself; VA 0 is never mapped, so null stays null. */
export const MMAP_MIN_ADDR = 0x10000;

export const pageOf = (va: number): number => Math.floor(va / PAGE_SIZE);
export const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

/** Pages start, start+1, ..., start+n-1. */
export const pageList = (start: number, n: number): number[] => Array.from({ length: n }, (_, i) => start + i);
