// Statistics of repeated measurements: the median, with the minimum and maximum as the
// spread. Every figure the bench reports is summarised this way (perf-anchors §6: the median
// of repeated runs). Pure functions, no GPU.

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** How many samples. */
  n: number;
}

/** Median of the samples (the mean of the middle two for an even count); NaN when there are none. */
export function median(samples: readonly number[]): number {
  if (samples.length === 0) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Median, min and max; NaN everywhere (n = 0) when there are no samples. */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  let min = Infinity;
  let max = -Infinity;
  for (const x of samples) {
    if (x < min) min = x;
    if (x > max) max = x;
  }
  return { median: median(samples), min, max, n: samples.length };
}

/** Per-sample ratios a[i] / b[i] of two figures measured side by side (same index = same repetition). */
export function ratios(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new Error(`ratios: ${a.length} samples against ${b.length}`);
  return a.map((x, i) => x / b[i]!);
}
