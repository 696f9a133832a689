// GEMV instantiations: K-quants and IQ4_XS (see gemv_kernel.cuh).
#include "cuda/gemv_kernel.cuh"

namespace pq {
namespace cuda {

bool gemv_launch_kquant(int qtype, const GemvArgs& a, DType dt, cudaStream_t stream) {
  using namespace gemv_detail;
  switch (qtype) {
#define PQ_CASE(T) \
  case (int)QType::T: launch_w<WGguf<chunk::T>>(a, dt, stream); return true;
    PQ_CASE(Q2_K) PQ_CASE(Q3_K) PQ_CASE(Q4_K) PQ_CASE(Q5_K) PQ_CASE(Q6_K) PQ_CASE(IQ4_XS)
#undef PQ_CASE
    default: return false;
  }
}

}  // namespace cuda
}  // namespace pq
