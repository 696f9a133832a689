// The int8 GEMM (avx2/gemm_int8_avx2.cpp) built again for CPUs with AVX-512 VNNI + VL: vpdpbusd
// sums for the 32-block types. Entered only where cpu_has_vnni() and the knob allow (matmul.cpp).
#define PQ_VNNI 1
#include "cpu/avx2/gemm_int8_avx2.cpp"
