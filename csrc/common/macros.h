// Portability macros shared by the C++ (CPU) and CUDA builds.
#pragma once
#if defined(__CUDACC__)
#define PQ_HD __host__ __device__ __forceinline__
#else
#define PQ_HD inline
#endif
