// Runs once before the GPU tests: finds an adapter and prints its name, so every run says
// what it ran on. No adapter is a failure, never a skip.
import { acquireDevice } from '../../src/gpu/acquire.ts';

export default async function setup(): Promise<void> {
  const { device, adapterName } = await acquireDevice({ label: 'probe', storageBindingBytes: 1 << 20, storageBuffersPerStage: 8 });
  console.log(`\n[webgpu-hmm] GPU tests run on: ${adapterName}\n`);
  device.destroy();
}
