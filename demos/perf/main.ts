// The perf page: the bench runner of `npm run bench` (src/bench/runner.ts), in the browser.
// Options come from the URL (?quick=1&mib=4&reps=3&only=goals; quick sizes by default) and go
// through the CLI's own parser. Shows a progress bar, then the same goal table, workload
// matrix and uPlot plots as the HTML report, and ends with #result (data-status). The CLI's
// --browser mode reads window.__benchResult and follows the "bench-progress" console lines.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { argsFromQuery, parseArgs, type BenchOptions } from '../../src/bench/args.ts';
import { drawPlots } from '../../src/bench/plots.ts';
import { headerLines, tablesHtml, toJson } from '../../src/bench/report.ts';
import { runBench, type BenchResult, type Progress } from '../../src/bench/runner.ts';
import { checkEnvironment, describeError, reportUnhandledErrors, setResult } from '../common.ts';

declare global {
  interface Window {
    /** The finished result as JSON, for the CLI's --browser mode and tests. */
    __benchResult?: string;
  }
}

/** The options from the URL; quick unless ?quick=0. Options that only make sense on the command line are refused. */
function options(): BenchOptions {
  const params = new URLSearchParams(location.search);
  for (const k of ['json', 'html', 'browser', 'help'])
    if (params.has(k)) throw new Error(`?${k}= is a command-line option; this page takes quick, mib, reps, warmup and only`);
  for (const [k, v] of [...params]) if (v === '') params.delete(k); // the form's "default" choices
  if (!params.has('quick')) params.set('quick', '1');
  return parseArgs(argsFromQuery(params));
}

/** Reflect the options in the form, so "Run again" repeats them. */
function showOptions(o: BenchOptions): void {
  const set = (name: string, value: string): void => {
    const sel = document.querySelector<HTMLSelectElement>(`select[name=${name}]`);
    if (sel && [...sel.options].some((x) => x.value === value)) sel.value = value;
  };
  set('quick', o.quick ? '1' : '0');
  set('mib', o.mib === undefined ? '' : String(o.mib));
  set('reps', o.reps === undefined ? '' : String(o.reps));
  set('only', o.only);
}

function showProgress(p: Progress): void {
  const bar = document.getElementById('progress') as HTMLProgressElement;
  bar.max = Math.max(1, p.total);
  bar.value = p.done;
  document.getElementById('progress-label')!.textContent = `${p.done} / ${p.total} · ${p.label}`;
  console.log(`bench-progress ${JSON.stringify(p)}`);
}

function show(r: BenchResult): void {
  document.getElementById('header')!.replaceChildren(...headerLines(r).map((l) => Object.assign(document.createElement('p'), { textContent: l })));
  const html = tablesHtml(r);
  // tablesHtml escapes every string it interpolates
  const holder = document.createElement('div');
  holder.innerHTML = html;
  const goals = holder.querySelector('table.bench-goals');
  const thp = holder.querySelector('table.bench-thp');
  const host = holder.querySelector('table.bench-host');
  const matrix = holder.querySelector('table.bench-matrix');
  const phases = [holder.querySelector('table.bench-phases'), holder.querySelector('table.bench-g5')].filter((t): t is Element => t !== null);
  if (goals) document.getElementById('goals')!.replaceChildren(...[goals, thp, host].filter((t): t is Element => t !== null));
  if (matrix) document.getElementById('matrix')!.replaceChildren(matrix);
  if (phases.length > 0) document.getElementById('phases')!.replaceChildren(...phases);
  const plots = document.getElementById('plots')!;
  plots.replaceChildren();
  drawPlots(uPlot, plots, r, Math.max(320, Math.min(1000, plots.clientWidth || 900)));
  document.getElementById('json')!.textContent = toJson(r);
}

async function main(): Promise<void> {
  reportUnhandledErrors();
  if (!checkEnvironment()) {
    setResult('error: this page cannot run here (see above)', 'error');
    return;
  }
  try {
    const opts = options();
    showOptions(opts);
    setResult('running…', 'running');
    const r = await runBench(opts, showProgress);
    show(r);
    window.__benchResult = toJson(r);
    const goals = Object.values(r.goals);
    const failed = [...goals.filter((g) => g?.error), ...r.workloads.filter((c) => c.error)].length;
    const met = goals.filter((g) => g?.met).length;
    const summary = goals.length > 0 ? `${met} of ${goals.length} goals met` : `${new Set(r.workloads.map((c) => c.workload)).size} workloads measured`;
    setResult(
      failed > 0 ? `result: ${summary}; ${failed} measurement(s) failed` : `result: ${summary} (${(r.durationMs / 1000).toFixed(0)} s)`,
      failed > 0 ? 'fail' : 'pass',
    );
  } catch (e) {
    console.error(e);
    setResult(`error: ${describeError(e)}`, 'error');
  }
}

void main();
