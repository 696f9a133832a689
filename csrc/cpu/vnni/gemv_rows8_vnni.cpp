// The 8-row kernels (avx2/gemv_rows8_avx2.cpp) built again for CPUs with AVX-512 VNNI + VL (Zen 4,
// Intel Ice Lake and later): vpdpbusd on 256-bit registers and 32 of them. Entered only after the
// run-time check (cpu_has_vnni) and while the knob allows (set_vnni / PYQUANT_VNNI=0).
#define PQ_VNNI 1
#include "cpu/avx2/gemv_rows8_avx2.cpp"
