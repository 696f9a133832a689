// GEMV instantiations: legacy 32-element types and IQ4_NL (see gemv_kernel.cuh).
#include "cuda/gemv_kernel.cuh"

namespace pq {
namespace cuda {

bool gemv_launch_legacy(int qtype, const GemvArgs& a, DType dt, cudaStream_t stream) {
  using namespace gemv_detail;
  switch (qtype) {
#define PQ_CASE(T) \
  case (int)QType::T: launch_w<WGguf<chunk::T>>(a, dt, stream); return true;
    PQ_CASE(Q4_0) PQ_CASE(Q4_1) PQ_CASE(Q5_0) PQ_CASE(Q5_1) PQ_CASE(Q8_0) PQ_CASE(IQ4_NL)
#undef PQ_CASE
    default: return false;
  }
}

}  // namespace cuda
}  // namespace pq
