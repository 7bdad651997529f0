// Pointer structures: a CPU thread (a Web Worker) builds a linked list, a tree or a graph in
// mmap'ed memory, linking nodes scattered over many pages with virtual addresses. A GPU kernel
// then follows the very same pointers: list ranking by pointer jumping, path sums up a tree,
// or breadth-first search over a graph. It runs in replayable mode, so nothing is moved
// first: the pages it touches fault in on the GPU. Last, the worker traverses the structure
// again on the CPU and compares: its first touch of each page faults it home.
//
// The page shows the live residency map of the node pool, the GPU's fault rounds per dispatch,
// the counters after each phase and the kernel's WGSL. #result passes only when the GPU's
// answer equals the CPU's; data-gpu-answer and data-cpu-answer hold both for tests.

import { PAGE_SIZE, createSystem, spawnThread, threadHandle, type DispatchResult, type HmmKernel, type Mirror } from 'webgpu-hmm';
import { checkEnvironment, describeError, reportUnhandledErrors, setResult, showSource } from '../common.ts';
import { CounterTable } from '../widgets/counterTable.ts';
import { ResidencyMap, type Region } from '../widgets/residencyMap.ts';
import type { Builder } from './builder.ts';
import bfsSource from './bfs.wgsl?raw';
import { DEFAULT_NODES, NODE_BYTES, SPREAD, STRUCTURES, type Job, type Structure } from './layout.ts';
import listRankSource from './list_rank.wgsl?raw';
import treePathsSource from './tree_paths.wgsl?raw';

const WORKGROUP_SIZE = 64;
const MAX_NODES = 65536;

const KERNELS: Record<Structure, { file: string; code: string; what: string }> = {
  list: { file: 'list_rank.wgsl', code: listRankSource, what: 'list ranking by pointer jumping' },
  tree: { file: 'tree_paths.wgsl', code: treePathsSource, what: 'path sums up the parent pointers' },
  graph: { file: 'bfs.wgsl', code: bfsSource, what: 'breadth-first search, one dispatch per level' },
};

interface Settings {
  structure: Structure;
  nodes: number;
  prefetch: boolean;
  seed: number;
}

/** The form's choices, from the query string (?structure=tree&nodes=4096&prefetch=off&seed=1). */
function settings(): Settings {
  const q = new URLSearchParams(location.search);
  const structure = (q.get('structure') ?? 'list') as Structure;
  if (!STRUCTURES.includes(structure)) throw new Error(`?structure=${structure}: pick one of ${STRUCTURES.join(', ')}`);
  const nodes = Number(q.get('nodes') ?? DEFAULT_NODES);
  if (!Number.isInteger(nodes) || nodes < 2 || nodes > MAX_NODES) throw new Error(`?nodes=${q.get('nodes')}: an integer in [2, ${MAX_NODES}]`);
  const prefetch = (q.get('prefetch') ?? 'on') !== 'off';
  const seed = Number(q.get('seed') ?? 1);
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`?seed=${q.get('seed')}: a non-negative integer`);
  return { structure, nodes, prefetch, seed };
}

/** Put the current settings back into the form, so "Run again" starts from them. */
function fillForm(s: Settings): void {
  const form = document.querySelector<HTMLFormElement>('form.controls')!;
  const choices: [string, string][] = [
    ['structure', s.structure],
    ['nodes', String(s.nodes)],
    ['prefetch', s.prefetch ? 'on' : 'off'],
  ];
  for (const [name, value] of choices) {
    const select = form.elements.namedItem(name) as HTMLSelectElement | null;
    if (select && Array.from(select.options).some((o) => o.value === value)) select.value = value;
  }
  const seed = form.elements.namedItem('seed') as HTMLInputElement | null;
  if (seed) seed.value = String(s.seed);
}

// ---------------------------------------------------------------------------- the traversal

/** One dispatch of the traversal, for the table. */
interface Launch {
  label: string;
  result: DispatchResult;
  ms: number;
}

