// Torch binding of the CUDA kernels: checks the tensors, allocates the outputs, and calls the
// torch-free launchers of msda_kernel.cu on the current stream. Autograd, the fake (meta)
// implementation and the torch.library registration live in Python
// (ddetr_edu/ops/cuda_backend.py); this module only exposes `forward` and `backward`.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <cstdint>
#include <tuple>

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
  at::Tensor value, shapes, starts, loc, attn;
  msda::Problem problem;
};

Inputs prepare(const at::Tensor& value, const at::Tensor& spatial_shapes,
               const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
               const at::Tensor& attention_weights) {
  TORCH_CHECK_VALUE(value.is_cuda(), "value must be a CUDA tensor, got device ", value.device());
  TORCH_CHECK_VALUE(value.dim() == 4, "value must be (N, S, M, D), got shape ", value.sizes());
  TORCH_CHECK_VALUE(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
                    "sampling_locations must be (N, Lq, M, L, K, 2), got shape ", sampling_locations.sizes());
  TORCH_CHECK_VALUE(attention_weights.dim() == 5, "attention_weights must be (N, Lq, M, L, K), got shape ",
                    attention_weights.sizes());
  TORCH_CHECK_VALUE(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
                    "spatial_shapes must be (L, 2), got shape ", spatial_shapes.sizes());
  TORCH_CHECK_VALUE(level_start_index.dim() == 1 && level_start_index.size(0) == spatial_shapes.size(0),
                    "level_start_index must be (L,) with L = ", spatial_shapes.size(0), ", got shape ",
                    level_start_index.sizes());
  const auto acc = accumulation_type(value);
  const auto device = value.device();
  Inputs in;
  in.value = value.contiguous();
  in.shapes = spatial_shapes.to(device, at::kLong).contiguous();
  in.starts = level_start_index.to(device, at::kLong).contiguous();
  in.loc = sampling_locations.to(device, acc).contiguous();
  in.attn = attention_weights.to(device, acc).contiguous();
  const int64_t n = value.size(0), s = value.size(1), m = value.size(2), d = value.size(3);
  const int64_t lq = sampling_locations.size(1), l = spatial_shapes.size(0), k = sampling_locations.size(4);
  TORCH_CHECK_VALUE(sampling_locations.size(0) == n && sampling_locations.size(2) == m &&
                        sampling_locations.size(3) == l,
                    "sampling_locations ", sampling_locations.sizes(), " does not match value ",
                    value.sizes(), " and L = ", l);
  TORCH_CHECK_VALUE(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
                    "attention_weights ", attention_weights.sizes(), " must match sampling_locations ",
                    sampling_locations.sizes(), " without its last axis");
  in.problem = msda::Problem{n, s, m, d, lq, l, k};
  return in;
}

at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights) {
  const c10::cuda::CUDAGuard guard(value.device());
  Inputs in = prepare(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const msda::Problem& p = in.problem;
  at::Tensor out = at::empty({p.batch, p.queries, p.heads * p.channels}, in.value.options());
  const auto config = msda::choose_launch_config(static_cast<int>(in.value.element_size()), p.channels,
                                                 pointer_alignment({&in.value, &out}));
  const int err = msda::launch_forward(kernel_dtype(in.value), p, config, in.value.data_ptr(),
                                       in.shapes.data_ptr<int64_t>(), in.starts.data_ptr<int64_t>(),
                                       in.loc.data_ptr(), in.attn.data_ptr(), out.data_ptr(),
                                       c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "ms_deform_attn forward kernel failed: ", msda::error_string(err));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
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
      kernel_dtype(in.value), p, config, in.value.data_ptr(), in.shapes.data_ptr<int64_t>(),
      in.starts.data_ptr<int64_t>(), in.loc.data_ptr(), in.attn.data_ptr(), g.data_ptr(),
      grad_value.data_ptr(), grad_loc.data_ptr(), grad_attn.data_ptr(),
      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == 0, "ms_deform_attn backward kernel failed: ", msda::error_string(err));
  return {grad_value.to(value.scalar_type()), grad_loc.to(sampling_locations.scalar_type()),
          grad_attn.to(attention_weights.scalar_type())};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Multi-scale deformable attention CUDA kernels (ddetr-edu)";
  m.def("forward", &forward, "value, spatial_shapes, level_start_index, sampling_locations, attention_weights -> out");
  m.def("backward", &backward,
        "value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_out -> "
        "(grad_value, grad_sampling_locations, grad_attention_weights)");
}
