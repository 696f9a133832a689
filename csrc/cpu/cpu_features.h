// Run-time ISA selection. AVX2 kernels run when the CPU has AVX2+FMA+F16C, unless the
// environment variable PYQUANT_FORCE_SCALAR=1 is set (or set_isa("scalar") is called), so the
// portable path can be tested on the same machine and compared with the fast one.
#pragma once
#include <string>

namespace pq {

enum class Isa { Scalar = 0, Avx2 = 1 };

bool cpu_has_avx2();      // what the hardware (and this build) supports
Isa active_isa();         // what kernels should use now
void set_isa(Isa isa);    // throws if the CPU cannot run it
const char* isa_name(Isa isa);

}  // namespace pq
