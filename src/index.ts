// webgpu-hmm public API: everything a user imports comes from here (docs/contract.md), as the package's
// `webgpu-hmm`; a worker imports `webgpu-hmm/thread` (src/thread.ts). Types that public calls
// take or return are exported too; internals carry the TSDoc tag `internal` and are left out of
// the .d.ts (stripInternal).

export { createSystem, System, type SystemConfig, type DeviceConfig, type PageStory } from './system.ts';
export { AddressSpace, type MmapOptions } from './mm/addressSpace.ts';
export type { PinHandle } from './mm/pins.ts';
export type { Prot, Advice, Preferred } from './mm/vmaList.ts';
export { HmmError, isHmmError, type HmmErrorCode } from './errors.ts';
export { HmmDevice } from './device/hmmDevice.ts';
export { Mirror, PROT, type DispatchOptions, type DispatchRange, type DispatchResult } from './device/mirror.ts';
export type { HmmKernel, KernelOptions } from './device/kernel.ts';
export { rangeFault, PFN_VALID, PFN_WRITE, PFN_ERROR, PFN_ZERO, PFN_DEVICE_PRIVATE, type RangeFaultRequest, type RangeFaultResult } from './hmm/rangeFault.ts';
export type { PageResult, MigrateFailure, MigrationDevice } from './hmm/migrate.ts';
export type { DevicePagemap } from './mm/pagemap.ts';
export type { IntervalNotifier, InvalidateCallback, InvalidateRange, NotifierEvent, NotifierSubscription } from './mm/notifier.ts';
export { PAGE_SIZE, HUGE_SIZE } from './constants.ts';
export { acquireDevice, describeAdapter, type AcquiredDevice, type DeviceRequest } from './gpu/acquire.ts';
export { TraceLog, PHASES, type Phase, type TraceEvent, type TraceKind, type TraceKindSummary } from './trace/trace.ts';
export { DEFAULT_PREFETCH, densityPrefetch, type PrefetchConfig } from './policy/prefetch.ts';
export { clockEviction } from './policy/eviction.ts';
/** The guard the mechanism asks policies through: test a policy with exactly the checks it will meet. */
export { askPrefetch, askEviction, askPlacement, askBatching } from './policy/guard.ts';
export { advicePlacement } from './policy/placement.ts';
export { capBatching } from './policy/batching.ts';
export type {
  PrefetchPolicy,
  PrefetchView,
  EvictionPolicy,
  EvictionCandidate,
  PlacementPolicy,
  PlacementContext,
  Placement,
  BatchingPolicy,
  BatchContext,
  BatchPlan,
  Policies,
  PolicySet,
} from './policy/types.ts';
export { describeCause, type Cause, type PageEvent, type PageMove } from './trace/provenance.ts';
/** Record and replay (sys.startRecording(); `npm run replay`): fault traces, and the simulator that replays them under any policies. */
export type { Recording } from './replay/recorder.ts';
export {
  parseFaultTrace,
  TRACE_FORMAT,
  TRACE_VERSION,
  type FaultTrace,
  type TraceEvent as FaultTraceEvent,
  type DispatchEvent,
  type CpuEvent,
  type MoveEvent,
  type TraceRound,
  type TraceDevice,
  type TraceSpace,
  type TraceVma,
  type TracePolicies,
  type TraceFrame,
  type Metrics as ReplayMetrics,
} from './replay/format.ts';
export { replayTrace, type ReplayResult, type DispatchReplay } from './replay/simulate.ts';
export { fromRuns, type PageRuns } from './replay/pageRuns.ts';
export { DEFAULT_THRASH, type ThrashConfig, type ThrashDetector } from './policy/thrashing.ts';
export { CpuThread, type ThreadHandle } from './workers/cpuThread.ts';
export { threadHandle, spawnThread, exposeThread, mailboxStats, type SpawnedThread } from './workers/threads.ts';
export { residency, residencyCounts, residenceName, residenceState, residenceDevice, Residence, type ResidenceName } from './trace/residency.ts';
