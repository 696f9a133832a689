// Every per-block decoder (one `decode_block_<type>(blk, y)` per ggml type), for code that
// needs them all (CUDA decode kernels, generic fallbacks).
#pragma once
#include "common/decode_kquants.h"
#include "common/decode_legacy.h"
#include "common/decode_misc.h"
#if __has_include("common/decode_iquants.h")
#include "common/decode_iquants.h"
#endif
