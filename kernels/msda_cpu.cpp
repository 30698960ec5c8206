// The CUDA kernel's per-thread code, run on the CPU: a small shared library (g++, no torch) for
// tests and the book. It emulates the GPU schedule: for every head, for every lane, call the
// same `forward_thread` / `backward_thread` as the kernels; the GPU's atomics become `+=` and its
// warp-shuffle reduction becomes a sum over lanes (so every lane's partial sum is exercised).
//
// Build: g++ -O2 -std=c++17 -shared -fPIC -I ../ddetr_edu/ops/csrc msda_cpu.cpp -o libmsda_cpu.so
// (kernels/kernel_on_cpu.py does this once and caches the library under build/).
#include <cstdint>

#include "msda_launch.h"
#include "msda_math.h"

namespace {

using msda::Problem;

template <typename A, int G>
struct HostAddGroup {
  void operator()(A* dst, const A src[G]) const {
    for (int j = 0; j < G; ++j) dst[j] += src[j];
  }
};

template <typename A>
struct HostSink {
  A* grad_loc;
  A* grad_attn;
  void operator()(int64_t i, A d_attn, A d_u, A d_v) const {
    grad_attn[i] += d_attn;  // the sum over lanes that the warp shuffle does on the GPU
    grad_loc[2 * i] += d_u;
    grad_loc[2 * i + 1] += d_v;
  }
};

bool valid_config(const Problem& p, int group, int tph) {
  const bool group_ok = group == 1 || group == 2 || group == 4 || group == 8;
  const bool tph_ok = tph >= 1 && tph <= 32 && (tph & (tph - 1)) == 0;
  return group_ok && tph_ok && p.channels % group == 0;
}

template <typename A, int G>
void forward_all(const Problem& p, const A* value, const int64_t* shapes, const int64_t* starts,
                 const A* loc, const A* attn, A* out, int tph) {
  const int64_t heads = msda::total_heads(p);
  for (int64_t head = 0; head < heads; ++head)
    for (int lane = 0; lane < tph; ++lane)
      msda::forward_thread<A, A, G>(p, value, shapes, starts, loc, attn, out, head, lane, tph);
}

template <typename A, int G>
void backward_all(const Problem& p, const A* value, const int64_t* shapes, const int64_t* starts,
                  const A* loc, const A* attn, const A* grad_out, A* grad_value, A* grad_loc,
                  A* grad_attn, int tph) {
  const int64_t heads = msda::total_heads(p);
  const int64_t samples = p.levels * p.points;
  for (int64_t i = 0; i < heads * samples; ++i) {
    grad_attn[i] = 0;
    grad_loc[2 * i] = grad_loc[2 * i + 1] = 0;
  }
  for (int64_t i = 0; i < p.batch * p.tokens * p.heads * p.channels; ++i) grad_value[i] = 0;
  const HostSink<A> sink{grad_loc, grad_attn};
  for (int64_t head = 0; head < heads; ++head)
    for (int lane = 0; lane < tph; ++lane)
      msda::backward_thread<A, A, G>(p, value, shapes, starts, loc, attn, grad_out, grad_value,
                                     head, lane, tph, true, HostAddGroup<A, G>{}, sink);
}

template <typename A>
int forward_dispatch(const Problem& p, const A* value, const int64_t* shapes, const int64_t* starts,
                     const A* loc, const A* attn, A* out, int group, int tph) {
  if (!valid_config(p, group, tph)) return 1;
  switch (group) {
    case 1: forward_all<A, 1>(p, value, shapes, starts, loc, attn, out, tph); break;
    case 2: forward_all<A, 2>(p, value, shapes, starts, loc, attn, out, tph); break;
    case 4: forward_all<A, 4>(p, value, shapes, starts, loc, attn, out, tph); break;
    default: forward_all<A, 8>(p, value, shapes, starts, loc, attn, out, tph); break;
  }
  return 0;
}

template <typename A>
int backward_dispatch(const Problem& p, const A* value, const int64_t* shapes, const int64_t* starts,
                      const A* loc, const A* attn, const A* grad_out, A* grad_value, A* grad_loc,
                      A* grad_attn, int group, int tph) {
  if (!valid_config(p, group, tph)) return 1;
  switch (group) {
    case 1: backward_all<A, 1>(p, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, tph); break;
    case 2: backward_all<A, 2>(p, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, tph); break;
    case 4: backward_all<A, 4>(p, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, tph); break;
    default: backward_all<A, 8>(p, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, tph); break;
  }
  return 0;
}

}  // namespace

// C interface for ctypes. sizes = {N, S, M, D, Lq, L, K}. Return 0 on success, 1 for a bad
// (group, threads_per_head) pair. Buffers are contiguous; pointers must be aligned for `group`.
extern "C" {

int msda_cpu_forward_f64(const int64_t* sizes, const double* value, const int64_t* shapes,
                         const int64_t* starts, const double* loc, const double* attn, double* out,
                         int group, int tph) {
  const Problem p{sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]};
  return forward_dispatch<double>(p, value, shapes, starts, loc, attn, out, group, tph);
}

int msda_cpu_forward_f32(const int64_t* sizes, const float* value, const int64_t* shapes,
                         const int64_t* starts, const float* loc, const float* attn, float* out,
                         int group, int tph) {
  const Problem p{sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]};
  return forward_dispatch<float>(p, value, shapes, starts, loc, attn, out, group, tph);
}

int msda_cpu_backward_f64(const int64_t* sizes, const double* value, const int64_t* shapes,
                          const int64_t* starts, const double* loc, const double* attn,
                          const double* grad_out, double* grad_value, double* grad_loc,
                          double* grad_attn, int group, int tph) {
  const Problem p{sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]};
  return backward_dispatch<double>(p, value, shapes, starts, loc, attn, grad_out, grad_value,
                                   grad_loc, grad_attn, group, tph);
}

int msda_cpu_backward_f32(const int64_t* sizes, const float* value, const int64_t* shapes,
                          const int64_t* starts, const float* loc, const float* attn,
                          const float* grad_out, float* grad_value, float* grad_loc,
                          float* grad_attn, int group, int tph) {
  const Problem p{sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]};
  return backward_dispatch<float>(p, value, shapes, starts, loc, attn, grad_out, grad_value,
                                  grad_loc, grad_attn, group, tph);
}

// The GPU launcher's choice of (G, threads per head) for a value element size, D and pointer
// alignment, written to config[0], config[1].
void msda_choose_launch_config(int value_bytes, int64_t channels, int64_t alignment, int* config) {
  const msda::LaunchConfig c = msda::choose_launch_config(value_bytes, channels, alignment);
  config[0] = c.group;
  config[1] = c.threads_per_head;
}

}  // extern "C"
