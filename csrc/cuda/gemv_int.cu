// GEMV instantiations: pyquant int4 (group-wise scale + min), int8 (per-row scale) and EXL2 (its
// own widths, per-block fp16 scales).
#include "cuda/gemv_kernel.cuh"

namespace pq {
namespace cuda {

void gemv_launch_int(WeightKind kind, const GemvArgs& a, DType dt, cudaStream_t stream) {
  using namespace gemv_detail;
  if (kind == WeightKind::Int4) return launch_w<WInt4>(a, dt, stream);
  if (kind == WeightKind::Exl2) return launch_w<WExl2>(a, dt, stream);
  return launch_w<WInt8>(a, dt, stream);
}

}  // namespace cuda
}  // namespace pq
