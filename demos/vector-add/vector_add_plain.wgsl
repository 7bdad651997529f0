// c[i] = a[i] + b[i] without HMM: what a WebGPU user writes by hand. The host created three
// GPUBuffers, copied a and b into them (writeBuffer), and will copy c back out through a
// mappable staging buffer. The kernel sees buffers and indices, never addresses.

struct Args {
  n: u32, // number of elements
}

@group(0) @binding(0) var<uniform> u: Args;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= u.n) {
    return;
  }
  c[i] = a[i] + b[i];
}
