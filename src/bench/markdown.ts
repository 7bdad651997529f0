// docs/PERFORMANCE.md's figures rendered from a bench JSON (`npm run bench -- --doc FILE`), so
// the numbers in the document are the ones a run of the code produced, never copied by hand.
// The document marks each generated block with `<!-- bench:NAME -->` … `<!-- /bench:NAME -->`;
// fillDoc replaces what lies between with the block rendered from the JSON (Node, and Chromium
// when the run had --browser) and leaves the prose alone. An optional second JSON (`--doc-before`,
// the same command on the code before a change) adds a "before" column to the goal table.
// Pure string building: the CLI reads and writes the files.

import { PHASES, type PhaseOrOther } from './figures.ts';
import type { CheckResult, GoalResult } from './goals.ts';
import { fmt, fmtBytes, matrix, pct, topSharesText } from './report.ts';
import type { BenchResult, CellResult } from './runner.ts';
import type { Summary } from './stats.ts';

/** A bench JSON as the CLI writes it: the Node result, and the Chromium one under `browser` with --browser. */
export type BenchJson = BenchResult & { browser?: BenchResult; source?: { commit: string; dirty: boolean } };

/** The fewest repetitions of a run whose figures the document may call final (issue 15 item 9). */
export const FINAL_REPS = 10;

/** What the document prints where a run has no such figure (a goal not measured, no Chromium run). */
const NONE = '–';

export class DocError extends Error {
  override name = 'DocError';
}

// JSON turns NaN into null: read every number through this.
const num = (x: unknown): number => (typeof x === 'number' ? x : NaN);
const spread = (s: { min: unknown; max: unknown }): string => `${fmt(num(s.min))}–${fmt(num(s.max))}`;
const withSpread = (s: { median?: unknown; ratio?: unknown; min: unknown; max: unknown }): string => {
  const m = num(s.ratio ?? s.median);
  return Number.isFinite(m) ? `${fmt(m)} (${spread(s)})` : NONE;
};
// targets are exact numbers (2.7, 1/N): three significant digits, no padding zeros
const target = (t: { target: number | null; direction: string }): string =>
  t.target === null ? '' : `${t.direction === '>=' ? '≥' : '≤'} ${String(Number(t.target.toPrecision(3)))}`;
const yes = (met: boolean | null | undefined): string => (met === null || met === undefined ? '' : met ? '**yes**' : 'no');
/** A count as a whole number (2,560), anything else with about three significant digits. */
const figure = (x: number): string => (Number.isInteger(x) ? x.toLocaleString('en-US') : fmt(x));
const cellEscape = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function mdTable(header: string[], rows: string[][], numeric: (i: number) => boolean = (i) => i >= 2): string {
  const align = header.map((_, i) => (numeric(i) ? '---:' : '---'));
  const line = (cells: string[]): string => `| ${cells.map(cellEscape).join(' | ')} |`;
  return [line(header), `|${align.join('|')}|`, ...rows.map(line)].join('\n');
}

const goalOf = (r: BenchResult | undefined, id: string): GoalResult | undefined => (r?.goals as Record<string, GoalResult> | undefined)?.[id];
const goalIds = (r: BenchJson): string[] => Object.keys(r.goals);

/** "Node 20.19.1 linux/x64, adapter …; 10 repetitions, 1 warm-up; 512 s". */
function runLine(r: BenchResult): string {
  return `${r.runtime === 'browser' ? 'Chromium' : 'Node'}: ${r.platform}; adapter "${r.adapter}"; ${r.options.reps} repetition${r.options.reps === 1 ? '' : 's'}, ${r.options.warmup} warm-up; ${fmt(r.durationMs / 1000)} s`;
}

/** The run the figures come from: command facts, code, and whether it is the final run. */
function runBlock(r: BenchJson): string {
  const s = r.sizes;
  const lines = [
    `Figures from the run of ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC${r.source ? `, code at ${r.source.commit.slice(0, 10)}${r.source.dirty ? ' with uncommitted changes' : ''}` : ''}:`,
    '',
    `- ${runLine(r)}`,
    ...(r.browser ? [`- ${runLine(r.browser)}`] : ['- Chromium: not in this run (no --browser)']),
    `- sizes: ${r.options.quick ? '--quick, ' : ''}stream ${fmtBytes(s.streamBytes)}, arrays ${fmtBytes(s.arrayBytes)}, pools ${fmtBytes(s.mainPoolBytes)} (main), ${fmtBytes(s.smallPoolBytes)} (matrix oversubscription), ${fmtBytes(num(s.evictionPoolBytes))} (G7/G8); fault buffer ${r.faultBufferPages ?? NONE} faults a round`,
  ];
  const reps = Math.min(r.options.reps, r.browser?.options.reps ?? Infinity);
  if (reps < FINAL_REPS || !r.browser || (r.source?.dirty ?? false))
    lines.push(
      '',
      `**(final run pending)**: this is a check run (${reps} repetition${reps === 1 ? '' : 's'}${r.browser ? '' : ', Node only'}${r.source?.dirty ? ', uncommitted code' : ''}); \`scripts/perf-run.sh\` makes the final one (at least ${FINAL_REPS} repetitions, Node and Chromium) and renders this file from it.`,
    );
  return lines.join('\n');
}

