// Portability macros shared by the C++ (CPU) and CUDA builds.
#pragma once
#if defined(__CUDACC__)
#define PQ_HD __host__ __device__ __forceinline__
#else
#define PQ_HD inline
#endif

// Header-only code in csrc/common is compiled into baseline and -mavx2 translation units alike.
// An `inline` function (or class member, or template) is emitted in each as a COMDAT copy and the
// linker keeps one of them for every caller: if it kept the AVX2-built copy, scalar code would hit
// AVX instructions on an old CPU. So the -mavx2 files (compiled with PQ_ISA_TU) see the shared code
// in a different inline namespace: different symbol names, no copy is ever shared.
#if defined(PQ_ISA_TU) && !defined(__CUDACC__)
#define PQ_COMMON_BEGIN namespace pq { inline namespace isa_avx2 {
#else
#define PQ_COMMON_BEGIN namespace pq { inline namespace isa_base {
#endif
#define PQ_COMMON_END } }

// Lookup tables shared by host and device code (e.g. the i-quant grids): device global memory in
// CUDA translation units, ordinary read-only data in C++ ones.
#if defined(__CUDACC__)
#define PQ_TABLE static __device__ const
#else
#define PQ_TABLE static const
#endif
