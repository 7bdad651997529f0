// Presenting a BenchResult: the terminal tables (goals, then the workload × strategy matrix,
// then, with user policy sets, the fault-driven strategies' counters side by side), the same
// tables as HTML (the perf page and the HTML report), and JSON. Pure string building, shared
// by the CLI and the browser page.

import { PHASES, topShares, type PhaseOrOther } from './figures.ts';
import type { CheckResult, GoalResult } from './goals.ts';
import { isFaultDriven } from './strategies.ts';
import type { BenchResult, CellResult } from './runner.ts';
import type { Summary } from './stats.ts';

/** A number with about three significant digits. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  if (a >= 0.01) return x.toFixed(3);
  return x.toPrecision(2);
}

export function fmtBytes(b: number): string {
  if (!Number.isFinite(b)) return '–';
  if (b >= 1 << 20) return `${fmt(b / (1 << 20))} MiB`;
  if (b >= 1 << 10) return `${fmt(b / (1 << 10))} KiB`;
  return `${b} B`;
}

const spread = (s: { min: number; max: number }): string => `${fmt(s.min)}–${fmt(s.max)}`;
const verdict = (met: boolean | null): string => (met === null ? 'info' : met ? 'met' : 'NOT met');

function targetText(t: { target: number | null; direction: string }): string {
  return t.target === null ? '' : `${t.direction} ${fmt(t.target)}`;
}

/** Rows of the goal table: the headline ratio, then its checks, indented. */
export function goalRows(r: BenchResult): string[][] {
  const rows: string[][] = [];
  for (const g of Object.values(r.goals) as GoalResult[]) {
    const title = g.unit ? `${g.title} (${g.unit})` : g.title;
    rows.push([
      g.id.toUpperCase(),
      title,
      g.error ? 'error' : fmt(g.ratio),
      g.error ? '' : spread(g),
      targetText(g),
      g.error ? `FAILED: ${g.error}` : verdict(g.met),
    ]);
    for (const c of g.checks as CheckResult[]) rows.push(['', `  ${c.title}`, fmt(c.ratio), spread(c), targetText(c), verdict(c.met)]);
  }
  return rows;
}

export const GOAL_HEADER = ['goal', 'ratio (numerator ÷ denominator)', 'median', 'min–max', 'target', ''];

/** The matrix: one row per workload, one column per strategy; median ms and the ratio to explicit copies. */
export function matrix(r: BenchResult): { strategies: string[]; rows: { workload: string; title: string; cells: CellResult[] }[] } {
  const strategies = [...new Set(r.workloads.map((c) => c.strategy))];
  const rows: { workload: string; title: string; cells: CellResult[] }[] = [];
  for (const c of r.workloads) {
    let row = rows.find((x) => x.workload === c.workload);
    if (!row) rows.push((row = { workload: c.workload, title: c.title, cells: [] }));
    row.cells.push(c);
  }
  return { strategies, rows };
}

function cellText(c: CellResult | undefined, explicit: CellResult | undefined): string {
  if (!c) return '';
  if (c.error) return 'FAILED';
  const rel = explicit && !explicit.error && c !== explicit ? ` (${fmt(c.ms.median / explicit.ms.median)}x)` : '';
  return `${fmt(c.ms.median)}${rel}`;
}

/** The columns of the fault-driven comparison: what users compare policies by (medians). */
export const POLICY_HEADER = ['workload', 'strategy', 'ms', 'fault rounds', 'pages moved', 'moved', 'evictions', 'prefetched'];

/**
 * With user policy sets: one row per workload and fault-driven strategy (the two built-in
 * replayable ones, then each policy set), with the median time, GPU fault rounds, pages and
 * bytes moved, pages evicted and pages prefetched. Empty without policy strategies.
 */
export function policyRows(r: BenchResult): string[][] {
  if (!r.workloads.some((c) => c.strategy.startsWith('policy:'))) return [];
  const { rows } = matrix(r);
  const out: string[][] = [];
  for (const row of rows) {
    row.cells
      .filter((c) => isFaultDriven(c.strategy))
      .forEach((c, i) => {
        const name = i === 0 ? row.workload : '';
        if (c.error) out.push([name, c.strategy, 'FAILED', '', '', '', '', '']);
        else
          out.push([
            name,
            c.strategy,
            fmt(c.ms.median),
            fmt(c.faultRounds.median),
            c.pagesMoved ? fmt(c.pagesMoved.median) : '–',
            fmtBytes(c.bytesMoved.median),
            c.evictions ? fmt(c.evictions.median) : '–',
            c.prefetchedPages ? fmt(c.prefetchedPages.median) : '–',
          ]);
      });
  }
  return out;
}

