#include "cpu/cpu_features.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cpu/error.h"

namespace pq {

bool cpu_has_avx2() {
#if defined(PYQUANT_HAVE_AVX2_BUILD) && (defined(__x86_64__) || defined(__i386__))
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }();
  return has;
#else
  return false;
#endif
}

static std::atomic<int>& isa_slot() {
  static std::atomic<int> slot([] {
    const char* force = std::getenv("PYQUANT_FORCE_SCALAR");
    const bool scalar = force && *force && std::strcmp(force, "0") != 0;
    return static_cast<int>((!scalar && cpu_has_avx2()) ? Isa::Avx2 : Isa::Scalar);
  }());
  return slot;
}

Isa active_isa() { return static_cast<Isa>(isa_slot().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  PQ_CHECK(isa == Isa::Scalar || cpu_has_avx2(), "set_isa: this CPU (or build) has no AVX2+FMA+F16C");
  isa_slot().store(static_cast<int>(isa));
}

const char* isa_name(Isa isa) { return isa == Isa::Avx2 ? "avx2" : "scalar"; }

bool cpu_has_vnni() {
#if defined(PYQUANT_HAVE_VNNI_BUILD) && (defined(__x86_64__) || defined(__i386__))
  // libgcc sets the avx512 bits only when XCR0 says the OS saves the opmask / zmm state
  static const bool has = [] {
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
  }();
  return has;
#else
  return false;
#endif
}

static std::atomic<bool>& vnni_slot() {
  static std::atomic<bool> slot([] {
    const char* env = std::getenv("PYQUANT_VNNI");
    return cpu_has_vnni() && !(env && std::strcmp(env, "0") == 0);
  }());
  return slot;
}

bool vnni_enabled() { return vnni_slot().load(std::memory_order_relaxed); }

void set_vnni(bool on) {
  PQ_CHECK(!on || cpu_has_vnni(), "set_vnni: this CPU (or build) has no AVX-512 VNNI + VL + BW");
  vnni_slot().store(on);
}

static int64_t l2_from_sysfs() {
  // "index2" is the unified L2 on Linux x86; its size reads like "1024K"
  std::FILE* f = std::fopen("/sys/devices/system/cpu/cpu0/cache/index2/size", "r");
  if (!f) return 0;
  long long v = 0;
  char unit = 0;
  const int got = std::fscanf(f, "%lld%c", &v, &unit);
  std::fclose(f);
  if (got < 1 || v <= 0) return 0;
  return unit == 'M' ? v << 20 : unit == 'K' ? v << 10 : v;
}

int64_t l2_cache_bytes() {
  static const int64_t bytes = [] {
    constexpr int64_t lo = 64 << 10, hi = 64 << 20;   // ignore nonsense from a VM's CPUID or sysfs
    const char* env = std::getenv("PYQUANT_L2_BYTES");
    if (env && *env) {
      const long long v = std::atoll(env);
      if (v >= lo && v <= hi) return (int64_t)v;
    }
    int64_t v = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    v = (int64_t)sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    if (v < lo || v > hi) v = l2_from_sysfs();
    return v >= lo && v <= hi ? v : (int64_t)(512 << 10);
  }();
  return bytes;
}

}  // namespace pq
