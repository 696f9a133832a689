// _C.Weight: the one place a linear weight's format, shape and buffers are checked before any
// kernel reads them (the matmul entry point and the token step both take it).
#include "cpu/weight.h"

#include <algorithm>
#include <string>
#include <vector>

#include "common/qtypes.h"
#include "cpu/buffer.h"
#include "cpu/dequant.h"
#include "cpu/error.h"
#include "cpu/exl2_blocks.h"
#include "cpu/interleave.h"

namespace py = pybind11;

namespace pq {
namespace mm {
Weight::Weight(int qtype, const py::object& data, int64_t n, int64_t k, const py::object& scales,
               const py::object& mins, int group_size, int interleave, const py::object& block_bits) {
  const bool generic = qtype == kInt4 || qtype == kInt8 || qtype == kExl2;
  ti_ = (qtype >= 0 && (qtype < kMaxQType || generic)) ? type_info(qtype) : nullptr;
  PQ_CHECK(ti_ != nullptr, "Weight: no CPU kernel for type id ", qtype, " (", qtype_name(qtype),
           "); dequantize it and use a float matmul");
  PQ_CHECK(ti_->kind != Kind::Float || qtype == (int)QType::F32 || qtype == (int)QType::F16 ||
               qtype == (int)QType::BF16,
           "Weight: float weights must be F32, F16 or BF16");
  PQ_CHECK(n >= 1 && n <= INT32_MAX, "Weight: n (output features) must be in [1, 2^31), got ", n);
  PQ_CHECK(k >= 1 && k <= INT32_MAX, "Weight: k (input features) must be in [1, 2^31), got ", k);
  ref_.qtype = qtype;
  ref_.k = k;
  n_ = n;
  const std::string name = ti_->name;   // "Q4_K", "int4", "int8", ...
  if (qtype == kInt4) {
    PQ_CHECK(group_size == 32 || group_size == 64 || group_size == 128,
             "Weight: int4 group_size must be 32, 64 or 128, got ", group_size);
    PQ_CHECK(k % group_size == 0, "Weight: k = ", k, " is not a multiple of group_size ", group_size);
    PQ_CHECK(!scales.is_none() && !mins.is_none(), "Weight: int4 needs scales and mins");
    const int64_t need = checked_mul("Weight", n, k / group_size * 4, "int4 scales size");
    const HeldBuffer sb = hold(owners_, scales, "Weight: int4 scales", false);
    const HeldBuffer mb = hold(owners_, mins, "Weight: int4 mins", false);
    PQ_CHECK(sb.nbytes >= need && mb.nbytes >= need, "Weight: int4 scales/mins have ", sb.nbytes, "/", mb.nbytes,
             " bytes, [", n, ", ", k / group_size, "] float32 needs ", need);
    ref_.row_bytes = k / 2;
    ref_.scales = reinterpret_cast<const float*>(sb.ptr);
    ref_.mins = reinterpret_cast<const float*>(mb.ptr);
    ref_.group_size = group_size;
  } else if (qtype == kExl2) {
    PQ_CHECK(k % 32 == 0, "Weight: exl2 k = ", k, " is not a multiple of 32");
    PQ_CHECK(!block_bits.is_none(), "Weight: exl2 needs block_bits (uint8, one width per 32-block)");
    const HeldBuffer bb = hold(owners_, block_bits, "Weight: exl2 block_bits", false);
    const int64_t nb = k / 32;
    PQ_CHECK(bb.nbytes == nb, "Weight: exl2 block_bits has ", bb.nbytes, " bytes, k = ", k, " needs ", nb);
    block_bits_.assign(bb.ptr, bb.ptr + nb);
    block_off_.resize((size_t)nb + 1);
    int widest = 0;
    for (int64_t j = 0; j < nb; ++j) {
      const int b = block_bits_[(size_t)j];
      PQ_CHECK(exl2_bits_ok(b), "Weight: exl2 block_bits[", j, "] = ", b, " (widths are 2, 3, 4, 5, 6 or 8)");
      block_off_[(size_t)j + 1] = block_off_[(size_t)j] + exl2_block_bytes(b);
      widest = std::max(widest, b);
      if (runs_.empty() || runs_.back().bits != b) runs_.push_back({j, 0, block_off_[(size_t)j], b});
      ++runs_.back().nblocks;
    }
    ref_.runs = runs_.data();
    ref_.n_runs = (int)runs_.size();
    ref_.row_bytes = block_off_[(size_t)nb];
    ref_.block_bits = block_bits_.data();
    ref_.block_off = block_off_.data();
    ref_.qtype = widest > 5 ? kExl2Wide : kExl2;
    ti_ = type_info(ref_.qtype);
  } else if (qtype == kInt8) {
    PQ_CHECK(!scales.is_none(), "Weight: int8 needs scales");
    const HeldBuffer sb = hold(owners_, scales, "Weight: int8 scales", false);
    PQ_CHECK(sb.nbytes >= checked_mul("Weight", n, 4, "int8 scales size"), "Weight: int8 scales have ", sb.nbytes,
             " bytes, ", n, " float32 need ", 4 * n);
    ref_.row_bytes = k;
    ref_.scales = reinterpret_cast<const float*>(sb.ptr);
  } else {
    const QTypeGeometry g = qtype_geometry(qtype);
    PQ_CHECK(g.block_size > 0 && k % g.block_size == 0, "Weight: k = ", k, " is not a multiple of the ", name,
             " block size ", g.block_size);
    ref_.row_bytes = k / g.block_size * g.type_size;
  }
  const HeldBuffer wb = hold(owners_, data, "Weight: " + name + " data", false);
  const int64_t need = checked_mul("Weight", n, ref_.row_bytes, "weight size");
  PQ_CHECK(wb.nbytes >= need, "Weight: data has ", wb.nbytes, " bytes, ", n, " rows of ", k, " ", name,
           " values need ", need);
  ref_.data = wb.ptr;
  nbytes_ = need;
  PQ_CHECK(interleave == 0 || interleave == 8, "Weight: interleave must be 0 or 8, got ", interleave);
  if (interleave) {
    PQ_CHECK(has_x8_layout(qtype), "Weight: ", name, " has no row-interleaved layout");
    PQ_CHECK(n % 8 == 0, "Weight: a row-interleaved weight needs n % 8 == 0, got n = ", n);
    ref_.interleave = interleave;
    ti_ = type_info(ref_);
  }
}

void Weight::dequantize_row(int64_t r, uintptr_t dst, int64_t dst_nbytes) const {
  const bool ggml = ref_.qtype >= 0 && ref_.qtype < kMaxQType;
  const DequantBlocksFn f = ggml ? dequant_kernel(ref_.qtype) : nullptr;
  PQ_CHECK(f != nullptr, "Weight.dequantize_row: no dequantizer for ", info().name);
  PQ_CHECK(r >= 0 && r < n_, "Weight.dequantize_row: row ", r, " out of [0, ", n_, ")");
  PQ_CHECK(dst != 0 && dst_nbytes >= checked_mul("Weight.dequantize_row", ref_.k, 4, "row size"),
           "Weight.dequantize_row: dst has ", dst_nbytes, " bytes, ", ref_.k, " float32 need ", 4 * ref_.k);
  const int64_t nb = ref_.k / qtype_geometry(ref_.qtype).block_size;
  const uint8_t* src = ref_.data + r * ref_.row_bytes;
  thread_local std::vector<uint8_t> buf;
  if (ref_.interleave) {
    if (buf.size() < (size_t)ref_.row_bytes) buf.resize((size_t)ref_.row_bytes);
    gather_blocks(ref_, r, 0, nb, buf.data());
    src = buf.data();
  }
  f(src, reinterpret_cast<float*>(dst), nb);
}

void register_weight(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<Weight>(m, "Weight",
                     "A linear weight as the CPU kernels read it, validated once; holds its buffers alive.")
      .def(py::init<int, const py::object&, int64_t, int64_t, const py::object&, const py::object&, int, int,
                    const py::object&>(),
           "qtype"_a, "data"_a, "n"_a, "k"_a, "scales"_a = py::none(), "mins"_a = py::none(), "group_size"_a = 0,
           "interleave"_a = 0, "block_bits"_a = py::none(),
           "qtype: GGUF type id, 1000 (int4), 1001 (int8) or 1002 (exl2: block_bits uint8 [k/32]); data, "
           "scales, mins, block_bits: C-contiguous buffers (tensor.numpy(), numpy arrays)")
      .def_property_readonly("qtype", [](const Weight& w) { return w.ref().qtype; })
      .def_property_readonly("n", &Weight::n)
      .def_property_readonly("k", &Weight::k)
      .def_property_readonly("group_size", [](const Weight& w) { return w.ref().group_size; })
      .def_property_readonly("interleave", [](const Weight& w) { return w.ref().interleave; })
      .def_property_readonly("nbytes", &Weight::nbytes, "bytes of packed rows the kernels read")
      .def("dequantize_row", &Weight::dequantize_row, "row"_a, "dst_ptr"_a, "dst_nbytes"_a,
           "row `row` dequantized to in_features float32 at dst (ggml types; interleaved rows gathered)")
      .def("__repr__", [](const Weight& w) {
        return "_C.Weight(" + std::string(w.info().name) + ", n=" + std::to_string(w.n()) +
               ", k=" + std::to_string(w.k()) + ")";
      });
}

}  // namespace mm
}  // namespace pq
