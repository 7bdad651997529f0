// Ping-pong: the CPU and a GPU kernel take turns on the same pages. The CPU writes `in`, the
// kernel computes out = 2 * in + turn, the CPU reads `out`, checks it and derives the next
// `in` from it. The same run goes once per setting of thrashing detection and read
// duplication (read-mostly advice on `in`), each on its own system, and the page compares
// migrations, bytes moved, thrash events and device copies, with a live residency map each.

import { PAGE_SIZE, createSystem } from 'webgpu-hmm';
import { checkEnvironment, describeError, reportUnhandledErrors, setResult, showSource } from '../common.ts';
import { CounterTable } from '../widgets/counterTable.ts';
import { ResidencyMap } from '../widgets/residencyMap.ts';
import kernelSource from './gpu_turn.wgsl?raw';

const MiB = 1 << 20;
const PAGES = 8; // per array
const WORDS = (PAGES * PAGE_SIZE) / 4;
const TURNS = 10;
const WORKGROUP_SIZE = 64;
/**
 * Thrashing detection, tuned for a software GPU: a turn takes tens of milliseconds there, so
 * a bounce is two opposite moves within a second (UVM uses microseconds on hardware), and a
 * page stays pinned for the rest of the run.
 */
const THRASH_WINDOW_MS = 1000;
const THRASH_PIN_MS = 60_000;

interface Setting {
  /** Short name, used in data-* attributes: plain, thrash, dup, both. */
  key: string;
  thrashing: boolean;
  duplication: boolean;
}

interface Outcome {
  setting: Setting;
  stats: Record<string, number>;
  turnsRight: number;
  perTurn: number[];
  ms: number;
}

const label = (s: Setting): string => `thrashing detection ${s.thrashing ? 'on' : 'off'}, read duplication ${s.duplication ? 'on' : 'off'}`;
const shortLabel = (s: Setting): string => `thrashing ${s.thrashing ? 'on' : 'off'}, duplication ${s.duplication ? 'on' : 'off'}`;
const migrations = (s: Record<string, number>): number => (s.pagesToDevice ?? 0) + (s.pagesToSystem ?? 0);
const bytesMoved = (s: Record<string, number>): number => (s.bytesToDevice ?? 0) + (s.bytesToSystem ?? 0);

/** The settings the form asks for (?thrashing= and ?duplication=, each on, off or both). */
function chosenSettings(): Setting[] {
  const q = new URLSearchParams(location.search);
  const pick = (name: string): boolean[] => {
    const v = q.get(name) ?? 'both';
    if (v !== 'on' && v !== 'off' && v !== 'both') throw new Error(`?${name}=${v}: use on, off or both`);
    document.querySelector<HTMLSelectElement>(`select[name=${name}]`)!.value = v;
    return v === 'both' ? [false, true] : [v === 'on'];
  };
  const thrash = pick('thrashing');
  const dup = pick('duplication');
  const out: Setting[] = [];
  for (const duplication of dup)
    for (const thrashing of thrash)
      out.push({ key: thrashing && duplication ? 'both' : thrashing ? 'thrash' : duplication ? 'dup' : 'plain', thrashing, duplication });
  return out;
}

/** The first `in`: a hash of the index. Later ones derive from the GPU's `out`. */
const firstInput = (): Uint32Array => Uint32Array.from({ length: WORDS }, (_, i) => Math.imul(i, 2654435761) >>> 0);
const nextInput = (out: Uint32Array): Uint32Array => out.map((v, i) => (v ^ Math.imul(i, 0x9e3779b9)) >>> 0);

function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string, className?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (className) e.className = className;
  return e;
}

// ---------------------------------------------------------------------------- one setting

/** A card per setting: its live residency map, the turn it is on, migrations per turn. */
function settingCard(setting: Setting): { turn: HTMLElement; perTurn: HTMLElement; map: HTMLElement } {
  const card = el('section', undefined, 'card setting');
  card.dataset.setting = setting.key;
  const turn = el('p', 'waiting…', 'turn-line');
  const perTurn = el('p', '', 'muted');
  const map = el('div');
  card.append(el('h2', label(setting)), turn, perTurn, map);
  document.getElementById('settings')!.append(card);
  return { turn, perTurn, map };
}

async function runSetting(setting: Setting, kernelCode: string): Promise<Outcome> {
  const view = settingCard(setting);
  const sys = await createSystem({
    systemRamBytes: 4 * MiB,
    devices: [{ memoryBytes: 1 * MiB }],
    thrashing: { enabled: setting.thrashing, windowMs: THRASH_WINDOW_MS, pinMs: THRASH_PIN_MS },
  });
  let map: ResidencyMap | undefined;
  try {
    const dev = sys.devices[0]!;
    document.getElementById('adapter')!.textContent = `GPU adapter: ${dev.adapterName}`;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const input = mm.mmap(PAGES * PAGE_SIZE);
    const output = mm.mmap(PAGES * PAGE_SIZE);
    if (setting.duplication) await mm.advise(input, PAGES * PAGE_SIZE, { readMostly: true });
    map = new ResidencyMap(view.map, mm, [
      { name: 'in', va: input, bytes: PAGES * PAGE_SIZE },
      { name: 'out', va: output, bytes: PAGES * PAGE_SIZE },
    ]);
    map.start(50);
    const kernel = await dev.createKernel({ code: kernelCode, workgroupSize: WORKGROUP_SIZE, label: 'gpu_turn' });

    const t0 = performance.now();
    const perTurn: number[] = [];
    let turnsRight = 0;
    let data = firstInput();
    for (let turn = 1; turn <= TURNS; turn++) {
      const before = migrations(sys.stats());
      // The CPU's turn: write `in` (pages on the device fault home first).
      await mm.write(input, new Uint8Array(data.buffer));
      // The GPU's turn; prefetch off, so only the pages the kernel touches move.
      await m.dispatch(kernel, {
        mode: 'replayable',
        prefetch: false,
        workgroups: WORDS / WORKGROUP_SIZE,
        uniforms: new Uint32Array([input, output, WORDS, turn]),
      });
      // The CPU reads `out` and checks every word against what it wrote.
      const out = new Uint32Array((await mm.read(output, WORDS * 4)).buffer);
      const wrong = out.findIndex((v, i) => v !== (2 * data[i]! + turn) >>> 0);
      if (wrong >= 0) {
        view.turn.textContent = `turn ${turn}: wrong: out[${wrong}] = ${out[wrong]}, expected ${(2 * data[wrong]! + turn) >>> 0}`;
        view.turn.dataset.status = 'fail';
        break;
      }
      turnsRight++;
      perTurn.push(migrations(sys.stats()) - before);
      view.turn.textContent = `turn ${turn} of ${TURNS}: out is right`;
      view.perTurn.textContent = `migrations per turn: ${perTurn.join(' · ')}`;
      data = nextInput(out);
    }
    if (turnsRight === TURNS) view.turn.dataset.status = 'pass';
    map.stop();
    return { setting, stats: sys.stats(), turnsRight, perTurn, ms: performance.now() - t0 };
  } finally {
    map?.stop();
    sys.destroy();
  }
}