/** "policy:lru (eviction lru) from examples/policies/lru.ts" for each policy set that ran. */
export function policyLines(r: BenchResult): string[] {
  return (r.policies ?? []).map((p) => {
    const kinds = Object.entries(p.policies)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    return `${p.strategy}: ${kinds}${p.source ? ` (${p.source})` : ''}; the kinds it leaves out are the built-ins`;
  });
}

/** A share as a whole percentage ('–' when not a number). */
export function pct(x: number): string {
  return Number.isFinite(x) ? `${Math.round(x * 100)}` : '–';
}

/** Column names for the phases (the order of PHASES), then the rest. */
export const PHASE_HEADER = [...PHASES, 'other'];
/** The same, short, for the terminal. */
export const PHASE_SHORT = PHASE_HEADER.map((p) => ({ 'fault-readback': 'readback', 'copy-upload': 'upload', 'pt-upload': 'pt' })[p] ?? p);

/**
 * The phase breakdown: one row per workload and strategy that has phases (every strategy but
 * explicit copies), with the median ms and each phase's share of the wall time in percent.
 */
export function phaseRows(r: BenchResult): string[][] {
  const { rows } = matrix(r);
  const out: string[][] = [];
  for (const row of rows) {
    row.cells
      .filter((c) => c.phaseShares && !c.error)
      .forEach((c, i) => {
        const sh = c.phaseShares!;
        out.push([i === 0 ? row.workload : '', c.strategy, fmt(c.ms.median), ...PHASE_HEADER.map((p) => pct(sh[p as PhaseOrOther]))]);
      });
  }
  return out;
}

/** "copy-upload 41 %, other 30 %, gpu-wait 12 %": the largest shares. */
export function topSharesText(shares: Record<PhaseOrOther, number> | undefined, n = 3): string {
  if (!shares) return '';
  return topShares(shares, n)
    .map(([p, v]) => `${p} ${pct(v)} %`)
    .join(', ');
}

export const G5_HEADER = ['workload', 'replayable+prefetch ÷ explicit', 'target', '', 'largest shares of replayable+prefetch'];

/** The matrix's G5 column: triad, stencil and the gathers, with where the time went. */
export function g5Rows(r: BenchResult): string[][] {
  return (r.g5Matrix ?? []).map((g) => [g.workload, fmt(g.ratio), `<= ${fmt(g.target)}`, verdict(g.met), topSharesText(g.phaseShares)]);
}

export const THP_HEADER = ['size', 'huge → dev', '4 KiB → dev', 'huge → RAM', '4 KiB → RAM', 'huge ÷ 4 KiB (ms, both ways)'];

/** G12's table: one row per hmm-tests size, median ms each way and the ratio. */
export function thpRows(r: BenchResult): string[][] {
  const g = r.goals.g12;
  if (!g || g.error || !g.rows) return [];
  return g.rows.map((row) => {
    const f = row.figures;
    const m = (k: string): string => (f[k] ? fmt(f[k]!.median) : '–');
    return [row.label, m('hugeToDeviceMs'), m('regularToDeviceMs'), m('hugeToSystemMs'), m('regularToSystemMs'), m('ratio')];
  });
}

export const HOST_HEADER = ['phase', 'µs per serviced page', 'min–max'];

/** G11's profile: µs per serviced page in each phase of the 256-fault round (medians over the repetitions), then the host total. */
export function hostRows(r: BenchResult): string[][] {
  const g = r.goals.g11;
  if (!g || g.error || !g.rows) return [];
  const rows = g.rows.map((row) => {
    const f = row.figures.usPerPage;
    return [row.label, f ? fmt(f.median) : '–', f ? spread(f) : ''];
  });
  rows.push(['host total (all but gpu-wait)', fmt(g.ratio), spread(g)]);
  return rows;
}

