// CUDA kernels of multi-scale deformable attention: thin __global__ wrappers around the
// per-thread bodies of msda_math.h, plus what only a GPU has (atomics, warp shuffles, half types).
// Torch-free: compiles with nvcc alone (see tests/kernels/test_kernel_compiles.py).
//
// Thread layout (see kernels/README.md): thread t serves head (n, q, m) = t / tph, lane t % tph,
// heads ordered (n, q, m) with m fastest. tph is a power of two <= 32, so the lanes of a head are
// an aligned segment of one warp and the backward reduces them with __shfl_xor_sync.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "msda_launch.h"
#include "msda_math.h"

namespace msda {

constexpr int kBlockThreads = 256;

template <>
struct ScalarIO<__half, float> {
  __host__ __device__ __forceinline__ static float load(__half x) { return __half2float(x); }
  __host__ __device__ __forceinline__ static __half store(float x) { return __float2half_rn(x); }
};

template <>
struct ScalarIO<__nv_bfloat16, float> {
  __host__ __device__ __forceinline__ static float load(__nv_bfloat16 x) { return __bfloat162float(x); }
  __host__ __device__ __forceinline__ static __nv_bfloat16 store(float x) { return __float2bfloat16_rn(x); }
};

// 2-byte types move as 32-bit words: the compiler keeps a word array in registers, while an
// array of 16-bit structs reinterpreted as a vector would go through local memory.
template <typename T>
struct HalfBits;
template <>
struct HalfBits<__half> {
  __device__ __forceinline__ static float to_float(unsigned short b) { return __half2float(__ushort_as_half(b)); }
  __device__ __forceinline__ static unsigned short from_float(float x) { return __half_as_ushort(__float2half_rn(x)); }
};
template <>
struct HalfBits<__nv_bfloat16> {
  __device__ __forceinline__ static float to_float(unsigned short b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
  __device__ __forceinline__ static unsigned short from_float(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
};

template <typename T, int G>
struct HalfPackIO {
  static_assert(G % 2 == 0, "two channels per 32-bit word");
  __device__ __forceinline__ static void load(const T* src, float dst[G]) {
    const Pack<unsigned int, G / 2> words = *reinterpret_cast<const Pack<unsigned int, G / 2>*>(src);
    MSDA_UNROLL
    for (int w = 0; w < G / 2; ++w) {
      dst[2 * w] = HalfBits<T>::to_float(static_cast<unsigned short>(words.v[w] & 0xffffu));
      dst[2 * w + 1] = HalfBits<T>::to_float(static_cast<unsigned short>(words.v[w] >> 16));
    }
  }
  __device__ __forceinline__ static void store(T* dst, const float src[G]) {
    Pack<unsigned int, G / 2> words;
    MSDA_UNROLL
    for (int w = 0; w < G / 2; ++w) {
      words.v[w] = static_cast<unsigned int>(HalfBits<T>::from_float(src[2 * w])) |
                   (static_cast<unsigned int>(HalfBits<T>::from_float(src[2 * w + 1])) << 16);
    }
    *reinterpret_cast<Pack<unsigned int, G / 2>*>(dst) = words;
  }
};

// G = 1 keeps the primary template (one scalar load through ScalarIO).
template <> struct PackIO<__half, float, 2> : HalfPackIO<__half, 2> {};
template <> struct PackIO<__half, float, 4> : HalfPackIO<__half, 4> {};
template <> struct PackIO<__half, float, 8> : HalfPackIO<__half, 8> {};
template <> struct PackIO<__nv_bfloat16, float, 2> : HalfPackIO<__nv_bfloat16, 2> {};
template <> struct PackIO<__nv_bfloat16, float, 4> : HalfPackIO<__nv_bfloat16, 4> {};
template <> struct PackIO<__nv_bfloat16, float, 8> : HalfPackIO<__nv_bfloat16, 8> {};

// Scatter G channels into dLoss/dV with global atomics (many queries hit the same pixel).
// sm_90 has 8- and 16-byte float atomics: one instruction per 2 or 4 channels.
template <typename A, int G>
struct AtomicAddGroup {
  __device__ __forceinline__ void operator()(A* dst, const A src[G]) const {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900) && !defined(MSDA_NO_VECTOR_ATOMICS)
    constexpr bool kVector = sizeof(A) == 4 && (G % 4 == 0 || G == 2);
#else
    constexpr bool kVector = false;
#endif
    if constexpr (kVector && G % 4 == 0) {
      MSDA_UNROLL
      for (int j = 0; j < G; j += 4) {
        atomicAdd(reinterpret_cast<float4*>(dst + j), make_float4(src[j], src[j + 1], src[j + 2], src[j + 3]));
      }
    } else if constexpr (kVector && G == 2) {
      atomicAdd(reinterpret_cast<float2*>(dst), make_float2(src[0], src[1]));
    } else {
      MSDA_UNROLL
      for (int j = 0; j < G; ++j) atomicAdd(dst + j, src[j]);
    }
  }
};

// Reduce the partial sums of the tph lanes of a head (an aligned warp segment) and let lane 0
// write dLoss/dA and dLoss/d(x, y) of sample i. No global atomics for these two outputs.
template <typename A>
struct WarpSegmentSink {
  A* grad_loc;   // (N, Lq, M, L, K, 2)
  A* grad_attn;  // (N, Lq, M, L, K)
  int tph;
  bool writer;   // active head and lane 0
  __device__ __forceinline__ void operator()(int64_t i, A d_attn, A d_u, A d_v) const {
    for (int offset = tph >> 1; offset > 0; offset >>= 1) {
      d_attn += __shfl_xor_sync(0xffffffffu, d_attn, offset);
      d_u += __shfl_xor_sync(0xffffffffu, d_u, offset);
      d_v += __shfl_xor_sync(0xffffffffu, d_v, offset);
    }
    if (writer) {
      grad_attn[i] = d_attn;
      grad_loc[2 * i] = d_u;
      grad_loc[2 * i + 1] = d_v;
    }
  }
};

// At least four blocks per SM (64 registers).
template <typename T, typename A, int G>
__global__ void __launch_bounds__(kBlockThreads, 4)
forward_kernel(Problem p, const T* __restrict__ value, const __grid_constant__ Levels levels,
               const A* __restrict__ locations, const A* __restrict__ weights, T* __restrict__ out,
               int tph_log2) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t head = t >> tph_log2;
  if (head >= total_heads(p)) return;  // no shuffles in the forward: tail threads may leave
  const int lane = static_cast<int>(t & ((1 << tph_log2) - 1));
  forward_thread<T, A, G>(p, value, levels.shapes, levels.starts, locations, weights, out, head, lane,
                          1 << tph_log2);
}

// At most 128 registers (two blocks per SM): the unrolled corner loop otherwise takes ~200 on sm_80.
template <typename T, typename A, int G>
__global__ void __launch_bounds__(kBlockThreads, 2)
backward_kernel(Problem p, const T* __restrict__ value, const __grid_constant__ Levels levels,
                const A* __restrict__ locations, const A* __restrict__ weights,
                const T* __restrict__ grad_out,
                A* __restrict__ grad_value, A* __restrict__ grad_loc, A* __restrict__ grad_attn,
                int tph_log2) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t head = t >> tph_log2;
  const int lane = static_cast<int>(t & ((1 << tph_log2) - 1));
  const bool active = head < total_heads(p);  // tail threads stay for the warp shuffles
  WarpSegmentSink<A> sink{grad_loc, grad_attn, 1 << tph_log2, active && lane == 0};
  backward_thread<T, A, G>(p, value, levels.shapes, levels.starts, locations, weights, grad_out, grad_value,
                           head, lane, 1 << tph_log2, active, AtomicAddGroup<A, G>{}, sink);
}

}  // namespace msda
