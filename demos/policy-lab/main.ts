// Policy lab: pick a workload and policy sets (the built-ins, examples/policies/*.ts, or one
// typed into the editor), run each on the GPU on a fresh system of the same size (the set as
// the device's policy), and compare them side by side: a table and bar plots of time, fault
// rounds, bytes moved, evictions and prefetches from sys.stats(); a residency map per set after
// its run; and, for a page clicked in a map, its sys.explain(mm, va) history.
//
// URL parameters (the page writes them back when it runs): ?workload=stream|chase|strided,
// ?policies=built-in,lru (ids, as the checkboxes' values), ?evict=4096|65536. With policies
// given, the page runs on load.

import { clockEviction, createSystem, HmmError, PAGE_SIZE, type AddressSpace, type PolicySet, type System } from 'webgpu-hmm';
import { checkEnvironment, describeError, reportUnhandledErrors, setResult, showSource } from '../common.ts';
import { ResidencyMap } from '../widgets/residencyMap.ts';
import { describeSet, EDITOR_EXAMPLE, EDITOR_ID, loadEditorPolicy, policyOptions, type PolicyOption } from './policies.ts';
import { DEVICE_BYTES, SYSTEM_RAM_BYTES, WORKLOADS, type LabWorkload } from './workloads.ts';

const MiB = 1 << 20;
const COLOURS = ['#1a73e8', '#e8710a', '#188038', '#a142f4', '#d93025', '#12b5cb', '#9e6a03', '#5f6368'];

/** What one run measured, over the workload's GPU phase. */
interface Figures {
  ms: number;
  faultRounds: number;
  launches: number;
  pagesMoved: number;
  bytesMoved: number;
  evictions: number;
  prefetchedPages: number;
}

/** One policy set's run: its system stays alive after it, for the map and explain. */
interface Run {
  option: PolicyOption;
  colour: string;
  name: string;
  kinds: string;
  status: 'waiting' | 'running' | 'pass' | 'fail' | 'error';
  message: string;
  figures?: Figures;
  sys?: System;
  mm?: AddressSpace;
  /** performance.now() when its GPU phase began (explain shows times from there). */
  t0: number;
}

const options = policyOptions();
let runs: Run[] = [];
let running = false;
/** Workloads run once already in this page: the first run of one is a warm-up (below). */
const warmed = new Set<string>();

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

// ---------------------------------------------------------------------------- the form

function buildForm(): void {
  const workload = $<HTMLSelectElement>('workload');
  for (const w of WORKLOADS) workload.append(new Option(w.title, w.id));
  workload.addEventListener('change', showAbout);
  const box = $<HTMLFieldSetElement>('policy-choices');
  for (const o of options) {
    const label = document.createElement('label');
    const input = document.createElement('input');
    input.type = 'checkbox';
    input.name = 'policy';
    input.value = o.id;
    input.disabled = o.problem !== undefined;
    label.title = o.problem ?? o.origin;
    if (o.problem) label.className = 'unusable';
    // an example whose set is named unlike its file says which file it is
    label.append(input, o.origin.startsWith('examples/') && o.label !== o.id ? `${o.label} (${o.id}.ts)` : o.label);
    box.append(label);
  }
  const editor = $<HTMLTextAreaElement>('editor');
  editor.value = sessionStorage.getItem('webgpu-hmm:policy-lab-editor') ?? EDITOR_EXAMPLE;
  editor.addEventListener('input', () => sessionStorage.setItem('webgpu-hmm:policy-lab-editor', editor.value));
  // Tab indents in the editor instead of leaving it.
  editor.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Tab' || ev.shiftKey) return;
    ev.preventDefault();
    editor.setRangeText('  ', editor.selectionStart, editor.selectionEnd, 'end');
  });
  $('editor-check').addEventListener('click', () => void checkEditor());
  $('editor-reset').addEventListener('click', () => {
    editor.value = EDITOR_EXAMPLE;
    sessionStorage.removeItem('webgpu-hmm:policy-lab-editor');
    showEditorError(null);
    $('editor-status').textContent = '';
  });
  $<HTMLFormElement>('lab').addEventListener('submit', (ev) => {
    ev.preventDefault();
    void runLab();
  });
}

function showAbout(): void {
  const w = chosenWorkload();
  $('workload-about').textContent = w.about;
  const sources = $('sources');
  sources.replaceChildren();
  showSource(w.source[0], w.source[1]);
}