/** A text table: the first two columns left-aligned, the others right-aligned, except those in `left`. */
function table(header: string[], rows: string[][], left: readonly number[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i >= 2 && !left.includes(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function headerLines(r: BenchResult): string[] {
  const s = r.sizes;
  return [
    `webgpu-hmm bench · ${r.runtime} · ${r.adapter}`,
    `${r.platform}`,
    `${r.options.quick ? 'quick, ' : ''}stream ${fmtBytes(s.streamBytes)}, arrays ${fmtBytes(s.arrayBytes)}, device pools ${fmtBytes(s.mainPoolBytes)} (${s.mainPoolBuffers} buffer${s.mainPoolBuffers > 1 ? 's' : ''}), ${fmtBytes(s.smallPoolBytes)} and ${fmtBytes(s.evictionPoolBytes ?? NaN)} (G7/G8); ` +
      `fault buffer ${r.faultBufferPages ?? 'none'}; ${r.options.reps} repetitions (median, min–max), ${r.options.warmup} warm-up; ${(r.durationMs / 1000).toFixed(1)} s`,
  ];
}

/** Everything as terminal text. */
export function formatText(r: BenchResult): string {
  const out: string[] = [...headerLines(r), ''];
  if (Object.keys(r.goals).length > 0) {
    const goals = Object.values(r.goals) as GoalResult[];
    const met = goals.filter((g) => g.met).length;
    out.push(`Goals (perf-anchors §6, §7): ${met} of ${goals.length} met`, table(GOAL_HEADER, goalRows(r), [5]), '');
    const thp = thpRows(r);
    if (thp.length > 0) out.push('G12 by size (hmm-tests benchmark_thp_migration), median ms', table(THP_HEADER, thp), '');
    const host = hostRows(r);
    if (host.length > 0) out.push("G11 phase by phase: µs per serviced page in the 256-fault round (each phase's median)", table(HOST_HEADER, host, [0]), '');
  }
  if (r.workloads.length > 0) {
    const { strategies, rows } = matrix(r);
    out.push('Workloads: median ms from inputs in CPU memory to the result in CPU memory (× explicit copies)');
    out.push(
      table(
        ['workload', ...strategies],
        rows.map((row) => {
          const explicit = row.cells.find((c) => c.strategy === 'explicit');
          return [
            row.workload,
            ...strategies.map((s) =>
              cellText(
                row.cells.find((c) => c.strategy === s),
                explicit,
              ),
            ),
          ];
        }),
      ),
    );
    const failed = r.workloads.filter((c) => c.error);
    for (const c of failed) out.push(`  FAILED ${c.workload} / ${c.strategy}: ${c.error}`);
    const prow = phaseRows(r);
    if (prow.length > 0) {
      out.push(
        '',
        'Where the time goes: each phase of fault service and migration as % of the run (Stats.phaseMs); other = launches, CPU reads and writes, the rest',
      );
      out.push(table(['workload', 'strategy', 'ms', ...PHASE_SHORT], prow));
    }
    const g5 = g5Rows(r);
    if (g5.length > 0) {
      out.push('', 'G5 on the matrix: replayable+prefetch ÷ explicit copies (median ms), and its largest phase shares');
      out.push(table(G5_HEADER, g5, [3, 4]));
    }
    const prows = policyRows(r);
    if (prows.length > 0) {
      out.push(
        '',
        'Fault-driven strategies and policy sets: medians per run (GPU fault rounds, pages and bytes moved both ways, pages evicted and prefetched)',
      );
      for (const line of policyLines(r)) out.push(`  ${line}`);
      out.push(table(POLICY_HEADER, prows));
    }
  }
  return out.join('\n');
}

// ---------------------------------------------------------------------------- HTML

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

const td = (s: string, cls = ''): string => `<td${cls ? ` class="${cls}"` : ''}>${escapeHtml(s)}</td>`;
const th = (s: string, cls = ''): string => `<th${cls ? ` class="${cls}"` : ''}>${escapeHtml(s)}</th>`;

function summaryTitle(s: Summary, unit: string): string {
  return `median ${fmt(s.median)} ${unit}, min ${fmt(s.min)}, max ${fmt(s.max)} (n = ${s.n})`;
}

/** The goal table and the workload matrix as HTML (the perf page and the report). */
export function tablesHtml(r: BenchResult): string {
  const parts: string[] = [];
  if (Object.keys(r.goals).length > 0) {
    const rows = (Object.values(r.goals) as GoalResult[]).map((g) => {
      const status = g.error ? 'fail' : g.met ? 'met' : 'unmet';
      const checks = g.checks
        .map(
          (c) =>
            `<tr class="check">${td('')}${td(c.title)}${td(fmt(c.ratio), 'num')}${td(spread(c), 'num')}${td(targetText(c), 'num')}${td(verdict(c.met), c.met === null ? '' : c.met ? 'met' : 'unmet')}</tr>`,
        )
        .join('');
      const figures = Object.entries(g.figures)
        .map(([k, f]) => `${k}: ${fmt(f.median)} ${f.unit} [${spread(f)}]`)
        .join('; ');
      const info = g.info
        ? Object.entries(g.info)
            .map(([k, v]) => `${k}: ${String(v)}`)
            .join('; ')
        : '';
      const detail = `${g.definition}. Anchor: ${g.anchor}.${g.notes.length ? ` ${g.notes.join('. ')}.` : ''}${figures ? ` Figures: ${figures}.` : ''}${info ? ` Run: ${info}.` : ''}`;
      return (
        `<tr class="goal" data-goal="${g.id}" title="${escapeHtml(detail)}">${td(g.id.toUpperCase())}${td(g.unit ? `${g.title} (${g.unit})` : g.title)}${td(g.error ? 'error' : fmt(g.ratio), 'num')}${td(g.error ? '' : spread(g), 'num')}` +
        `${td(targetText(g), 'num')}${td(g.error ? `failed: ${g.error}` : verdict(g.met), status)}</tr>${checks}`
      );
    });
    parts.push(
      `<table class="table bench-goals"><thead><tr>${GOAL_HEADER.map((h, i) => th(h, i >= 2 ? 'num' : '')).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`,
    );
    const thp = thpRows(r);
    if (thp.length > 0)
      parts.push(
        `<table class="table bench-thp"><caption>G12 by size (hmm-tests benchmark_thp_migration), median ms</caption><thead><tr>${THP_HEADER.map((h, i) => th(h, i >= 1 ? 'num' : '')).join('')}</tr></thead><tbody>${thp
          .map((row) => `<tr>${row.map((c, i) => td(c, i >= 1 ? 'num' : '')).join('')}</tr>`)
          .join('')}</tbody></table>`,
      );
    const host = hostRows(r);
    if (host.length > 0)
      parts.push(
        `<table class="table bench-host"><caption>G11 phase by phase: µs per serviced page in the 256-fault round (each phase's median)</caption><thead><tr>${HOST_HEADER.map((h, i) => th(h, i >= 1 ? 'num' : '')).join('')}</tr></thead><tbody>${host
          .map((row) => `<tr>${row.map((c, i) => td(c, i >= 1 ? 'num' : '')).join('')}</tr>`)
          .join('')}</tbody></table>`,
      );
  }
  if (r.workloads.length > 0) {
    const { strategies, rows } = matrix(r);
    const body = rows
      .map((row) => {
        const explicit = row.cells.find((c) => c.strategy === 'explicit');
        const cells = strategies.map((s) => {
          const c = row.cells.find((x) => x.strategy === s);
          const extra = c?.evictions ? `, evictions ${fmt(c.evictions.median)}` : '';
          const title = c
            ? c.error
              ? c.error
              : `${summaryTitle(c.ms, 'ms')}; launches ${fmt(c.launches.median)}, fault rounds ${fmt(c.faultRounds.median)}, moved ${fmtBytes(c.bytesMoved.median)}${extra}`
            : '';
          return `<td class="num${c?.error ? ' fail' : ''}" title="${escapeHtml(title)}">${escapeHtml(cellText(c, explicit))}</td>`;
        });
        return `<tr><td title="${escapeHtml(row.title)}">${escapeHtml(row.workload)}</td>${cells.join('')}</tr>`;
      })
      .join('');
    parts.push(
      `<table class="table bench-matrix"><thead><tr>${th('workload')}${strategies.map((s) => th(s, 'num')).join('')}</tr></thead><tbody>${body}</tbody></table>`,
    );
    const phr = phaseRows(r);
    if (phr.length > 0)
      parts.push(
        `<table class="table bench-phases"><caption>Where the time goes: % of each run in each phase (Stats.phaseMs)</caption><thead><tr>${['workload', 'strategy', 'ms', ...PHASE_HEADER].map((h, i) => th(h, i >= 2 ? 'num' : '')).join('')}</tr></thead><tbody>${phr
          .map((row) => `<tr${row[0] ? ' class="group"' : ''}>${row.map((c, i) => td(c, i >= 2 ? 'num' : '')).join('')}</tr>`)
          .join('')}</tbody></table>`,
      );
    const g5 = g5Rows(r);
    if (g5.length > 0)
      parts.push(
        `<table class="table bench-g5"><caption>G5 on the matrix: replayable+prefetch ÷ explicit copies, with its largest phase shares</caption><thead><tr>${G5_HEADER.map((h, i) => th(h, i >= 1 && i <= 2 ? 'num' : '')).join('')}</tr></thead><tbody>${g5
          .map((row) => `<tr>${row.map((c, i) => td(c, i >= 1 && i <= 2 ? 'num' : i === 3 ? (c === 'met' ? 'met' : 'unmet') : '')).join('')}</tr>`)
          .join('')}</tbody></table>`,
      );
    const prows = policyRows(r);
    if (prows.length > 0) {
      const lines = policyLines(r)
        .map((l) => `<p class="muted bench-policy-line">${escapeHtml(l)}</p>`)
        .join('');
      const pbody = prows
        .map(
          (row) =>
            `<tr${row[0] ? ' class="group"' : ''} data-strategy="${escapeHtml(row[1]!)}">${row.map((cell, i) => td(cell, i >= 2 ? 'num' : '')).join('')}</tr>`,
        )
        .join('');
      parts.push(
        `${lines}<table class="table bench-policies"><thead><tr>${POLICY_HEADER.map((h, i) => th(h, i >= 2 ? 'num' : '')).join('')}</tr></thead><tbody>${pbody}</tbody></table>`,
      );
    }
  }
  return parts.join('\n');
}

/** JSON of the result (NaN becomes null). */
export function toJson(r: BenchResult): string {
  return JSON.stringify(r, null, 2);
}
