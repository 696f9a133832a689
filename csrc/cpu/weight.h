// One linear layer's weight as the CPU kernels read it (`_C.Weight`): its format, shape and the
// buffers it points into, validated once when it is made. It holds a reference to each of those
// buffers, so its pointers stay valid for as long as it lives; every matmul (`_C.linear`) and the
// token step (`LlmStep.add_linear`) take the object, never raw weight pointers.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "cpu/matmul_internal.h"

namespace pq {
namespace mm {

class Weight {
 public:
  // qtype: a GGUF type id with a CPU kernel (F32/F16/BF16 included), kInt4 (scales and mins float32
  // [n, k/group_size], group_size 32/64/128) or kInt8 (scales float32 [n]); data: the packed rows,
  // n rows of row_bytes(k). Every size is checked against the buffers. interleave 8: the rows are
  // stored in groups of 8 (cpu/interleave.h; types with has_x8_layout, n % 8 == 0).
  // kExl2: block_bits uint8 [k/32], each block's width (cpu/exl2_blocks.h); the rows' byte layout
  // follows from it, and the kernel variant (kExl2 / kExl2Wide) from the widest block.
  Weight(int qtype, const pybind11::object& data, int64_t n, int64_t k, const pybind11::object& scales,
         const pybind11::object& mins, int group_size, int interleave = 0,
         const pybind11::object& block_bits = pybind11::none());

  const WeightRef& ref() const { return ref_; }
  const TypeInfo& info() const { return *ti_; }
  int64_t n() const { return n_; }
  int64_t k() const { return ref_.k; }
  int64_t nbytes() const { return nbytes_; }
  // Row r of a ggml-type weight dequantized to k float32 at dst (an embedding lookup from a tied
  // output head; a row-interleaved weight's row is gathered back first).
  void dequantize_row(int64_t r, uintptr_t dst, int64_t dst_nbytes) const;

 private:
  std::vector<pybind11::object> owners_;
  std::vector<uint8_t> block_bits_;   // EXL2: copies, so no caller's buffer can change them after the checks
  std::vector<int64_t> block_off_;
  std::vector<Exl2Run> runs_;
  WeightRef ref_{};
  const TypeInfo* ti_ = nullptr;
  int64_t n_ = 0, nbytes_ = 0;
};

void register_weight(pybind11::module_& m);

}  // namespace mm
}  // namespace pq
