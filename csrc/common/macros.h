// Portability macros shared by the C++ (CPU) and CUDA builds.
#pragma once
#if defined(__CUDACC__)
#define PQ_HD __host__ __device__ __forceinline__
#else
#define PQ_HD inline
#endif

// Lookup tables shared by host and device code (e.g. the i-quant grids): device global memory in
// CUDA translation units, ordinary read-only data in C++ ones.
#if defined(__CUDACC__)
#define PQ_TABLE static __device__ const
#else
#define PQ_TABLE static const
#endif