function chosenWorkload(): LabWorkload {
  const id = $<HTMLSelectElement>('workload').value;
  return WORKLOADS.find((w) => w.id === id) ?? WORKLOADS[0]!;
}

const chosenPolicies = (): PolicyOption[] =>
  [...document.querySelectorAll<HTMLInputElement>('input[name=policy]:checked')].map((i) => options.find((o) => o.id === i.value)!).filter(Boolean);

/** ?workload=&policies=&evict= into the form; true when the URL asks for a run. */
function fromUrl(): boolean {
  const q = new URLSearchParams(location.search);
  const w = q.get('workload');
  if (w !== null) {
    if (!WORKLOADS.some((x) => x.id === w)) throw new Error(`?workload=${w}: use ${WORKLOADS.map((x) => x.id).join(', ')}`);
    $<HTMLSelectElement>('workload').value = w;
  }
  const evict = q.get('evict');
  if (evict !== null) {
    if (evict !== '4096' && evict !== '65536') throw new Error(`?evict=${evict}: use 4096 or 65536`);
    $<HTMLSelectElement>('evict').value = evict;
  }
  const ids = q.get('policies');
  if (ids === null) {
    // a first visit: the built-ins and the first example ticked, nothing run yet
    for (const id of ['built-in', options.find((o) => o.origin.startsWith('examples/') && !o.problem)?.id]) {
      const box = document.querySelector<HTMLInputElement>(`input[name=policy][value="${id}"]`);
      if (box) box.checked = true;
    }
    return false;
  }
  for (const id of ids.split(',').filter(Boolean)) {
    const box = document.querySelector<HTMLInputElement>(`input[name=policy][value="${CSS.escape(id)}"]`);
    if (!box) throw new Error(`?policies=${ids}: no policy set '${id}' (there are ${options.map((o) => o.id).join(', ')})`);
    box.checked = true;
  }
  return true;
}

// ---------------------------------------------------------------------------- the editor

function showEditorError(message: string | null): void {
  const el = $('editor-error');
  el.hidden = message === null;
  el.textContent = message ?? '';
}

async function checkEditor(): Promise<PolicySet | null> {
  const status = $('editor-status');
  try {
    const set = await loadEditorPolicy($<HTMLTextAreaElement>('editor').value);
    showEditorError(null);
    status.textContent = `ok: '${set.name}' (${describeSet(set)})`;
    return set;
  } catch (e) {
    status.textContent = '';
    showEditorError(e instanceof Error ? e.message : String(e));
    return null;
  }
}

// ---------------------------------------------------------------------------- running

const fmt = (x: number): string => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const bytesText = (b: number): string => (b >= MiB ? `${(b / MiB).toFixed(2)} MiB` : `${(b / 1024).toFixed(0)} KiB`);

function figuresOf(before: Record<string, number>, after: Record<string, number>, ms: number, launches: number): Figures {
  const d = (k: string): number => (after[k] ?? 0) - (before[k] ?? 0);
  return {
    ms,
    faultRounds: d('gpuFaults'),
    launches,
    pagesMoved: d('pagesToDevice') + d('pagesToSystem') + d('deviceCopies'),
    bytesMoved: d('bytesToDevice') + d('bytesToSystem') + d('deviceCopies') * PAGE_SIZE,
    evictions: d('evictions'),
    prefetchedPages: d('prefetchedPages'),
  };
}

const labSystem = (set: PolicySet, evictionBytes: 4096 | 65536): Promise<System> =>
  createSystem({
    systemRamBytes: SYSTEM_RAM_BYTES,
    devices: [{ label: 'gpu0', memoryBytes: DEVICE_BYTES, evictionBytes, policy: set }],
    // Off: thrashing detection would pin pages by timing, a second policy mixed into the figures.
    thrashing: { enabled: false },
  });

/**
 * One untimed run of the workload with the built-ins, the first time it runs in this page: the
 * browser compiles its shaders and JIT-compiles the library then, and the first set would pay.
 */
async function warmUp(w: LabWorkload, evictionBytes: 4096 | 65536): Promise<void> {
  if (warmed.has(w.id)) return;
  const sys = await labSystem({ name: 'warm-up', eviction: clockEviction() }, evictionBytes);
  try {
    const dev = sys.devices[0]!;
    const mm = sys.createAddressSpace();
    await (await w.prepare({ dev, mm, m: dev.mirror(mm) })).gpu();
    warmed.add(w.id);
  } finally {
    sys.destroy();
  }
}