/** The goal table: headline ratio per runtime, median (min–max) and met; with `before`, its medians beside. */
function goalsBlock(r: BenchJson, before?: BenchJson): string {
  const header = ['#', 'Goal', 'Target', 'Node: median (min–max)', 'met', 'Chromium: median (min–max)', 'met'];
  if (before) header.push('Node before', ...(before.browser ? ['Chromium before'] : []));
  const rows = goalIds(r).map((id) => {
    const g = goalOf(r, id)!;
    const b = goalOf(r.browser, id);
    const title = g.unit ? `${g.title} (${g.unit})` : g.title;
    const cells = [
      id.toUpperCase(),
      title,
      target(g),
      g.error ? `failed: ${g.error}` : withSpread(g),
      g.error ? '' : yes(g.met),
      !b ? NONE : b.error ? `failed: ${b.error}` : withSpread(b),
      !b || b.error ? '' : yes(b.met),
    ];
    if (before) {
      const med = (x: GoalResult | undefined): string => (x && !x.error ? fmt(num(x.ratio)) : NONE);
      cells.push(med(goalOf(before, id)), ...(before.browser ? [med(goalOf(before.browser, id))] : []));
    }
    return cells;
  });
  const met = (x: BenchResult | undefined): string => {
    if (!x) return '';
    const gs = Object.values(x.goals) as GoalResult[];
    const ids = gs.filter((g) => g.met).map((g) => g.id.toUpperCase());
    return `${ids.length} of ${gs.length} (${ids.join(', ') || 'none'})`;
  };
  const lines = [mdTable(header, rows, (i) => i >= 3), '', `Met: Node ${met(r)}${r.browser ? `; Chromium ${met(r.browser)}` : ''}.`];
  if (before) {
    const at = before.source ? ` (code at ${before.source.commit.slice(0, 10)})` : '';
    lines.push(
      '',
      (before.schema as string) === 'webgpu-hmm-bench/1'
        ? `Before: the same command on the code before issue 15${at}, ${before.options.reps} repetitions; it had no G11 or G12, and measured G4–G7 without the fault-buffer model, G6 over one launch, G9 against 0.25 and G10 as a whole dispatch, so those columns compare different definitions.`
        : `Before: the same command on earlier code${at}, ${before.options.reps} repetitions.`,
    );
  }
  return lines.join('\n');
}

/** Every check beside its goal's headline, both runtimes. */
function checksBlock(r: BenchJson): string {
  const rows: string[][] = [];
  for (const id of goalIds(r)) {
    const g = goalOf(r, id)!;
    const b = goalOf(r.browser, id);
    for (const c of g.checks as CheckResult[]) {
      const cb = b?.checks.find((x) => x.key === c.key);
      rows.push([id.toUpperCase(), c.title, target(c), withSpread(c), yes(c.met), cb ? withSpread(cb) : NONE, cb ? yes(cb.met) : '']);
    }
  }
  return mdTable(['#', 'Check', 'Target', 'Node', 'met', 'Chromium', 'met'], rows, (i) => i >= 3);
}

/** One goal's raw figures and run facts, Node then Chromium: what its section quotes. */
function figuresBlock(r: BenchJson, id: string): string {
  const one = (x: BenchResult | undefined, name: string): string | undefined => {
    const g = goalOf(x, id);
    if (!g) return undefined;
    if (g.error) return `- ${name}: failed: ${g.error}`;
    const figs = Object.entries(g.figures).map(([k, f]) => {
      const unit = f.unit === 'ms' || f.unit === 'µs/page' ? ` ${f.unit}` : f.unit === 'bytes' ? ' B' : '';
      const [med, lo, hi] = [f.median, f.min, f.max].map((x) => figure(num(x)));
      return `${k} ${med}${unit}${lo === hi ? '' : ` (${lo}–${hi})`}`;
    });
    const info = g.info ? Object.entries(g.info).map(([k, v]) => `${k} ${typeof v === 'number' ? figure(v) : String(v)}`) : [];
    return `- ${name}: ${figs.join('; ')}${info.length ? `. Run: ${info.join('; ')}` : ''}.`;
  };
  const lines = [one(r, 'Node'), one(r.browser, 'Chromium')].filter((l): l is string => l !== undefined);
  return lines.length > 0 ? lines.join('\n') : `${id.toUpperCase()} was not measured in this run.`;
}