/** The GPU side: the dispatches each structure needs, each reported to onLaunch; returns the list's final (rank, jump) slot. */
async function traverse(m: Mirror, kernel: HmmKernel, job: Job, flags: number, prefetch: boolean, onLaunch: (l: Launch) => void): Promise<{ slot: number }> {
  const workgroups = Math.ceil(job.nodes / WORKGROUP_SIZE);
  const launch = async (label: string, args: number[]): Promise<void> => {
    const t0 = performance.now();
    const result = await m.dispatch(kernel, { mode: 'replayable', workgroups, uniforms: new Uint32Array(args), prefetch });
    onLaunch({ label, result, ms: performance.now() - t0 });
  };
  if (job.structure === 'list') {
    // After pass k every node has looked 2^(k+1) nodes ahead: ceil(log2 n) passes reach the tail.
    const passes = Math.max(1, Math.ceil(Math.log2(job.nodes)));
    for (let k = 0; k < passes; k++) await launch(`pass ${k}`, [job.index, job.nodes, k, 0]);
    return { slot: passes & 1 };
  }
  if (job.structure === 'tree') {
    await launch('all nodes', [job.index, job.nodes, 0, 0]);
    return { slot: 0 };
  }
  // BFS: one dispatch per level, until a level finds nothing new. The host peeks at the level's
  // flag through the device's page table (mirror.read), which leaves the page on the GPU.
  for (let level = 0; level < job.nodes; level++) {
    await launch(`level ${level}`, [job.index, job.nodes, level, flags]);
    const at = flags + level * 4;
    const page = at - (at % PAGE_SIZE);
    const { data } = await m.read(page, 1);
    if (new DataView(data.buffer, data.byteOffset).getUint32(at - page, true) === 0) break;
  }
  return { slot: 0 };
}

// ---------------------------------------------------------------------------- display

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function row(cells: string[], className?: string): HTMLTableRowElement {
  const tr = el('tr', undefined, className);
  cells.forEach((c, i) => tr.append(el('td', c, i === 0 ? undefined : 'num')));
  return tr;
}

const fmtMs = (ms: number): string => `${ms.toFixed(1)} ms`;

function showLaunches(launches: Launch[]): void {
  const sum = (f: (l: Launch) => number): number => launches.reduce((s, l) => s + f(l), 0);
  const rows = launches.map((l) => row([l.label, String(l.result.rounds), String(l.result.faults), String(l.result.faultedPages), fmtMs(l.ms)]));
  rows.push(
    row(
      ['total', String(sum((l) => l.result.rounds)), String(sum((l) => l.result.faults)), String(sum((l) => l.result.faultedPages)), fmtMs(sum((l) => l.ms))],
      'total',
    ),
  );
  document.querySelector('#dispatches tbody')!.replaceChildren(...rows);
}

function showSteps(steps: [string, number, string][]): void {
  const rows = steps.map(([label, ms, note]) => {
    const tr = el('tr');
    tr.append(el('td', label), el('td', fmtMs(ms), 'num'), el('td', note, 'note-cell'));
    return tr;
  });
  document.querySelector('#steps tbody')!.replaceChildren(...rows);
}

function showAnswers(gpu: string, cpu: string, mismatches: string): void {
  document.getElementById('gpu-answer')!.textContent = gpu;
  document.getElementById('cpu-answer')!.textContent = cpu;
  document.getElementById('mismatches')!.textContent = mismatches;
}

// ---------------------------------------------------------------------------- the demo

