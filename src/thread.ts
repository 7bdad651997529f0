// webgpu-hmm/thread: what a CPU thread (a Web Worker, or a Node worker_threads worker) imports.
// It reaches no GPU code: only the CPU page table, the fault mailbox and comlink, so a worker
// bundle stays small. The main thread gives the worker `threadHandle(mm)` from 'webgpu-hmm'.
//
//   import { CpuThread, exposeThread, type ThreadHandle } from 'webgpu-hmm/thread';
//   let mem: CpuThread;
//   exposeThread({ attach: (h: ThreadHandle) => void (mem = new CpuThread(h)), ... });

export { CpuThread, type ThreadHandle } from './workers/cpuThread.ts';
export { exposeThread } from './workers/threads.ts';
export { HmmError, isHmmError, type HmmErrorCode } from './errors.ts';
export { PAGE_SIZE } from './constants.ts';
