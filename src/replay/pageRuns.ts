// Page runs: how a fault trace stores sets and lists of pages compactly. A list of pages is
// written as [first, count, first, count, ...] runs of consecutive pages, in the order given,
// so a sorted range of a million pages is two numbers and an unsorted list loses no order.
// Also the touched bitmap a recording launch reads back, turned into read and write runs.

/** Pages as runs: [first, count, first, count, ...]. */
export type PageRuns = number[];

/** Encode pages (any order; consecutive ascending neighbours share a run). */
export function toRuns(pages: Iterable<number>): PageRuns {
  const out: number[] = [];
  for (const p of pages) {
    const n = out.length;
    if (n > 0 && out[n - 2]! + out[n - 1]! === p) out[n - 1]!++;
    else out.push(p, 1);
  }
  return out;
}

/** Decode runs into the pages, in order. */
export function fromRuns(runs: PageRuns): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < runs.length; i += 2) for (let k = 0; k < runs[i + 1]!; k++) out.push(runs[i]! + k);
  return out;
}

/** How many pages the runs hold. */
export function runsLength(runs: PageRuns): number {
  let n = 0;
  for (let i = 1; i < runs.length; i += 2) n += runs[i]!;
  return n;
}

/**
 * A touched bitmap (bit page*2 + write per access asked for) as ascending runs of the pages
 * read and the pages written. Words that are zero are skipped 32 keys at a time.
 */
export function bitmapToRuns(words: Uint32Array): { read: PageRuns; write: PageRuns } {
  const read: number[] = [];
  const write: number[] = [];
  for (let w = 0; w < words.length; w++) {
    let v = words[w]!;
    while (v !== 0) {
      const bit = 31 - Math.clz32(v & -v);
      v &= v - 1;
      const key = w * 32 + bit;
      const list = key & 1 ? write : read;
      const page = key >>> 1;
      const n = list.length;
      if (n > 0 && list[n - 2]! + list[n - 1]! === page) list[n - 1]!++;
      else list.push(page, 1);
    }
  }
  return { read, write };
}