/** Run one policy set on a fresh system; the system stays for the map and explain. */
async function runOne(run: Run, set: PolicySet, w: LabWorkload, evictionBytes: 4096 | 65536): Promise<void> {
  const sys = await labSystem(set, evictionBytes);
  run.sys = sys;
  const dev = sys.devices[0]!;
  $('adapter').textContent = `GPU adapter: ${dev.adapterName}`;
  const mm = sys.createAddressSpace();
  run.mm = mm;
  const m = dev.mirror(mm);
  const target = { dev, mm, m };
  const prepared = await w.prepare(target);
  const before = sys.stats();
  run.t0 = performance.now();
  let launches: number;
  try {
    launches = await prepared.gpu();
  } finally {
    showMap(run, w);
  }
  const ms = performance.now() - run.t0;
  run.figures = figuresOf(before, sys.stats(), ms, launches);
  const wrong = await prepared.check();
  showMap(run, w);
  run.status = wrong === null ? 'pass' : 'fail';
  run.message = wrong === null ? 'correct' : `wrong: ${wrong}`;
}

async function runLab(): Promise<void> {
  if (running) return;
  const w = chosenWorkload();
  const chosen = chosenPolicies();
  const evictionBytes = Number($<HTMLSelectElement>('evict').value) as 4096 | 65536;
  if (chosen.length === 0) {
    setResult('error: tick at least one policy set', 'error');
    return;
  }
  running = true;
  $<HTMLButtonElement>('run').disabled = true;
  try {
    history.replaceState(null, '', `?${new URLSearchParams({ workload: w.id, policies: chosen.map((o) => o.id).join(','), evict: String(evictionBytes) })}`);
    // The editor's set loads first: a mistake there stops the run before anything starts.
    let editorSet: PolicySet | undefined;
    if (chosen.some((o) => o.id === EDITOR_ID)) {
      const set = await checkEditor();
      if (!set) {
        setResult(`error: the editor's policy set cannot run: ${$('editor-error').textContent}`, 'error');
        return;
      }
      editorSet = set;
    }
    for (const r of runs) r.sys?.destroy();
    const sets = chosen.map((o) => (o.id === EDITOR_ID ? editorSet! : o.make!()));
    runs = chosen.map((option, i) => ({
      option,
      colour: COLOURS[i % COLOURS.length]!,
      name: option.id === EDITOR_ID ? `${sets[i]!.name} (editor)` : sets[i]!.name,
      kinds: describeSet(sets[i]!),
      status: 'waiting',
      message: 'waiting',
      t0: 0,
    }));
    $('maps').replaceChildren();
    $('explain').replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'Click a page in one of the maps above.' }));
    $('setup').textContent =
      `${w.title}. Each set runs on a fresh system: ${DEVICE_BYTES >> 10} KiB of device memory (${DEVICE_BYTES / PAGE_SIZE} frames), ` +
      `${evictionBytes >> 10} KiB eviction units, thrashing detection off, fault-driven (replayable) dispatches; the set is the device's ` +
      'policy (createSystem devices[0].policy), and what it leaves out is the built-ins. The first run of a workload in this page is ' +
      'preceded by an untimed warm-up run (shader compilation), so the first set is not charged for it.';
    showTable();
    showPlot();
    if (!warmed.has(w.id)) {
      setResult(`warming up: one untimed run of ${w.title.toLowerCase()} with the built-ins…`, 'running');
      await warmUp(w, evictionBytes);
    }
    setResult(`running ${runs.length} policy set${runs.length > 1 ? 's' : ''} on ${w.title.toLowerCase()}…`, 'running');
    for (let i = 0; i < runs.length; i++) {
      const run = runs[i]!;
      run.status = 'running';
      run.message = 'running…';
      showTable();
      try {
        await runOne(run, sets[i]!, w, evictionBytes);
      } catch (e) {
        console.warn(`policy lab: ${run.name}:`, e);
        run.status = 'error';
        // an HmmError's message already starts with its code
        run.message = e instanceof HmmError ? e.message : describeError(e);
        if (run.option.id === EDITOR_ID) {
          $('editor-status').textContent = '';
          showEditorError(`while running: ${run.message}`);
        }
      }
      showTable();
      showPlot();
    }
    const bad = runs.filter((r) => r.status !== 'pass');
    const el = $('result');
    el.dataset.workload = w.id;
    el.dataset.policies = runs.map((r) => r.option.id).join(',');
    if (bad.length === 0) setResult(`result: ${runs.length} policy set${runs.length > 1 ? 's' : ''} ran ${w.title.toLowerCase()} correctly`, 'pass');
    else setResult(`result: ${bad.length} of ${runs.length} did not finish right: ${bad.map((r) => `${r.name}: ${r.message}`).join('; ')}`, 'fail');
  } catch (e) {
    console.error(e);
    setResult(`error: ${describeError(e)}`, 'error');
  } finally {
    running = false;
    $<HTMLButtonElement>('run').disabled = false;
  }
}

