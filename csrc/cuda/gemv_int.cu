// GEMV instantiations: pyquant int4 (group-wise scale + min) and int8 (per-row scale).
#include "cuda/gemv_kernel.cuh"

namespace pq {
namespace cuda {

void gemv_launch_int(WeightKind kind, const GemvArgs& a, DType dt, cudaStream_t stream) {
  using namespace gemv_detail;
  if (kind == WeightKind::Int4) return launch_w<WInt4>(a, dt, stream);
  return launch_w<WInt8>(a, dt, stream);
}

}  // namespace cuda
}  // namespace pq
