// GEMV dispatch: picks the instantiation of gemv_kernel.cuh for the weight format. The
// instantiations live in three translation units (legacy + IQ4_NL, K-quants + IQ4_XS, int4/int8)
// so that a parallel build compiles them side by side (~70 kernels each).
#include <cuda_runtime.h>

#include "common/qtypes.h"
#include "cuda/cuda_common.cuh"
#include "cuda/kernels.h"
#include "cuda/weights.cuh"

namespace pq {
namespace cuda {

bool gemv_launch_legacy(int qtype, const GemvArgs& a, DType dt, cudaStream_t stream);  // gemv_legacy.cu
bool gemv_launch_kquant(int qtype, const GemvArgs& a, DType dt, cudaStream_t stream);  // gemv_kquant.cu
void gemv_launch_int(WeightKind kind, const GemvArgs& a, DType dt, cudaStream_t stream);  // gemv_int.cu

bool gemv_supports(int qtype) {
  switch (qtype) {
#define PQ_CASE(T) case (int)QType::T: return true;
    PQ_GEMV_GGUF_TYPES(PQ_CASE)
#undef PQ_CASE
    default: return false;
  }
}

void gemv_launch(WeightKind kind, int qtype, const GemvArgs& a, DType dt, cudaStream_t stream) {
  if (kind != WeightKind::Gguf) return gemv_launch_int(kind, a, dt, stream);
  if (gemv_launch_legacy(qtype, a, dt, stream) || gemv_launch_kquant(qtype, a, dt, stream)) return;
  fail("gguf_matmul: no CUDA GEMV for ggml type id ", qtype);
}

}  // namespace cuda
}  // namespace pq