async function run(s: Settings): Promise<void> {
  const kernelInfo = KERNELS[s.structure];
  const poolBytes = Math.ceil((s.nodes * NODE_BYTES * SPREAD) / PAGE_SIZE) * PAGE_SIZE;
  document.getElementById('summary')!.textContent =
    `A ${s.structure} of ${s.nodes.toLocaleString('en-US')} nodes scattered over a pool of ${poolBytes / PAGE_SIZE} pages ` +
    `(${NODE_BYTES}-byte nodes, about ${Math.round(PAGE_SIZE / NODE_BYTES / SPREAD)} per page); the GPU does ${kernelInfo.what}; prefetch ${s.prefetch ? 'on' : 'off'}.`;

  const sys = await createSystem({ systemRamBytes: 64 << 20, devices: [{ memoryBytes: 16 << 20 }] });
  let map: ResidencyMap | undefined;
  let worker: Awaited<ReturnType<typeof spawnThread<Builder>>> | undefined;
  try {
    const dev = sys.devices[0]!;
    document.getElementById('adapter')!.textContent = `GPU adapter: ${dev.adapterName}`;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const job: Job = { structure: s.structure, nodes: s.nodes, seed: s.seed, pool: mm.mmap(poolBytes), poolBytes, index: mm.mmap(s.nodes * 4) };
    const flags = s.structure === 'graph' ? mm.mmap(s.nodes * 4) : 0;
    const regions: Region[] = [
      { name: 'nodes', va: job.pool, bytes: poolBytes },
      { name: 'node table', va: job.index, bytes: s.nodes * 4 },
    ];
    if (flags) regions.push({ name: 'level flags', va: flags, bytes: s.nodes * 4 });
    map = new ResidencyMap(document.getElementById('residency-map')!, mm, regions);
    map.start(50);
    const counters = new CounterTable(document.getElementById('counters') as HTMLTableElement);
    const columns: [string, Record<string, number>][] = [];
    const steps: [string, number, string][] = [];

    // 1. The worker builds the structure: its first write to each page faults through the mailbox.
    setResult('running: the worker builds the structure…', 'running');
    worker = await spawnThread<Builder>(new Worker(new URL('./builder.ts', import.meta.url), { type: 'module' }));
    await worker.api.attach(threadHandle(mm));
    const built = await worker.api.build(job);
    steps.push(['worker builds it', built.ms, `${built.pagesUsed} pages hold nodes`]);
    columns.push(['after build', sys.stats()]);
    counters.show(columns);
    showSteps(steps);

    // 2. The GPU follows the pointers; every page it misses faults in.
    setResult('running: the GPU traverses it…', 'running');
    const kernel = await dev.createKernel({ code: kernelInfo.code, workgroupSize: WORKGROUP_SIZE, label: kernelInfo.file });
    const t0 = performance.now();
    const launches: Launch[] = [];
    const { slot } = await traverse(m, kernel, job, flags, s.prefetch, (l) => {
      launches.push(l);
      showLaunches(launches);
      counters.show([...columns, ['now', sys.stats()]]);
    });
    const gpuMs = performance.now() - t0;
    const faultRounds = launches.reduce((sum, l) => sum + l.result.faults, 0);
    const faultedPages = launches.reduce((sum, l) => sum + l.result.faultedPages, 0);
    steps.push(['GPU traverses it', gpuMs, `${launches.length} dispatches, ${faultRounds} fault rounds`]);
    columns.push(['after GPU', sys.stats()]);
    counters.show(columns);
    showSteps(steps);

    // 3. The worker checks: a CPU traversal of the same pointers; the pages come home as it goes.
    setResult('running: the worker checks the answer…', 'running');
    const checked = await worker.api.check(job, built.root, slot);
    const thread = await worker.api.counters();
    steps.push(['worker checks it', checked.ms, `${thread.slowPaths} of ${thread.accesses.toLocaleString('en-US')} accesses faulted`]);
    columns.push(['after CPU check', sys.stats()]);
    counters.show(columns);
    showSteps(steps);
    map.stop();

    const mismatchText = checked.mismatches === 0 ? 'none: every node agrees' : `${checked.mismatches} nodes, first: ${checked.firstMismatch}`;
    showAnswers(checked.gpuAnswer, checked.cpuAnswer, mismatchText);
    const data = document.getElementById('result')!.dataset;
    Object.assign(data, {
      structure: s.structure,
      nodes: String(s.nodes),
      gpuAnswer: checked.gpuAnswer,
      cpuAnswer: checked.cpuAnswer,
      mismatches: String(checked.mismatches),
      dispatches: String(launches.length),
      faultRounds: String(faultRounds),
      faultedPages: String(faultedPages),
    });
    if (checked.mismatches === 0 && checked.gpuAnswer === checked.cpuAnswer)
      setResult(`result: the GPU's answer matches the CPU's (${s.structure} of ${s.nodes} nodes: ${checked.gpuAnswer})`, 'pass');
    else setResult(`result: the GPU and the CPU disagree: GPU ${checked.gpuAnswer}; CPU ${checked.cpuAnswer}; ${mismatchText}`, 'fail');
  } finally {
    map?.stop();
    await worker?.terminate();
    sys.destroy();
  }
}

async function main(): Promise<void> {
  reportUnhandledErrors();
  let s: Settings;
  try {
    s = settings();
  } catch (e) {
    setResult(`error: ${describeError(e)}`, 'error');
    return;
  }
  fillForm(s);
  showSource(KERNELS[s.structure].file, KERNELS[s.structure].code);
  if (!checkEnvironment()) {
    setResult('error: this page cannot run here (see above)', 'error');
    return;
  }
  setResult('running…', 'running');
  try {
    await run(s);
  } catch (e) {
    console.error(e);
    setResult(`error: ${describeError(e)}`, 'error');
  }
}

void main();