// ---------------------------------------------------------------------------- showing

function cell(tag: 'td' | 'th', text: string, className = ''): HTMLElement {
  const e = document.createElement(tag);
  e.textContent = text;
  if (className) e.className = className;
  return e;
}

function swatch(colour: string): HTMLElement {
  const s = document.createElement('span');
  s.className = 'swatch';
  s.style.background = colour;
  return s;
}

function showTable(): void {
  const rows = runs.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.policy = r.option.id;
    tr.dataset.status = r.status;
    const name = cell('td', '');
    name.append(swatch(r.colour), r.name);
    const f = r.figures;
    const num = (v: string): HTMLElement => cell('td', f ? v : '', 'num');
    tr.append(
      name,
      cell('td', r.kinds, 'kinds'),
      num(f ? `${fmt(f.ms)} ms` : ''),
      num(f ? f.faultRounds.toLocaleString('en-US') : ''),
      num(f ? f.launches.toLocaleString('en-US') : ''),
      num(f ? f.pagesMoved.toLocaleString('en-US') : ''),
      num(f ? bytesText(f.bytesMoved) : ''),
      num(f ? f.evictions.toLocaleString('en-US') : ''),
      num(f ? f.prefetchedPages.toLocaleString('en-US') : ''),
      cell('td', r.message, `status-${r.status}`),
    );
    if (f) {
      tr.dataset.ms = f.ms.toFixed(1);
      tr.dataset.faultRounds = String(f.faultRounds);
      tr.dataset.launches = String(f.launches);
      tr.dataset.pagesMoved = String(f.pagesMoved);
      tr.dataset.bytesMoved = String(f.bytesMoved);
      tr.dataset.evictions = String(f.evictions);
      tr.dataset.prefetchedPages = String(f.prefetchedPages);
    }
    return tr;
  });
  document.querySelector('#runs tbody')!.replaceChildren(...rows);
}

const SVG = 'http://www.w3.org/2000/svg';
function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** One small horizontal bar chart per figure, a bar per policy set (lower is better for all). */
function showPlot(): void {
  const metrics: [string, (f: Figures) => number, (v: number) => string][] = [
    ['time (ms)', (f) => f.ms, fmt],
    ['GPU fault rounds', (f) => f.faultRounds, String],
    ['MiB moved', (f) => f.bytesMoved / MiB, (v) => v.toFixed(2)],
    ['pages evicted', (f) => f.evictions, String],
    ['pages prefetched', (f) => f.prefetchedPages, String],
  ];
  const host = $('plot');
  host.replaceChildren();
  if (!runs.some((r) => r.figures)) return;
  const W = 320;
  const LABEL = 96;
  const ROW = 20;
  for (const [title, of, show] of metrics) {
    const fig = document.createElement('figure');
    fig.dataset.metric = title;
    fig.append(Object.assign(document.createElement('figcaption'), { textContent: title }));
    const top = Math.max(0, ...runs.map((r) => (r.figures ? of(r.figures) : 0)));
    const chart = svg('svg', { viewBox: `0 0 ${W} ${runs.length * ROW + 4}`, role: 'img', 'aria-label': title });
    runs.forEach((r, i) => {
      const y = i * ROW + 2;
      chart.append(svg('text', { x: 0, y: y + 14 }, r.name.length > 14 ? `${r.name.slice(0, 13)}…` : r.name));
      if (!r.figures) {
        chart.append(svg('text', { x: LABEL, y: y + 14 }, r.status === 'error' || r.status === 'fail' ? 'failed' : '…'));
        return;
      }
      const v = of(r.figures);
      const len = top > 0 ? ((W - LABEL - 60) * v) / top : 0;
      chart.append(svg('rect', { x: LABEL, y: y + 3, width: Math.max(len, v > 0 ? 1 : 0), height: ROW - 6, fill: r.colour, rx: 2 }));
      chart.append(svg('text', { x: LABEL + len + 4, y: y + 14 }, show(v)));
    });
    fig.append(chart);
    host.append(fig);
  }
}

