// A growable 64-byte-aligned scratch buffer for the AVX2 GEMMs' per-thread panels.
// Deliberately not std::vector: a template instantiated in an -mavx2 file could be the COMDAT copy
// the linker keeps for baseline code; this one lives in an anonymous namespace (internal linkage).
#pragma once

#include <cstdlib>

namespace pq {
namespace mm {
namespace {

template <typename T>
struct Scratch {
  T* p = nullptr;
  size_t n = 0;
  ~Scratch() { std::free(p); }
  T* get(size_t need) {
    if (need > n) {
      std::free(p);
      n = 0;
      p = static_cast<T*>(std::aligned_alloc(64, ((need * sizeof(T) + 63) / 64) * 64));
      if (!p) std::abort();  // the sizes come from shapes validated against the caller's buffers
      n = need;
    }
    return p;
  }
};

}  // namespace
}  // namespace mm
}  // namespace pq