/** Any goal's table rows (G4: each side's ms per phase): one column per figure and runtime, median ms. */
function rowsBlock(r: BenchJson, id: string): string {
  const g = goalOf(r, id);
  if (!g?.rows || g.error || g.rows.length === 0) return `${id.toUpperCase()} has no table in this run.`;
  const b = goalOf(r.browser, id);
  const keys = Object.keys(g.rows[0]!.figures);
  const unit = (k: string): string => g.rows![0]!.figures[k]!.unit;
  const header = ['', ...keys.map((k) => `Node ${k} (${unit(k)})`), ...(b?.rows ? keys.map((k) => `Chromium ${k} (${unit(k)})`) : [])];
  const med = (f: Summary | undefined): string => (f ? fmt(num(f.median)) : NONE);
  const rows = g.rows.map((row) => {
    const br = b?.rows?.find((x) => x.key === row.key);
    return [row.label, ...keys.map((k) => med(row.figures[k])), ...(b?.rows ? keys.map((k) => med(br?.figures[k])) : [])];
  });
  return mdTable(header, rows, (i) => i >= 1);
}

/** G11 phase by phase: µs per serviced page in each phase of the 256-fault round. */
function g11Block(r: BenchJson): string {
  const g = goalOf(r, 'g11');
  if (!g || g.error || !g.rows) return 'G11 was not measured in this run.';
  const b = goalOf(r.browser, 'g11');
  const rows = g.rows.map((row) => {
    const br = b?.rows?.find((x) => x.key === row.key);
    return [row.label, withSpread(row.figures.usPerPage!), br ? withSpread(br.figures.usPerPage!) : NONE];
  });
  const total = (x: GoalResult | undefined): string => (x && !x.error ? withSpread(x) : NONE);
  rows.push(['**host total (all but gpu-wait)**', total(g), total(b)]);
  return mdTable(['phase', 'Node µs/page', 'Chromium µs/page'], rows, (i) => i >= 1);
}

/** G12 by hmm-tests size: ms each way, each kind, and the ratio. */
function g12Block(r: BenchJson): string {
  const one = (x: BenchResult | undefined, name: string): string | undefined => {
    const g = goalOf(x, 'g12');
    if (!g?.rows || g.error) return undefined;
    const m = (f: Record<string, Summary & { unit: string }>, k: string): string => (f[k] ? fmt(num(f[k]!.median)) : NONE);
    const rows = g.rows.map((row) => [
      row.label,
      m(row.figures, 'hugeToDeviceMs'),
      m(row.figures, 'regularToDeviceMs'),
      m(row.figures, 'hugeToSystemMs'),
      m(row.figures, 'regularToSystemMs'),
      row.figures.ratio ? withSpread(row.figures.ratio) : NONE,
    ]);
    return `${name}, median ms:\n\n${mdTable(['size', 'huge → device', '4 KiB → device', 'huge → RAM', '4 KiB → RAM', 'huge ÷ 4 KiB, both ways'], rows, (i) => i >= 1)}`;
  };
  const parts = [one(r, 'Node'), one(r.browser, 'Chromium')].filter((p): p is string => p !== undefined);
  return parts.length > 0 ? parts.join('\n\n') : 'G12 was not measured in this run.';
}

/** The workload × strategy matrix: median ms and the ratio to explicit copies. */
function matrixTable(r: BenchResult): string {
  const { strategies, rows } = matrix(r);
  const body = rows.map((row) => {
    const explicit = row.cells.find((c) => c.strategy === 'explicit');
    return [
      `${row.workload}`,
      ...strategies.map((s) => {
        const c = row.cells.find((x) => x.strategy === s);
        if (!c) return '';
        if (c.error) return 'FAILED';
        const ms = num(c.ms.median);
        return explicit && c !== explicit && !explicit.error ? `${fmt(ms)} (${fmt(ms / num(explicit.ms.median))}×)` : fmt(ms);
      }),
    ];
  });
  return mdTable(['workload', ...strategies], body, (i) => i >= 1);
}

function matrixBlock(r: BenchJson): string {
  if (r.workloads.length === 0) return 'The workloads were not run (--only goals).';
  const parts = [`Node, median ms (÷ explicit):\n\n${matrixTable(r)}`];
  if (r.browser && r.browser.workloads.length > 0) parts.push(`Chromium, median ms (÷ explicit):\n\n${matrixTable(r.browser)}`);
  return parts.join('\n\n');
}