/** The set's residency map after its run (created on first call, refreshed after). */
function showMap(run: Run, w: LabWorkload): void {
  if (!run.mm || run.mm.isDestroyed) return;
  let card = document.querySelector<HTMLElement>(`.lab-map[data-policy="${CSS.escape(run.option.id)}"]`);
  if (!card) {
    card = document.createElement('section');
    card.className = 'card lab-map';
    card.dataset.policy = run.option.id;
    const h = document.createElement('h2');
    h.append(swatch(run.colour), run.name);
    const host = document.createElement('div');
    host.className = 'map-host';
    card.append(h, Object.assign(document.createElement('p'), { className: 'muted', textContent: run.kinds }), host);
    $('maps').append(card);
    const map = new ResidencyMap(host, run.mm, w.regions);
    (card as HTMLElement & { map?: ResidencyMap }).map = map;
    host.addEventListener('click', (ev) => explainClick(run, host, ev));
  } else (card as HTMLElement & { map?: ResidencyMap }).map?.update();
}

/** A click on a map: the widget names the page under the pointer (its hover line); explain it. */
function explainClick(run: Run, host: HTMLElement, ev: MouseEvent): void {
  const canvas = (ev.target as Element | null)?.closest('canvas.map-canvas');
  const hover = host.querySelector('.hover-line');
  if (!canvas || !hover) return;
  hover.textContent = '';
  canvas.dispatchEvent(new MouseEvent('mousemove', { clientX: ev.clientX, clientY: ev.clientY }));
  const m = /^(\S+) page (\d+) \(0x([0-9a-f]+)\)/.exec(hover.textContent ?? '');
  if (!m) return;
  showExplain(run, m[1]!, Number(m[2]), parseInt(m[3]!, 16));
}

function showExplain(run: Run, region: string, index: number, va: number): void {
  const host = $('explain');
  host.replaceChildren();
  if (!run.sys || !run.mm || run.mm.isDestroyed) return;
  const story = run.sys.explain(run.mm, va);
  host.dataset.policy = run.option.id;
  host.dataset.va = String(va);
  host.dataset.now = story.now;
  const h = document.createElement('h3');
  h.append(swatch(run.colour), `${run.name}: ${region} page ${index} (0x${va.toString(16)}), now ${story.now}`);
  host.append(h);
  if (story.history.length === 0) {
    host.append(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'No move recorded: the page never left where the CPU put it.' }));
    return;
  }
  const list = document.createElement('ol');
  list.id = 'explain-history';
  for (const e of story.history) {
    const li = document.createElement('li');
    li.dataset.move = e.move;
    li.dataset.cause = e.cause.kind;
    li.append(
      Object.assign(document.createElement('span'), { className: 'when', textContent: `${e.ts - run.t0 >= 0 ? '+' : ''}${(e.ts - run.t0).toFixed(1)} ms ` }),
      Object.assign(document.createElement('span'), { className: 'move', textContent: e.move }),
      ` (gpu${e.device}): ${e.why}`,
      e.placement ? `; placement ${e.placement}` : '',
    );
    list.append(li);
  }
  host.append(list);
  host.append(
    Object.assign(document.createElement('p'), {
      className: 'muted',
      textContent: `sys.explain(mm, 0x${va.toString(16)}): oldest first, times from the start of the run${story.history.length >= 32 ? ' (the last 32 moves)' : ''}.`,
    }),
  );
}

// ---------------------------------------------------------------------------- start

async function main(): Promise<void> {
  reportUnhandledErrors();
  buildForm();
  let autorun = false;
  try {
    autorun = fromUrl();
  } catch (e) {
    setResult(`error: ${describeError(e)}`, 'error');
    return;
  } finally {
    showAbout();
  }
  if (!checkEnvironment()) {
    setResult('error: this page cannot run here (see above)', 'error');
    return;
  }
  if (autorun) await runLab();
  else {
    const el = $('result');
    el.textContent = 'ready: pick a workload and policy sets, then Run';
    el.dataset.status = 'idle';
  }
}

void main();
