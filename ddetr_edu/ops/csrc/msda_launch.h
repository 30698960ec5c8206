// Host-side interface of the kernels: plain C++ (no torch, no CUDA header), included by the
// torch binding (msda_binding.cpp), by the launchers (msda_kernel.cu) and by the CPU build.
#pragma once

#include <cstdint>

#include "msda_math.h"

namespace msda {

enum class DType : int { Float64 = 0, Float32 = 1, Float16 = 2, BFloat16 = 3 };

inline int dtype_bytes(DType t) {
  switch (t) {
    case DType::Float64: return 8;
    case DType::Float32: return 4;
    default: return 2;
  }
}

// The level geometry, handed to the kernels by value: kernel parameters live in the GPU's
// constant bank, so a launch needs no device buffer of sizes and no host-to-device copy (which
// would wait for the GPU). The binding fills it from the Python ints of the level sizes.
constexpr int kMaxLevels = 16;
struct Levels {
  int64_t shapes[2 * kMaxLevels];  // (H_l, W_l) of level l at [2 l], [2 l + 1]
  int64_t starts[kMaxLevels];      // first token of level l in the s axis
};

// How a head's D channels are spread over threads.
struct LaunchConfig {
  int group;             // G channels per load (a 16-byte vector at most)
  int threads_per_head;  // tph, a power of two <= 32
};

// Largest G with G * bytes <= 16, G | D and every pointer aligned to G * bytes; then enough
// lanes for the D / G groups, rounded up to a power of two (idle lanes only join the shuffles)
// and capped at a warp (a lane then loops over several groups).
// `alignment`: the largest power of two dividing the addresses of value, out and grad_out.
inline LaunchConfig choose_launch_config(int value_bytes, int64_t channels, int64_t alignment) {
  int group = 16 / value_bytes;
  while (group > 1 && (channels % group != 0 || alignment % (group * value_bytes) != 0)) group /= 2;
  const int64_t groups = (channels + group - 1) / group;
  int tph = 1;
  while (tph < groups && tph < 32) tph *= 2;
  return LaunchConfig{group, tph};
}

inline int log2_of(int power_of_two) {
  int r = 0;
  while ((1 << r) < power_of_two) ++r;
  return r;
}

// Launchers (msda_kernel.cu). Pointers are device pointers; `stream` is a cudaStream_t.
// value/out/grad_out have the storage type `dtype`; locations, weights and the three gradients
// are float64 for Float64 and float32 otherwise (grad_value accumulates in that type too and is
// zero-filled by the caller). Return a cudaError_t as int (0 = success).
int launch_forward(DType dtype, const Problem& p, const LaunchConfig& cfg, const void* value,
                   const Levels& levels, const void* locations, const void* weights, void* out,
                   void* stream);

int launch_backward(DType dtype, const Problem& p, const LaunchConfig& cfg, const void* value,
                    const Levels& levels, const void* locations, const void* weights,
                    const void* grad_out, void* grad_value, void* grad_loc, void* grad_attn,
                    void* stream);

const char* error_string(int error);

}  // namespace msda