// ---------------------------------------------------------------------------- comparison

function showSummary(outcomes: Outcome[]): void {
  const rows = outcomes.map(({ setting, stats, turnsRight, ms }) => {
    const tr = el('tr');
    tr.append(
      el('td', shortLabel(setting)),
      el('td', migrations(stats).toLocaleString('en-US'), 'num'),
      el('td', (bytesMoved(stats) / MiB).toFixed(2), 'num'),
      el('td', String(stats.thrashEvents ?? 0), 'num'),
      el('td', String(stats.deviceCopies ?? 0), 'num'),
      el('td', `${turnsRight} / ${TURNS}`, 'num'),
      el('td', `${(ms / 1000).toFixed(1)} s`, 'num'),
    );
    return tr;
  });
  document.querySelector('#summary tbody')!.replaceChildren(...rows);
}

/** What the settings must show against each other, for the pairs that ran: fewer migrations. */
function comparisons(outcomes: Outcome[]): string[] {
  const byKey = new Map(outcomes.map((o) => [o.setting.key, o]));
  const problems: string[] = [];
  const fewer = (better: string, worse: string, what: string): void => {
    const b = byKey.get(better);
    const w = byKey.get(worse);
    if (!b || !w) return;
    if (!(migrations(b.stats) < migrations(w.stats)))
      problems.push(`${what}: ${migrations(b.stats)} migrations, not fewer than ${migrations(w.stats)} without it`);
  };
  fewer('thrash', 'plain', 'thrashing detection');
  fewer('both', 'dup', 'thrashing detection with read duplication');
  fewer('dup', 'plain', 'read duplication');
  return problems;
}

async function main(): Promise<void> {
  reportUnhandledErrors();
  showSource('gpu_turn.wgsl', kernelSource);
  if (!checkEnvironment()) {
    setResult('error: this page cannot run here (see above)', 'error');
    return;
  }
  setResult('running…', 'running');
  try {
    const settings = chosenSettings();
    document.getElementById('setup')!.textContent =
      `${TURNS} turns on two arrays of ${PAGES} pages each; ${settings.length} setting${settings.length > 1 ? 's' : ''}; ` +
      `a bounce is two opposite moves within ${THRASH_WINDOW_MS} ms, and a thrashing page stays pinned ${THRASH_PIN_MS / 1000} s.`;
    const counters = new CounterTable(document.getElementById('counters') as HTMLTableElement);
    const outcomes: Outcome[] = [];
    for (const setting of settings) {
      outcomes.push(await runSetting(setting, kernelSource));
      showSummary(outcomes);
      counters.show(outcomes.map((o) => [o.setting.key, o.stats]));
    }

    const result = document.getElementById('result')!;
    result.dataset.settings = outcomes.map((o) => o.setting.key).join(',');
    result.dataset.turns = String(TURNS);
    for (const o of outcomes) {
      // e.g. data-migrations-plain, data-thrash-events-both
      const suffix = o.setting.key[0]!.toUpperCase() + o.setting.key.slice(1);
      result.dataset[`migrations${suffix}`] = String(migrations(o.stats));
      result.dataset[`bytesMoved${suffix}`] = String(bytesMoved(o.stats));
      result.dataset[`thrashEvents${suffix}`] = String(o.stats.thrashEvents ?? 0);
      result.dataset[`deviceCopies${suffix}`] = String(o.stats.deviceCopies ?? 0);
      result.dataset[`turnsRight${suffix}`] = String(o.turnsRight);
    }
    document.getElementById('detail')!.textContent = outcomes
      .map((o) => `${o.setting.key}: ${migrations(o.stats)} migrations, ${o.stats.thrashEvents ?? 0} thrash events`)
      .join('; ');

    const wrong = outcomes.filter((o) => o.turnsRight < TURNS);
    const problems = comparisons(outcomes);
    if (wrong.length > 0) setResult(`result: wrong data with ${wrong.map((o) => label(o.setting)).join('; ')} (see its card)`, 'fail');
    else if (problems.length > 0) setResult(`result: the data is right, but ${problems.join('; ')}`, 'fail');
    else setResult(`result: correct (${TURNS} turns checked ${outcomes.length > 1 ? `in each of ${outcomes.length} settings` : 'in the one setting'})`, 'pass');
  } catch (e) {
    console.error(e);
    setResult(`error: ${describeError(e)}`, 'error');
  }
}

void main();
