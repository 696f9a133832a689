// Every per-block dequantizer (one `dequant_block_<type>(blk, y)` per ggml type), for code that
// needs them all (CUDA dequantize kernels, generic fallbacks).
#pragma once
#include "common/dequant_kquants.h"
#include "common/dequant_legacy.h"
#include "common/dequant_misc.h"
#if __has_include("common/dequant_iquants.h")
#include "common/dequant_iquants.h"
#endif
