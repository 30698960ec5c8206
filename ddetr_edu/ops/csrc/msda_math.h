// The arithmetic of multi-scale deformable attention, shared by the GPU kernel and its CPU build.
//
// Everything here is a `MSDA_HD` function: `__host__ __device__` under nvcc, plain `inline` under
// g++. The CUDA kernels (msda_kernel.cuh) and the CPU backend (msda_cpu.cpp) both call the
// per-thread bodies `forward_thread` and `backward_thread` below, so the loops that run on the
// CPU are the loops that run on the GPU; only the thread scheduling, the atomics and the
// reduction across the threads of a head differ (they are passed in as small functors).
//
// No torch and no CUDA header is included: this file compiles with any C++17 compiler.
//
// Axis glossary: n batch, q queries, s tokens of all levels, m heads, l levels, k points,
// d channels per head. Layouts (all contiguous, row-major):
//   value        (N, S, M, D)         T
//   shapes       (L, 2) int64         rows (H_l, W_l)
//   starts       (L,)   int64         first token of level l
//   locations    (N, Lq, M, L, K, 2)  A, normalised (x, y)
//   weights      (N, Lq, M, L, K)     A
//   out          (N, Lq, M, D)        T   (= (N, Lq, M*D), head-major channels)
// T is the storage type of value/out (double, float, half, bfloat16), A the accumulation and
// coordinate type (double for double, float otherwise).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MSDA_HD __host__ __device__ __forceinline__
#define MSDA_UNROLL _Pragma("unroll")
#else
#define MSDA_HD inline
#define MSDA_UNROLL
#endif

