// The self-contained HTML report (--html FILE): the tables and the uPlot plots of one or more
// results (Node, and Chromium with --browser), with uPlot's JS and CSS and the plotting code
// inlined, and the results embedded as JSON. Opens from disk, no server, no network.

import { escapeHtml, headerLines, tablesHtml } from './report.ts';
import type { BenchResult } from './runner.ts';

export interface HtmlAssets {
  uplotJs: string;
  uplotCss: string;
  /** plots.ts as CommonJS JavaScript (it assigns exports.drawPlots). */
  plotJs: string;
}

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; padding: 0 1rem; color: #1d1d1f; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.muted { color: #666; }
table.table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
.table th, .table td { padding: .25rem .6rem; border-bottom: 1px solid #e3e3e3; text-align: left; vertical-align: top; }
.table .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.table tr.check td { color: #555; font-size: 90%; }
.table td.met { color: #1a7f37; font-weight: 600; } .table td.unmet { color: #b3261e; font-weight: 600; } .table td.fail { color: #b3261e; }
figure.bench-plot { margin: 1.5rem 0; } figure.bench-plot figcaption { font-weight: 600; }
.table caption { text-align: left; font-weight: 600; padding: .25rem 0; }
`;

/** Keep embedded JSON and scripts from closing their <script> element early. */
const scriptSafe = (s: string): string => s.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');

export function renderHtmlReport(results: BenchResult[], assets: HtmlAssets): string {
  const sections = results
    .map(
      (r, i) => `<section>
<h2>${escapeHtml(r.runtime === 'browser' ? 'Chromium' : 'Node (Dawn)')}</h2>
${headerLines(r)
  .map((l) => `<p class="muted">${escapeHtml(l)}</p>`)
  .join('\n')}
${tablesHtml(r)}
<div class="plots" id="plots-${i}"></div>
</section>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>webgpu-hmm bench · ${escapeHtml(results[0]?.adapter ?? '')}</title>
<style>${assets.uplotCss}</style>
<style>${STYLE}</style>
</head>
<body>
<h1>webgpu-hmm performance comparison</h1>
<p class="muted">Goals G1–G12 as perf-anchors §6 and §7 define them: each a ratio of two figures measured side by side in one run (G11: host µs per page), the median of the repetitions with min and max. Hover a row for its definition, anchor, raw figures and how it was run. Below the workload matrix: where each run's time goes, phase by phase (Stats.phaseMs), and the matrix's G5 column with its largest phase shares.</p>
${sections}
<script type="application/json" id="bench-results">${scriptSafe(JSON.stringify(results))}</script>
<script>${scriptSafe(assets.uplotJs)}</script>
<script>
var exports = {};
${scriptSafe(assets.plotJs)}
(function () {
  var results = JSON.parse(document.getElementById('bench-results').textContent);
  var width = Math.min(1060, document.body.clientWidth - 20);
  results.forEach(function (r, i) { exports.drawPlots(uPlot, document.getElementById('plots-' + i), r, width); });
})();
</script>
</body>
</html>
`;
}
