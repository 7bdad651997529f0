// Threads: how the main thread shares an address space with CPU threads, and the comlink
// plumbing that lets it call into them. The same code runs in the browser (Web Workers) and in
// Node (worker_threads, through comlink's node adapter).
//
//   main:    const t = await spawnThread<Api>(new URL('./worker.ts', import.meta.url));
//            await t.api.attach(threadHandle(mm));       // shared memory, posted once
//   worker:  exposeThread({ attach(h) { mem = new CpuThread(h) }, ... });
//
// A SharedArrayBuffer posted to a thread is shared, not copied, so the handle is a plain
// object of SharedArrayBuffers passed as an ordinary argument (never in a transfer list).

import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { HmmError, type HmmErrorCode } from '../errors.ts';
import type { AddressSpace } from '../mm/addressSpace.ts';
import type { ThreadHandle } from './cpuThread.ts';
import { MailboxServer } from './mailbox.ts';

const servers = new WeakMap<AddressSpace, MailboxServer>();

// Comlink sends a thrown Error as { message, name, stack } and rebuilds a plain Error, so a
// thread's HmmError would arrive without its code. Both ends import this module, so both
// install the same handler: an HmmError crosses as one, code and address included.
const plainThrow = Comlink.transferHandlers.get('throw')!;
Comlink.transferHandlers.set('throw', {
  canHandle: (v: unknown): v is unknown => plainThrow.canHandle(v),
  serialize(v: unknown) {
    const [wire, transfer] = plainThrow.serialize(v);
    const e = (v as { value?: unknown }).value;
    if (e instanceof HmmError) (wire as Record<string, unknown>).hmm = { code: e.code, message: e.message.slice(e.code.length + 2), address: e.address };
    return [wire, transfer];
  },
  deserialize(wire: unknown) {
    const h = (wire as { hmm?: { code: HmmErrorCode; message: string; address?: number } }).hmm;
    if (h) throw new HmmError(h.code, h.message, h.address);
    return plainThrow.deserialize(wire);
  },
});

/**
 * The handle CPU threads need to access `mm` (give it to `new CpuThread(handle)` in the
 * thread). The first call starts serving the address space's fault mailbox on this thread;
 * it stops when the address space is destroyed.
 * @throws {@link HmmError} EINVAL: the address space was destroyed.
 */
export function threadHandle(mm: AddressSpace): ThreadHandle {
  if (mm.isDestroyed) throw new HmmError('EINVAL', `threadHandle: address space ${mm.id} was destroyed`);
  let server = servers.get(mm);
  if (!server) {
    const s = new MailboxServer(mm);
    servers.set(mm, s);
    mm.onDestroy(() => s.stop());
    server = s;
  }
  return {
    mm: mm.id,
    ram: mm.ram.buffer,
    frameRefs: mm.ram.refs.buffer as SharedArrayBuffer,
    pageTable: mm.pageTable.buffer,
    mailbox: server.buffer,
  };
}

/** Mailbox requests served for `mm` so far (fault-path statistics for tests and demos). */
export function mailboxStats(mm: AddressSpace): { served: number; failed: number } {
  const s = servers.get(mm);
  return { served: s?.served ?? 0, failed: s?.failed ?? 0 };
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

/** A CPU thread started from the main thread: its comlink API and a way to end it. */
export interface SpawnedThread<T> {
  /** The worker's exposed API (its calls return promises). */
  api: Comlink.Remote<T>;
  /** End the worker. */
  terminate(): Promise<void>;
}

/**
 * Start a worker running `url` and connect comlink to it. In Node, a `.ts` worker is loaded
 * through tsx (a dev dependency); a `.js`/`.mjs` one runs as is. In the browser, pass the
 * Worker you created (bundlers need `new Worker(new URL(...), { type: 'module' })` written out).
 */
export async function spawnThread<T>(worker: URL | Worker): Promise<SpawnedThread<T>> {
  if (!(worker instanceof URL)) {
    const api = Comlink.wrap<T>(worker);
    return { api, terminate: async () => worker.terminate() };
  }
  if (!isNode) {
    const w = new Worker(worker, { type: 'module' });
    const api = Comlink.wrap<T>(w);
    return { api, terminate: async () => w.terminate() };
  }
  const { Worker: NodeWorker } = await import('node:worker_threads');
  const w = worker.pathname.endsWith('.ts')
    ? new NodeWorker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(worker.href)}); })`, { eval: true })
    : new NodeWorker(worker);
  const api = Comlink.wrap<T>(nodeEndpoint(w as unknown as Parameters<typeof nodeEndpoint>[0]));
  return {
    api,
    terminate: async () => {
      api[Comlink.releaseProxy]();
      await w.terminate();
    },
  };
}

/**
 * In a worker: serve `api` to the thread that started it (browser or Node).
 * @throws {@link HmmError} EINVAL: (Node) not running in a worker thread.
 */
export async function exposeThread(api: object): Promise<void> {
  if (isNode) {
    const { parentPort } = await import('node:worker_threads');
    if (!parentPort) throw new HmmError('EINVAL', 'exposeThread: not running in a worker thread');
    Comlink.expose(api, nodeEndpoint(parentPort as unknown as Parameters<typeof nodeEndpoint>[0]));
  } else {
    Comlink.expose(api, self as unknown as Comlink.Endpoint);
  }
}
