// Launchers: pick the kernel instance for (dtype, G) and start it on the caller's stream.
// Torch-free; the binding (msda_binding.cpp) checks tensors and calls these.
#include <cuda_runtime.h>

#include "msda_kernel.cuh"
#include "msda_launch.h"

namespace msda {
namespace {

int64_t blocks_for(const Problem& p, const LaunchConfig& cfg) {
  const int64_t threads = total_heads(p) * cfg.threads_per_head;
  return (threads + kBlockThreads - 1) / kBlockThreads;
}

template <typename T, typename A, int G>
int run_forward(const Problem& p, const LaunchConfig& cfg, const void* value, const Levels& levels,
                const void* locations, const void* weights, void* out,
                cudaStream_t stream) {
  forward_kernel<T, A, G><<<blocks_for(p, cfg), kBlockThreads, 0, stream>>>(
      p, static_cast<const T*>(value), levels, static_cast<const A*>(locations),
      static_cast<const A*>(weights), static_cast<T*>(out), log2_of(cfg.threads_per_head));
  return static_cast<int>(cudaGetLastError());
}

template <typename T, typename A, int G>
int run_backward(const Problem& p, const LaunchConfig& cfg, const void* value, const Levels& levels,
                 const void* locations, const void* weights,
                 const void* grad_out, void* grad_value, void* grad_loc, void* grad_attn,
                 cudaStream_t stream) {
  backward_kernel<T, A, G><<<blocks_for(p, cfg), kBlockThreads, 0, stream>>>(
      p, static_cast<const T*>(value), levels, static_cast<const A*>(locations),
      static_cast<const A*>(weights), static_cast<const T*>(grad_out), static_cast<A*>(grad_value),
      static_cast<A*>(grad_loc), static_cast<A*>(grad_attn), log2_of(cfg.threads_per_head));
  return static_cast<int>(cudaGetLastError());
}

// Calls fn.template operator()<T, A, G>() for the runtime (dtype, group); the groups compiled per
// type are those a 16-byte vector allows.
template <class Fn>
int dispatch(DType dtype, int group, const Fn& fn) {
  switch (dtype) {
    case DType::Float64:
      if (group == 2) return fn.template operator()<double, double, 2>();
      if (group == 1) return fn.template operator()<double, double, 1>();
      break;
    case DType::Float32:
      if (group == 4) return fn.template operator()<float, float, 4>();
      if (group == 2) return fn.template operator()<float, float, 2>();
      if (group == 1) return fn.template operator()<float, float, 1>();
      break;
    case DType::Float16:
      if (group == 8) return fn.template operator()<__half, float, 8>();
      if (group == 4) return fn.template operator()<__half, float, 4>();
      if (group == 2) return fn.template operator()<__half, float, 2>();
      if (group == 1) return fn.template operator()<__half, float, 1>();
      break;
    case DType::BFloat16:
      if (group == 8) return fn.template operator()<__nv_bfloat16, float, 8>();
      if (group == 4) return fn.template operator()<__nv_bfloat16, float, 4>();
      if (group == 2) return fn.template operator()<__nv_bfloat16, float, 2>();
      if (group == 1) return fn.template operator()<__nv_bfloat16, float, 1>();
      break;
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

struct ForwardCall {
  const Problem& p;
  const LaunchConfig& cfg;
  const void* value;
  const Levels& levels;
  const void* locations;
  const void* weights;
  void* out;
  cudaStream_t stream;
  template <typename T, typename A, int G>
  int operator()() const {
    return run_forward<T, A, G>(p, cfg, value, levels, locations, weights, out, stream);
  }
};

struct BackwardCall {
  const Problem& p;
  const LaunchConfig& cfg;
  const void* value;
  const Levels& levels;
  const void* locations;
  const void* weights;
  const void* grad_out;
  void* grad_value;
  void* grad_loc;
  void* grad_attn;
  cudaStream_t stream;
  template <typename T, typename A, int G>
  int operator()() const {
    return run_backward<T, A, G>(p, cfg, value, levels, locations, weights, grad_out,
                                 grad_value, grad_loc, grad_attn, stream);
  }
};

}  // namespace

int launch_forward(DType dtype, const Problem& p, const LaunchConfig& cfg, const void* value,
                   const Levels& levels, const void* locations, const void* weights, void* out,
                   void* stream) {
  if (total_heads(p) == 0 || p.channels == 0) return 0;
  const ForwardCall call{p, cfg, value, levels, locations, weights, out,
                         static_cast<cudaStream_t>(stream)};
  return dispatch(dtype, cfg.group, call);
}

int launch_backward(DType dtype, const Problem& p, const LaunchConfig& cfg, const void* value,
                    const Levels& levels, const void* locations, const void* weights,
                    const void* grad_out, void* grad_value, void* grad_loc, void* grad_attn,
                    void* stream) {
  if (total_heads(p) == 0 || p.channels == 0) return 0;
  const BackwardCall call{p,        cfg,        value,    levels,    locations, weights,
                          grad_out, grad_value, grad_loc, grad_attn, static_cast<cudaStream_t>(stream)};
  return dispatch(dtype, cfg.group, call);
}

const char* error_string(int error) { return cudaGetErrorString(static_cast<cudaError_t>(error)); }

}  // namespace msda