namespace msda {

// Sizes of one call. A "head" is one (n, q, m) triple: it owns D output channels.
struct Problem {
  int64_t batch;     // N
  int64_t tokens;    // S = sum_l H_l * W_l
  int64_t heads;     // M
  int64_t channels;  // D
  int64_t queries;   // Lq
  int64_t levels;    // L
  int64_t points;    // K
};

MSDA_HD int64_t total_heads(const Problem& p) { return p.batch * p.queries * p.heads; }

// ---------------------------------------------------------------------------------------------
// Storage <-> accumulation conversions. The primary template covers float and double; the CUDA
// header adds __half and __nv_bfloat16 (torch builds with implicit half conversions disabled).
template <typename T, typename A>
struct ScalarIO {
  MSDA_HD static A load(T x) { return static_cast<A>(x); }
  MSDA_HD static T store(A x) { return static_cast<T>(x); }
};

// G consecutive channels, aligned so that one load is one vector instruction (16 bytes at most).
template <typename T, int G>
struct alignas(sizeof(T) * G) Pack {
  T v[G];
};

// Load / store G channels as one vector. The primary template covers float and double; the CUDA
// header specialises 2-byte types, which it moves as 32-bit words (two channels per word).
// On the GPU a pack is one aligned vector instruction (the launcher checks the alignment); on the
// CPU it is a plain loop over the G channels, which the compiler turns into unaligned vector loads
// (the CPU build uses groups of up to 32 channels, wider than any alignment torch guarantees).
template <typename T, typename A, int G>
struct PackIO {
  MSDA_HD static void load(const T* src, A dst[G]) {
#if defined(__CUDACC__)
    const Pack<T, G> pack = *reinterpret_cast<const Pack<T, G>*>(src);
    MSDA_UNROLL
    for (int g = 0; g < G; ++g) dst[g] = ScalarIO<T, A>::load(pack.v[g]);
#else
    for (int g = 0; g < G; ++g) dst[g] = ScalarIO<T, A>::load(src[g]);
#endif
  }
  MSDA_HD static void store(T* dst, const A src[G]) {
#if defined(__CUDACC__)
    Pack<T, G> pack;
    MSDA_UNROLL
    for (int g = 0; g < G; ++g) pack.v[g] = ScalarIO<T, A>::store(src[g]);
    *reinterpret_cast<Pack<T, G>*>(dst) = pack;
#else
    for (int g = 0; g < G; ++g) dst[g] = ScalarIO<T, A>::store(src[g]);
#endif
  }
};

template <typename T, typename A, int G>
MSDA_HD void load_pack(const T* src, A dst[G]) { PackIO<T, A, G>::load(src, dst); }

template <typename T, typename A, int G>
MSDA_HD void store_pack(T* dst, const A src[G]) { PackIO<T, A, G>::store(dst, src); }

MSDA_HD float floor_of(float x) {
#if defined(__CUDA_ARCH__)
  return floorf(x);
#else
  return std::floor(x);
#endif
}

MSDA_HD double floor_of(double x) {
#if defined(__CUDA_ARCH__)
  return ::floor(x);
#else
  return std::floor(x);
#endif
}

// ---------------------------------------------------------------------------------------------
// Bilinear sampling, grid_sample(align_corners=False, padding_mode="zeros") convention.
//
// A normalised point (x, y) lands on an H x W map at the pixel coordinate
//     u = x * W - 1/2,   v = y * H - 1/2       (pixel i spans [i, i+1), centre i + 1/2)
// and reads the corners c = (u0 + du, v0 + dv), u0 = floor(u), v0 = floor(v), fu = u - u0,
// fv = v - v0, in the project's corner order (du, dv) = (0,0), (1,0), (0,1), (1,1):
//     b_00 = (1-fu)(1-fv),  b_10 = fu (1-fv),  b_01 = (1-fu) fv,  b_11 = fu fv.
// A corner outside the map reads 0 (its weight is dropped).
template <typename A>
struct Bilinear {
  bool any_inside;   // false: all four corners are outside, the sample reads 0 everywhere
  int64_t u0, v0;    // top-left corner
  A fu, fv;          // fractional parts
  bool inside[4];    // corner order 00, 10, 01, 11
  A weight[4];       // b_c, zero for corners outside
};

template <typename A>
MSDA_HD Bilinear<A> locate(A x, A y, int64_t height, int64_t width) {
  Bilinear<A> b;
  const A u = x * static_cast<A>(width) - static_cast<A>(0.5);
  const A v = y * static_cast<A>(height) - static_cast<A>(0.5);
  // Some corner is inside iff u in [-1, W) and v in [-1, H); written so that NaN is "outside"
  // and huge values never reach the integer conversion.
  b.any_inside = (u >= static_cast<A>(-1)) && (u < static_cast<A>(width)) &&
                 (v >= static_cast<A>(-1)) && (v < static_cast<A>(height));
  if (!b.any_inside) {
    b.u0 = b.v0 = 0;
    b.fu = b.fv = static_cast<A>(0);
    MSDA_UNROLL
    for (int c = 0; c < 4; ++c) {
      b.inside[c] = false;
      b.weight[c] = static_cast<A>(0);
    }
    return b;
  }
  const A fl_u = floor_of(u);
  const A fl_v = floor_of(v);
  b.u0 = static_cast<int64_t>(fl_u);
  b.v0 = static_cast<int64_t>(fl_v);
  b.fu = u - fl_u;
  b.fv = v - fl_v;
  const A one = static_cast<A>(1);
  const bool u_lo = b.u0 >= 0, u_hi = b.u0 + 1 <= width - 1;
  const bool v_lo = b.v0 >= 0, v_hi = b.v0 + 1 <= height - 1;
  b.inside[0] = u_lo && v_lo;
  b.inside[1] = u_hi && v_lo;
  b.inside[2] = u_lo && v_hi;
  b.inside[3] = u_hi && v_hi;
  const A w[4] = {(one - b.fu) * (one - b.fv), b.fu * (one - b.fv), (one - b.fu) * b.fv, b.fu * b.fv};
  MSDA_UNROLL
  for (int c = 0; c < 4; ++c) b.weight[c] = b.inside[c] ? w[c] : static_cast<A>(0);
  return b;
}

// Token offset (row of the (S, M, D) value table) of corner c, valid only if inside[c].
template <typename A>
MSDA_HD int64_t corner_pixel(const Bilinear<A>& b, int c, int64_t width) {
  return (b.v0 + (c >> 1)) * width + (b.u0 + (c & 1));
}

// ---------------------------------------------------------------------------------------------
// Forward body of one thread. A head (n, q, m) is served by `tph` threads ("lanes"); lane j owns
// the channel groups [c0, c0 + G) with c0 = (j + i * tph) * G, i = 0, 1, ...
//     out[n, q, m, c] = sum_l sum_k A[n,q,m,l,k] * sum_corners b_c * V[n, start_l + pix_c, m, c]
template <typename T, typename A, int G>
MSDA_HD void forward_thread(const Problem& p, const T* value, const int64_t* shapes,
                            const int64_t* starts, const A* locations, const A* weights, T* out,
                            int64_t head, int lane, int tph) {
  const int64_t m = head % p.heads;
  const int64_t n = head / (p.queries * p.heads);
  const int64_t samples = p.levels * p.points;          // L*K samples per head
  const A* loc_h = locations + head * samples * 2;      // (L, K, 2) of this head
  const A* w_h = weights + head * samples;              // (L, K)
  const int64_t row = p.heads * p.channels;             // stride of one token in value
  const T* value_nm = value + n * p.tokens * row + m * p.channels;
  for (int64_t c0 = static_cast<int64_t>(lane) * G; c0 < p.channels; c0 += static_cast<int64_t>(tph) * G) {
    A acc[G];
    MSDA_UNROLL
    for (int g = 0; g < G; ++g) acc[g] = static_cast<A>(0);
    for (int64_t l = 0; l < p.levels; ++l) {
      const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
      const T* level = value_nm + starts[l] * row + c0;
      for (int64_t k = 0; k < p.points; ++k) {
        const int64_t i = l * p.points + k;
        const Bilinear<A> b = locate(loc_h[2 * i], loc_h[2 * i + 1], height, width);
        if (!b.any_inside) continue;
        const A a = w_h[i];
        MSDA_UNROLL
        for (int c = 0; c < 4; ++c) {
          if (!b.inside[c]) continue;
          A v[G];
          load_pack<T, A, G>(level + corner_pixel(b, c, width) * row, v);
          const A ab = a * b.weight[c];
          MSDA_UNROLL
          for (int g = 0; g < G; ++g) acc[g] += ab * v[g];
        }
      }
    }
    store_pack<T, A, G>(out + head * p.channels + c0, acc);
  }
}

// ---------------------------------------------------------------------------------------------
// Backward body of one thread. With g = dLoss/d out[n, q, m, :], a = A[n,q,m,l,k] and the dot
// product dot_c = <V_c, g> of each corner's D channels with g:
//     dLoss/dV[n, start_l + pix_c, m, :] += a * b_c * g                      (scattered: `add`)
//     dLoss/dA = sum_c b_c dot_c
//     dLoss/dx = a * W * sum_c (db_c/du) dot_c     db/du: 00 -(1-fv), 10 (1-fv), 01 -fv, 11 fv
//     dLoss/dy = a * H * sum_c (db_c/dv) dot_c     db/dv: 00 -(1-fu), 10 -fu, 01 (1-fu), 11 fu
// (u = x W - 1/2, so du/dx = W; v = y H - 1/2, dv/dy = H.) One corner is in registers at a time.
// Each lane sums its own channels; `sink(i, dA, dx, dy)` then reduces the partial sums over the
// tph lanes of the head and writes sample i's result (a warp shuffle on the GPU, += on the CPU).
// `sink` is called for every sample by every lane, active or not, so that GPU lanes stay in step.
//   add:  add(grad_value_ptr, const A vals[G])     scatter G channels into dLoss/dV
template <typename T, typename A, int G, class AddGroup, class Sink>
MSDA_HD void backward_thread(const Problem& p, const T* value, const int64_t* shapes,
                             const int64_t* starts, const A* locations, const A* weights,
                             const T* grad_out, A* grad_value, int64_t head, int lane, int tph,
                             bool active, AddGroup add, Sink sink) {
  const int64_t samples = p.levels * p.points;
  const int64_t m = active ? head % p.heads : 0;
  const int64_t n = active ? head / (p.queries * p.heads) : 0;
  const A* loc_h = locations + (active ? head : 0) * samples * 2;
  const A* w_h = weights + (active ? head : 0) * samples;
  const int64_t row = p.heads * p.channels;
  const int64_t base = n * p.tokens * row + m * p.channels;  // (n, token 0, m, channel 0)
  const T* g_h = grad_out + (active ? head : 0) * p.channels;
  const A zero = static_cast<A>(0), one = static_cast<A>(1);
  for (int64_t l = 0; l < p.levels; ++l) {
    const int64_t height = shapes[2 * l], width = shapes[2 * l + 1];
    const int64_t level = base + starts[l] * row;
    for (int64_t k = 0; k < p.points; ++k) {
      const int64_t i = l * p.points + k;
      A d_attn = zero, d_u = zero, d_v = zero;  // partial sums over this lane's channels
      const Bilinear<A> b = active ? locate(loc_h[2 * i], loc_h[2 * i + 1], height, width)
                                   : locate(zero, zero, int64_t(0), int64_t(0));
      if (b.any_inside) {
        const A a = w_h[i];
        const A db_du[4] = {b.fv - one, one - b.fv, -b.fv, b.fv};
        const A db_dv[4] = {b.fu - one, -b.fu, one - b.fu, b.fu};
        for (int64_t c0 = static_cast<int64_t>(lane) * G; c0 < p.channels;
             c0 += static_cast<int64_t>(tph) * G) {
          A g[G];
          load_pack<T, A, G>(g_h + c0, g);
          MSDA_UNROLL
          for (int c = 0; c < 4; ++c) {
            if (!b.inside[c]) continue;
            const int64_t offset = level + corner_pixel(b, c, width) * row + c0;
            A v[G];
            load_pack<T, A, G>(value + offset, v);
            A dot = zero;  // <V_c, g> over this lane's G channels
            MSDA_UNROLL
            for (int j = 0; j < G; ++j) dot += v[j] * g[j];
            d_attn += b.weight[c] * dot;
            d_u += db_du[c] * dot;
            d_v += db_dv[c] * dot;
            const A ab = a * b.weight[c];
            A contrib[G];
            MSDA_UNROLL
            for (int j = 0; j < G; ++j) contrib[j] = ab * g[j];
            add(grad_value + offset, contrib);
          }
        }
        d_u *= a * static_cast<A>(width);   // du/dx = W
        d_v *= a * static_cast<A>(height);  // dv/dy = H
      }
      sink(head * samples + i, d_attn, d_u, d_v);
    }
  }
}

}  // namespace msda
