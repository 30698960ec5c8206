// The CPU backend of the attention core: the GPU kernel's per-thread bodies (msda_math.h) run by
// at::parallel_for instead of CUDA threads. A small shared library with a C interface (no
// pybind, no torch tensors: ddetr_edu/ops/cpu_backend.py passes contiguous buffers and sizes
// through ctypes); it includes only ATen/Parallel.h, so it builds in a few seconds.
//
// Schedule. A "head" (n, q, m) owns D output channels; `forward_thread` / `backward_thread` serve
// it as lane `lane` of `tph` lanes, each lane owning G consecutive channels per step.
// * The CPU's own choice (group = 0): one lane per head (tph = 1) and G the largest of
//   32, 16, 8, 4, 2, 1 that divides D, so the corners of a sample are located once for (up to)
//   32 channels and the channel loops are fixed-length, vectorised by the compiler.
// * Any other (G, tph) replays the GPU's split of a head over lanes (tests, book): same code, the
//   lanes of a head run one after the other in one CPU thread.
// * Forward: the heads are split over the CPU threads; each head writes only its own D outputs.
// * Backward: dLoss/dV[n, s, m, :] is written only by the heads of image n and head m, so the
//   work is split over the N*M (image, head) slices and each slice walks its queries: no two CPU
//   threads ever add into the same dV element (no atomics, no per-thread copies of dV: the extra
//   memory is the gradients themselves). dA and d(x, y) of a head are summed over its lanes by
//   `+=` in the thread that owns the head (the GPU does that sum with warp shuffles).
//
// Layouts (contiguous): value (N, S, M, D), shapes (L, 2) int64, starts (L,) int64, locations
// (N, Lq, M, L, K, 2), weights (N, Lq, M, L, K), out (N, Lq, M*D), all of one type A (float or
// double; the caller converts half-precision values to float32 first).
#include <ATen/Parallel.h>

#include <cstdint>

#include "msda_launch.h"
#include "msda_math.h"

namespace {

using msda::Problem;

template <typename A, int G>
struct AddGroup {  // the GPU's atomicAdd; here the only writer of these channels is this thread
  void operator()(A* dst, const A src[G]) const {
    for (int j = 0; j < G; ++j) dst[j] += src[j];
  }
};

template <typename A>
struct LaneSum {  // the GPU's warp-shuffle sum over the lanes of a head
  A* grad_loc;
  A* grad_attn;
  void operator()(int64_t i, A d_attn, A d_u, A d_v) const {
    grad_attn[i] += d_attn;
    grad_loc[2 * i] += d_u;
    grad_loc[2 * i + 1] += d_v;
  }
};

constexpr int64_t kHeadsPerTask = 64;  // smallest share of the forward's heads given to a thread

template <typename A, int G>
void forward_all(const Problem& p, const A* value, const int64_t* shapes, const int64_t* starts,
                 const A* loc, const A* attn, A* out, int tph) {
  at::parallel_for(0, msda::total_heads(p), kHeadsPerTask, [&](int64_t begin, int64_t end) {
    for (int64_t head = begin; head < end; ++head)
      for (int lane = 0; lane < tph; ++lane)
        msda::forward_thread<A, A, G>(p, value, shapes, starts, loc, attn, out, head, lane, tph);
  });
}

// grad_value, grad_loc and grad_attn must be zero-filled by the caller.
template <typename A, int G>
void backward_all(const Problem& p, const A* value, const int64_t* shapes, const int64_t* starts,
                  const A* loc, const A* attn, const A* grad_out, A* grad_value, A* grad_loc,
                  A* grad_attn, int tph) {
  const LaneSum<A> sink{grad_loc, grad_attn};
  at::parallel_for(0, p.batch * p.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t slice = begin; slice < end; ++slice) {  // slice = n * M + m
      const int64_t n = slice / p.heads, m = slice % p.heads;
      for (int64_t q = 0; q < p.queries; ++q) {
        const int64_t head = (n * p.queries + q) * p.heads + m;
        for (int lane = 0; lane < tph; ++lane)
          msda::backward_thread<A, A, G>(p, value, shapes, starts, loc, attn, grad_out, grad_value,
                                         head, lane, tph, true, AddGroup<A, G>{}, sink);
      }
    }
  });
}

// The CPU's own channel group: the largest of 32, 16, ..., 1 dividing D.
int cpu_group(int64_t channels) {
  int group = 32;
  while (group > 1 && channels % group != 0) group /= 2;
  return group;
}

bool valid_config(const Problem& p, int group, int tph) {
  const bool group_ok = group >= 1 && group <= 32 && (group & (group - 1)) == 0;
  const bool tph_ok = tph >= 1 && tph <= 32 && (tph & (tph - 1)) == 0;
  return group_ok && tph_ok && p.channels % group == 0;
}

