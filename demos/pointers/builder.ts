// The builder: a CPU thread (Web Worker) that shares the page's address space. It builds a
// linked list, a tree or a graph out of nodes scattered over the pool's pages, linking them
// with virtual addresses, the same pointers the GPU kernel will follow. After the GPU has run,
// it checks the answer: it traverses the structure again on the CPU and compares with what
// the kernel wrote into the nodes. Those pages live in GPU memory by then, so every first
// touch of a page here faults: the main thread migrates it home and the thread goes on.
//
// Loads and stores go through CpuThread (synchronous, on shared memory); only faults need the
// main thread, through the Atomics mailbox (docs/concurrency.md).

import { CpuThread, exposeThread, type ThreadHandle } from 'webgpu-hmm/thread';
import { GRAPH, LIST, MAX_DEGREE, NODE_BYTES, TREE, UNREACHED, below, random, type Built, type Checked, type Job } from './layout.ts';

let mem: CpuThread | undefined;
const thread = (): CpuThread => {
  if (!mem) throw new Error('builder: attach(handle) first');
  return mem;
};

/** One node's 8 words, written with a single store. */
function writeNode(t: CpuThread, va: number, words: ArrayLike<number>): void {
  const node = new Uint32Array(NODE_BYTES / 4);
  node.set(words);
  t.store(va, new Uint8Array(node.buffer));
}

/** Node addresses: n distinct slots of the pool, chosen at random (a partial shuffle). */
function scatter(job: Job, rand: () => number): number[] {
  const slots = Math.floor(job.poolBytes / NODE_BYTES);
  const order = Uint32Array.from({ length: slots }, (_, i) => i);
  const vas: number[] = [];
  for (let i = 0; i < job.nodes; i++) {
    const j = i + below(rand, slots - i);
    [order[i], order[j]] = [order[j]!, order[i]!];
    vas.push(job.pool + order[i]! * NODE_BYTES);
  }
  return vas;
}

