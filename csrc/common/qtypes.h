// The ggml type ids and block geometry: the single C++ registry of quant types.
// Mirrors pyquant/qtypes.py (tests/test_qtypes.py checks that the two agree).
#pragma once
#include <cstdint>
#include "common/macros.h"

namespace pq {

enum class QType : int32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
  IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40,
};

constexpr int kMaxQType = 41;

struct QTypeGeometry {
  int32_t block_size;  // elements per block (1 for plain element types)
  int32_t type_size;   // bytes per block
};

// Returns {0, 0} for ids that are not ggml types pyquant knows.
PQ_HD QTypeGeometry qtype_geometry(int32_t id) {
  switch (id) {
    case 0: return {1, 4};     case 1: return {1, 2};     case 2: return {32, 18};
    case 3: return {32, 20};   case 6: return {32, 22};   case 7: return {32, 24};
    case 8: return {32, 34};   case 9: return {32, 40};   case 10: return {256, 84};
    case 11: return {256, 110}; case 12: return {256, 144}; case 13: return {256, 176};
    case 14: return {256, 210}; case 15: return {256, 292}; case 16: return {256, 66};
    case 17: return {256, 74}; case 18: return {256, 98};  case 19: return {256, 50};
    case 20: return {32, 18};  case 21: return {256, 110}; case 22: return {256, 82};
    case 23: return {256, 136}; case 24: return {1, 1};    case 25: return {1, 2};
    case 26: return {1, 4};    case 27: return {1, 8};    case 28: return {1, 8};
    case 29: return {256, 56}; case 30: return {1, 2};    case 34: return {256, 54};
    case 35: return {256, 66}; case 39: return {32, 17};  case 40: return {64, 36};
    default: return {0, 0};
  }
}

}  // namespace pq