// Calls body.template operator()<G>() with the compile-time G equal to `group`.
template <class Body>
void with_group(int group, Body body) {
  switch (group) {
    case 1: body.template operator()<1>(); break;
    case 2: body.template operator()<2>(); break;
    case 4: body.template operator()<4>(); break;
    case 8: body.template operator()<8>(); break;
    case 16: body.template operator()<16>(); break;
    default: body.template operator()<32>(); break;
  }
}

template <typename A>
struct Forward {
  const Problem& p;
  const A *value, *loc, *attn;
  const int64_t *shapes, *starts;
  A* out;
  int tph;
  template <int G>
  void operator()() const { forward_all<A, G>(p, value, shapes, starts, loc, attn, out, tph); }
};

template <typename A>
struct Backward {
  const Problem& p;
  const A *value, *loc, *attn, *grad_out;
  const int64_t *shapes, *starts;
  A *grad_value, *grad_loc, *grad_attn;
  int tph;
  template <int G>
  void operator()() const {
    backward_all<A, G>(p, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc, grad_attn, tph);
  }
};

// group = 0: the CPU's schedule (cpu_group(D), one lane per head); else the caller's (G, tph).
bool resolve(const Problem& p, int& group, int& tph) {
  if (group == 0) {
    group = cpu_group(p.channels);
    tph = 1;
  }
  return valid_config(p, group, tph);
}

Problem problem_of(const int64_t* sizes) {
  return Problem{sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6]};
}

template <typename A>
int forward(const int64_t* sizes, const void* value, const int64_t* shapes, const int64_t* starts,
            const void* loc, const void* attn, void* out, int group, int tph) {
  const Problem p = problem_of(sizes);
  if (!resolve(p, group, tph)) return 1;
  with_group(group, Forward<A>{p, static_cast<const A*>(value), static_cast<const A*>(loc),
                               static_cast<const A*>(attn), shapes, starts, static_cast<A*>(out), tph});
  return 0;
}

template <typename A>
int backward(const int64_t* sizes, const void* value, const int64_t* shapes, const int64_t* starts,
             const void* loc, const void* attn, const void* grad_out, void* grad_value, void* grad_loc,
             void* grad_attn, int group, int tph) {
  const Problem p = problem_of(sizes);
  if (!resolve(p, group, tph)) return 1;
  with_group(group, Backward<A>{p, static_cast<const A*>(value), static_cast<const A*>(loc),
                                static_cast<const A*>(attn), static_cast<const A*>(grad_out), shapes,
                                starts, static_cast<A*>(grad_value), static_cast<A*>(grad_loc),
                                static_cast<A*>(grad_attn), tph});
  return 0;
}

}  // namespace

// C interface (ctypes). sizes = {N, S, M, D, Lq, L, K}; dtype 0 = float64, 1 = float32.
// group = 0 picks the CPU's schedule; otherwise (group, tph) is a GPU launch configuration to
// replay. Return 0 on success, 1 for an invalid (group, tph), 2 for an unknown dtype.
extern "C" {

int msda_cpu_forward(int dtype, const int64_t* sizes, const void* value, const int64_t* shapes,
                     const int64_t* starts, const void* loc, const void* attn, void* out, int group,
                     int tph) {
  if (dtype == 0) return forward<double>(sizes, value, shapes, starts, loc, attn, out, group, tph);
  if (dtype == 1) return forward<float>(sizes, value, shapes, starts, loc, attn, out, group, tph);
  return 2;
}

int msda_cpu_backward(int dtype, const int64_t* sizes, const void* value, const int64_t* shapes,
                      const int64_t* starts, const void* loc, const void* attn, const void* grad_out,
                      void* grad_value, void* grad_loc, void* grad_attn, int group, int tph) {
  if (dtype == 0)
    return backward<double>(sizes, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc,
                            grad_attn, group, tph);
  if (dtype == 1)
    return backward<float>(sizes, value, shapes, starts, loc, attn, grad_out, grad_value, grad_loc,
                           grad_attn, group, tph);
  return 2;
}

// The CPU schedule's channel group for D.
int msda_cpu_group(int64_t channels) { return cpu_group(channels); }

// The GPU launcher's choice of (G, threads per head) for a value element size, D and pointer
// alignment, written to config[0], config[1].
void msda_choose_launch_config(int value_bytes, int64_t channels, int64_t alignment, int* config) {
  const msda::LaunchConfig c = msda::choose_launch_config(value_bytes, channels, alignment);
  config[0] = c.group;
  config[1] = c.threads_per_head;
}

}  // extern "C"