/** Where the time goes: each phase's share of each fault-driven run, in percent. */
function phaseTable(r: BenchResult): string {
  const { rows } = matrix(r);
  const out: string[][] = [];
  for (const row of rows)
    row.cells
      .filter((c: CellResult) => c.phaseShares && !c.error)
      .forEach((c, i) =>
        out.push([
          i === 0 ? row.workload : '',
          c.strategy,
          fmt(num(c.ms.median)),
          ...[...PHASES, 'other'].map((p) => pct(num(c.phaseShares![p as PhaseOrOther]))),
        ]),
      );
  return mdTable(['workload', 'strategy', 'ms', ...PHASES, 'other'], out);
}

function phasesBlock(r: BenchJson): string {
  if (r.workloads.length === 0) return 'The workloads were not run (--only goals).';
  const parts = [`Node, % of each run's wall time:\n\n${phaseTable(r)}`];
  if (r.browser && r.browser.workloads.length > 0) parts.push(`Chromium, % of each run's wall time:\n\n${phaseTable(r.browser)}`);
  return parts.join('\n\n');
}

/** The matrix's G5 column: replayable+prefetch ÷ explicit on triad, stencil and the gathers, with the largest phase shares. */
function g5Block(r: BenchJson): string {
  const rows = (r.g5Matrix ?? []).map((g) => {
    const b = r.browser?.g5Matrix?.find((x) => x.workload === g.workload);
    return [
      g.workload,
      fmt(num(g.ratio)),
      yes(g.met),
      topSharesText(g.phaseShares),
      b ? fmt(num(b.ratio)) : NONE,
      b ? yes(b.met) : '',
      b ? topSharesText(b.phaseShares) : '',
    ];
  });
  if (rows.length === 0) return 'The workloads were not run (--only goals).';
  return mdTable(
    ['workload (target ≤ 4)', 'Node', 'met', 'Node: largest shares', 'Chromium', 'met', 'Chromium: largest shares'],
    rows,
    (i) => i === 1 || i === 4,
  );
}

/** Every block a document may name, rendered from one run (and `before` for the goal table's extra columns). */
export function renderBlocks(r: BenchJson, before?: BenchJson): Map<string, string> {
  const blocks = new Map<string, string>([
    ['run', runBlock(r)],
    ['goals', goalsBlock(r, before)],
    ['checks', checksBlock(r)],
    ['g11', g11Block(r)],
    ['g12', g12Block(r)],
    ['matrix', matrixBlock(r)],
    ['phases', phasesBlock(r)],
    ['g5', g5Block(r)],
  ]);
  for (const id of goalIds(r)) {
    blocks.set(`figures:${id}`, figuresBlock(r, id));
    blocks.set(`rows:${id}`, rowsBlock(r, id));
  }
  return blocks;
}

const MARKER = /<!-- bench:([a-z0-9:]+) -->\n[\s\S]*?<!-- \/bench:\1 -->/g;

/** The block names a document marks, in order. */
export function docBlockNames(doc: string): string[] {
  return [...doc.matchAll(MARKER)].map((m) => m[1]!);
}

/**
 * The document with every marked block replaced by its rendering from `r`. A marked name the
 * run has no block for is a DocError naming it (a typo would otherwise keep stale figures);
 * blocks the document does not mark are not inserted.
 */
export function fillDoc(doc: string, r: BenchJson, before?: BenchJson): string {
  const blocks = renderBlocks(r, before);
  const unknown = docBlockNames(doc).filter((n) => !blocks.has(n));
  if (unknown.length > 0)
    throw new DocError(
      `the document marks block(s) ${unknown.map((n) => `'${n}'`).join(', ')} that the run has none of (there are ${[...blocks.keys()].join(', ')})`,
    );
  return doc.replace(MARKER, (_, name: string) => `<!-- bench:${name} -->\n${blocks.get(name)!}\n<!-- /bench:${name} -->`);
}

/**
 * Check that a parsed JSON is a bench result this renderer reads: schema 2 (G11, G12, phases)
 * for the run itself; a `before` run may be schema 1 too (only its goal medians are read).
 */
export function asBenchJson(x: unknown, file: string, role: 'run' | 'before' = 'run'): BenchJson {
  const r = x as Partial<BenchJson> | null;
  if (!r || typeof r !== 'object' || typeof r.schema !== 'string' || typeof r.goals !== 'object')
    throw new DocError(`${file}: not a bench JSON (no schema or goals field)`);
  const ok = role === 'before' ? ['webgpu-hmm-bench/1', 'webgpu-hmm-bench/2'] : ['webgpu-hmm-bench/2'];
  if (!ok.includes(r.schema))
    throw new DocError(`${file}: schema ${r.schema}; this renderer reads ${ok.join(' or ')} here (rerun the bench with the current code)`);
  return r as BenchJson;
}
