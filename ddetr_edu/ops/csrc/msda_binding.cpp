// Torch binding of the CUDA kernels: checks the tensors, allocates the outputs, and calls the
// torch-free launchers of msda_kernel.cu on the current stream. Autograd, the fake (meta)
// implementation and the torch.library registration live in Python
// (ddetr_edu/ops/cuda_backend.py); this module only exposes `forward` and `backward`.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <cstdint>
#include <tuple>
#include <vector>

#include "msda_launch.h"

namespace {

msda::DType kernel_dtype(const at::Tensor& value) {
  switch (value.scalar_type()) {
    case at::kDouble: return msda::DType::Float64;
    case at::kFloat: return msda::DType::Float32;
    case at::kHalf: return msda::DType::Float16;
    case at::kBFloat16: return msda::DType::BFloat16;
    default:
      TORCH_CHECK_VALUE(false, "value must be float64, float32, float16 or bfloat16, got ", value.scalar_type());
  }
}

// Coordinates, weights and accumulators: float64 for float64 values, float32 otherwise.
at::ScalarType accumulation_type(const at::Tensor& value) {
  return value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

int64_t pointer_alignment(std::initializer_list<const at::Tensor*> tensors) {
  int64_t alignment = 16;
  for (const at::Tensor* t : tensors) {
    const auto address = reinterpret_cast<std::uintptr_t>(t->data_ptr());
    while (alignment > 1 && address % alignment != 0) alignment /= 2;
  }
  return alignment;
}

struct Inputs {
  at::Tensor value, loc, attn;
  msda::Problem problem;
  msda::Levels levels;
};

// spatial_shapes: (H_0, W_0, H_1, W_1, ...) and level_start_index: (start_0, start_1, ...) as
// host ints, copied into the kernel's by-value `Levels`: nothing is read back from the GPU and
// nothing is copied to it before the launch.
Inputs prepare(const at::Tensor& value, at::IntArrayRef spatial_shapes, at::IntArrayRef level_start_index,
               const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  TORCH_CHECK_VALUE(value.is_cuda(), "value must be a CUDA tensor, got device ", value.device());
  TORCH_CHECK_VALUE(value.dim() == 4, "value must be (N, S, M, D), got shape ", value.sizes());
  TORCH_CHECK_VALUE(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
                    "sampling_locations must be (N, Lq, M, L, K, 2), got shape ", sampling_locations.sizes());
  TORCH_CHECK_VALUE(attention_weights.dim() == 5, "attention_weights must be (N, Lq, M, L, K), got shape ",
                    attention_weights.sizes());
  const int64_t l = static_cast<int64_t>(level_start_index.size());
  TORCH_CHECK_VALUE(static_cast<int64_t>(spatial_shapes.size()) == 2 * l,
                    "spatial_shapes must hold 2 ints (H, W) per level and level_start_index one, got ",
                    spatial_shapes.size(), " and ", l);
  TORCH_CHECK_VALUE(l >= 1 && l <= msda::kMaxLevels, "the kernel takes 1 to ", msda::kMaxLevels,
                    " levels, got ", l);
  const auto acc = accumulation_type(value);
  Inputs in;
  in.value = value.contiguous();
  in.loc = sampling_locations.to(acc).contiguous();  // no copy when already float32 (float64) and contiguous
  in.attn = attention_weights.to(acc).contiguous();
  const int64_t n = value.size(0), s = value.size(1), m = value.size(2), d = value.size(3);
  const int64_t lq = sampling_locations.size(1), k = sampling_locations.size(4);
  TORCH_CHECK_VALUE(sampling_locations.size(0) == n && sampling_locations.size(2) == m &&
                        sampling_locations.size(3) == l,
                    "sampling_locations ", sampling_locations.sizes(), " does not match value ",
                    value.sizes(), " and L = ", l);
  TORCH_CHECK_VALUE(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
                    "attention_weights ", attention_weights.sizes(), " must match sampling_locations ",
                    sampling_locations.sizes(), " without its last axis");
  TORCH_CHECK_VALUE(sampling_locations.device() == value.device() && attention_weights.device() == value.device(),
                    "value, sampling_locations and attention_weights must be on one device");
  int64_t tokens = 0;
  for (int64_t i = 0; i < l; ++i) {
    const int64_t h = spatial_shapes[2 * i], w = spatial_shapes[2 * i + 1];
    TORCH_CHECK_VALUE(h > 0 && w > 0, "spatial_shapes must be positive, level ", i, " is ", h, " x ", w);
    TORCH_CHECK_VALUE(level_start_index[i] == tokens, "level_start_index[", i, "] must be ", tokens,
                      ", got ", level_start_index[i]);
    in.levels.shapes[2 * i] = h;
    in.levels.shapes[2 * i + 1] = w;
    in.levels.starts[i] = tokens;
    tokens += h * w;
  }
  TORCH_CHECK_VALUE(tokens == s, "sum of H*W over the levels is ", tokens, " but value has S = ", s);
  in.problem = msda::Problem{n, s, m, d, lq, l, k};
  return in;
}

at::Tensor forward(const at::Tensor& value, std::vector<int64_t> spatial_shapes,
                   std::vector<int64_t> level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  Inputs in = prepare(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const msda::Problem& p = in.problem;
  at::Tensor out = at::empty({p.batch, p.queries, p.heads * p.channels}, in.value.options());
  const auto config = msda::choose_launch_config(static_cast<int>(in.value.element_size()), p.channels,
                                                 pointer_alignment({&in.value, &out}));
  const int err = msda::launch_forward(kernel_dtype(in.value), p, config, in.value.data_ptr(), in.levels,
                                       in.loc.data_ptr(), in.attn.data_ptr(), out.data_ptr(),
                                       c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "ms_deform_attn forward kernel failed: ", msda::error_string(err));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& value, std::vector<int64_t> spatial_shapes, std::vector<int64_t> level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights, const at::Tensor& grad_out) {
  const c10::cuda::CUDAGuard guard(value.device());
  Inputs in = prepare(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const msda::Problem& p = in.problem;
  TORCH_CHECK_VALUE(grad_out.dim() == 3 && grad_out.size(0) == p.batch && grad_out.size(1) == p.queries &&
                        grad_out.size(2) == p.heads * p.channels,
                    "grad_out must be (N, Lq, M*D) = (", p.batch, ", ", p.queries, ", ", p.heads * p.channels,
                    "), got ", grad_out.sizes());
  const at::Tensor g = grad_out.to(in.value.scalar_type()).contiguous();
  // dLoss/dV is scattered with atomics: accumulate in float32 (float64) and cast at the end.
  at::Tensor grad_value = at::zeros(in.value.sizes(), in.loc.options());
  at::Tensor grad_loc = at::empty_like(in.loc);
  at::Tensor grad_attn = at::empty_like(in.attn);
  const auto config = msda::choose_launch_config(static_cast<int>(in.value.element_size()), p.channels,
                                                 pointer_alignment({&in.value, &g}));
  const int err = msda::launch_backward(
      kernel_dtype(in.value), p, config, in.value.data_ptr(), in.levels, in.loc.data_ptr(),
      in.attn.data_ptr(), g.data_ptr(), grad_value.data_ptr(), grad_loc.data_ptr(), grad_attn.data_ptr(),
      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "ms_deform_attn backward kernel failed: ", msda::error_string(err));
  return {grad_value.to(value.scalar_type()), grad_loc.to(sampling_locations.scalar_type()),
          grad_attn.to(attention_weights.scalar_type())};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Multi-scale deformable attention CUDA kernels (ddetr-edu)";
  m.def("forward", &forward,
        "value, spatial_shapes (H0, W0, H1, W1, ... ints), level_start_index (ints), sampling_locations, "
        "attention_weights -> out");
  m.def("backward", &backward,
        "value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_out -> "
        "(grad_value, grad_sampling_locations, grad_attention_weights)");
}