/** A list through every node, in a random order: node k's next is the next node of that order. */
function buildList(t: CpuThread, vas: number[], rand: () => number): number {
  const order = [...vas];
  for (let i = order.length - 1; i > 0; i--) {
    const j = below(rand, i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  order.forEach((va, k) => writeNode(t, va, [1 + below(rand, 100), order[k + 1] ?? 0]));
  return order[0]!;
}

/** A random binary tree rooted at node 0: each new node hangs under a random node with a free child slot. */
function buildTree(t: CpuThread, vas: number[], rand: () => number): number {
  const words = vas.map(() => [1 + below(rand, 100), 0, 0, 0]); // value, parent, left, right
  const open = [0]; // nodes with a free child slot
  for (let i = 1; i < vas.length; i++) {
    const k = below(rand, open.length);
    const parent = open[k]!;
    const p = words[parent]!;
    words[i]![1] = vas[parent]!;
    if (p[2] === 0 && (p[3] !== 0 || rand() < 0.5)) p[2] = vas[i]!;
    else p[3] = vas[i]!;
    if (p[2] !== 0 && p[3] !== 0) {
      open[k] = open[open.length - 1]!; // both slots taken: swap-remove it from the open list
      open.pop();
    }
    open.push(i);
  }
  vas.forEach((va, i) => writeNode(t, va, words[i]!));
  return vas[0]!;
}

/** A random directed graph: each node points at 1 to MAX_DEGREE random nodes; BFS starts at node 0. */
function buildGraph(t: CpuThread, vas: number[], rand: () => number): number {
  vas.forEach((va, i) => {
    const degree = 1 + below(rand, MAX_DEGREE);
    const neighbours = Array.from({ length: degree }, () => vas[below(rand, vas.length)]!);
    writeNode(t, va, [i === 0 ? 0 : UNREACHED, degree, ...neighbours]);
  });
  return vas[0]!;
}

// ---------------------------------------------------------------------------- the checks

/** Nodes in node-table order, as their addresses (read back from the table, as the GPU did). */
function nodeTable(t: CpuThread, job: Job): Uint32Array {
  const bytes = t.load(job.index, job.nodes * 4);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, job.nodes);
}

class Mismatches {
  count = 0;
  first = '';
  note(what: string): void {
    if (this.count++ === 0) this.first = what;
  }
}

/** List ranking: a node's rank is how many nodes follow it. Walk from the head and compare. */
function checkList(t: CpuThread, job: Job, root: number, slot: number): Omit<Checked, 'ms'> {
  const bad = new Mismatches();
  let gpuSum = 0;
  for (const va of nodeTable(t, job)) gpuSum += t.loadU32(va + LIST.rank[slot]!);
  let cpuSum = 0;
  let position = 0;
  for (let p = root; p !== 0 && position < job.nodes; p = t.loadU32(p + LIST.next), position++) {
    const expected = job.nodes - 1 - position;
    cpuSum += expected;
    const got = t.loadU32(p + LIST.rank[slot]!);
    if (got !== expected) bad.note(`node at 0x${p.toString(16)} (position ${position}): GPU rank ${got}, CPU rank ${expected}`);
  }
  const gpuHead = t.loadU32(root + LIST.rank[slot]!);
  return {
    gpuAnswer: `head rank ${gpuHead}, Σ ranks ${gpuSum}`,
    cpuAnswer: `head rank ${job.nodes - 1}, Σ ranks ${cpuSum}`,
    mismatches: bad.count,
    firstMismatch: bad.first,
  };
}

/** Depth and root-to-node path sum of every node: a depth-first walk down the child pointers. */
function checkTree(t: CpuThread, job: Job, root: number): Omit<Checked, 'ms'> {
  const bad = new Mismatches();
  let gpuMax = 0;
  let gpuSum = 0;
  for (const va of nodeTable(t, job)) {
    gpuMax = Math.max(gpuMax, t.loadU32(va + TREE.depth));
    gpuSum += t.loadU32(va + TREE.pathSum);
  }
  let cpuMax = 0;
  let cpuSum = 0;
  const stack: [number, number, number][] = [[root, 0, 0]]; // node, depth, path sum above it
  while (stack.length > 0) {
    const [p, depth, above] = stack.pop()!;
    const sum = (above + t.loadU32(p + TREE.value)) >>> 0;
    cpuMax = Math.max(cpuMax, depth);
    cpuSum += sum;
    const gotDepth = t.loadU32(p + TREE.depth);
    const gotSum = t.loadU32(p + TREE.pathSum);
    if (gotDepth !== depth || gotSum !== sum) bad.note(`node at 0x${p.toString(16)}: GPU depth ${gotDepth} sum ${gotSum}, CPU depth ${depth} sum ${sum}`);
    for (const child of [t.loadU32(p + TREE.left), t.loadU32(p + TREE.right)]) if (child !== 0) stack.push([child, depth + 1, sum]);
  }
  return {
    gpuAnswer: `max depth ${gpuMax}, Σ path sums ${gpuSum}`,
    cpuAnswer: `max depth ${cpuMax}, Σ path sums ${cpuSum}`,
    mismatches: bad.count,
    firstMismatch: bad.first,
  };
}

/** Breadth-first search from the root on the CPU (a queue of addresses), compared level by level. */
function checkGraph(t: CpuThread, job: Job, root: number): Omit<Checked, 'ms'> {
  const summary = (levels: Iterable<number>): string => {
    let reached = 0;
    let deepest = 0;
    let sum = 0;
    for (const l of levels)
      if (l !== UNREACHED) {
        reached++;
        deepest = Math.max(deepest, l);
        sum += l;
      }
    return `reached ${reached} of ${job.nodes} nodes, deepest level ${deepest}, Σ levels ${sum}`;
  };
  const table = nodeTable(t, job);
  const gpuLevels = Array.from(table, (va) => t.loadU32(va + GRAPH.level));
  const level = new Map<number, number>([[root, 0]]);
  const queue = [root];
  for (let head = 0; head < queue.length; head++) {
    const p = queue[head]!;
    const degree = t.loadU32(p + GRAPH.degree);
    for (let k = 0; k < degree; k++) {
      const q = t.loadU32(p + GRAPH.neighbours + 4 * k);
      if (!level.has(q)) {
        level.set(q, level.get(p)! + 1);
        queue.push(q);
      }
    }
  }
  const bad = new Mismatches();
  const cpuLevels = Array.from(table, (va, i) => {
    const expected = level.get(va) ?? UNREACHED;
    if (gpuLevels[i] !== expected) bad.note(`node ${i} at 0x${va.toString(16)}: GPU level ${gpuLevels[i]}, CPU level ${expected}`);
    return expected;
  });
  return { gpuAnswer: summary(gpuLevels), cpuAnswer: summary(cpuLevels), mismatches: bad.count, firstMismatch: bad.first };
}

const api = {
  attach(handle: ThreadHandle): void {
    mem = new CpuThread(handle);
  },

  /** Build the structure and the node table; returns its root. */
  build(job: Job): Built {
    const t0 = performance.now();
    const t = thread();
    const rand = random(job.seed);
    const vas = scatter(job, rand);
    t.store(job.index, new Uint8Array(Uint32Array.from(vas).buffer));
    const root = job.structure === 'list' ? buildList(t, vas, rand) : job.structure === 'tree' ? buildTree(t, vas, rand) : buildGraph(t, vas, rand);
    const pagesUsed = new Set(vas.map((va) => Math.floor(va / 4096))).size;
    return { root, pagesUsed, ms: performance.now() - t0 };
  },

  /** Traverse again on the CPU and compare with what the GPU wrote. `slot`: the list's final (rank, jump) slot. */
  check(job: Job, root: number, slot: number): Checked {
    const t0 = performance.now();
    const t = thread();
    const r = job.structure === 'list' ? checkList(t, job, root, slot) : job.structure === 'tree' ? checkTree(t, job, root) : checkGraph(t, job, root);
    return { ...r, ms: performance.now() - t0 };
  },

  /** Accesses this thread made, and how many needed the main thread (faults). */
  counters: () => ({ accesses: thread().accesses, slowPaths: thread().slowPaths }),
};

export type Builder = typeof api;
void exposeThread(api);
