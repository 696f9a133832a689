// Run-time ISA selection. AVX2 kernels run when the CPU has AVX2+FMA+F16C, unless the
// environment variable PYQUANT_FORCE_SCALAR=1 is set (or set_isa("scalar") is called), so the
// portable path can be tested on the same machine and compared with the fast one.
#pragma once
#include <cstdint>
#include <string>

namespace pq {

enum class Isa { Scalar = 0, Avx2 = 1 };

bool cpu_has_avx2();      // what the hardware (and this build) supports
Isa active_isa();         // what kernels should use now
void set_isa(Isa isa);    // throws if the CPU cannot run it
const char* isa_name(Isa isa);

// AVX-512 VNNI + VL + BW (and the OS saving their state), in a build with the vnni/ kernels: the
// 8-row GEMV's vpdpbusd variant (vnni/gemv_rows8_vnni.cpp) runs where the AVX2 ISA is active and
// vnni_enabled() (default on; PYQUANT_VNNI=0 or set_vnni(false) turns it off).
bool cpu_has_vnni();

// Per-core L2 size in bytes: PYQUANT_L2_BYTES if set, else what the OS reports (sysconf, then
// /sys/devices/system/cpu/cpu0/cache), else 512 KiB (Zen 3's, the smallest of the x86 cores we
// tune for). Read once; sizes the int8 GEMM's K slices (gemm_int8_kslice).
int64_t l2_cache_bytes();
bool vnni_enabled();
void set_vnni(bool on);   // throws if the CPU (or build) has none

}  // namespace pq
