// pyquant._C: the CPU extension. Each kernel family registers its own functions
// (register_*_bindings, defined next to the kernels), so adding one touches one file.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "common/qtypes.h"
#include "cpu/cpu_features.h"
#include "cpu/error.h"
#include "cpu/py_error.h"
#include "cpu/threadpool.h"

namespace py = pybind11;

namespace pq {
void register_dequant_bindings(py::module_& m);
void register_quantize_bindings(py::module_& m);
void register_matmul_bindings(py::module_& m);
void register_llm_bindings(py::module_& m);
void register_prefill_bindings(py::module_& m);
}  // namespace pq

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyquant CPU kernels (AVX2+FMA+F16C with a portable scalar fallback)";
  pq::register_kernel_error();   // pq::Error -> pyquant.errors.KernelError

  m.def("cpu_has_avx2", &pq::cpu_has_avx2);
  m.def("active_isa", [] { return std::string(pq::isa_name(pq::active_isa())); });
  m.def("set_isa", [](const std::string& name) {
    if (name == "scalar") pq::set_isa(pq::Isa::Scalar);
    else if (name == "avx2") pq::set_isa(pq::Isa::Avx2);
    else pq::fail("set_isa: unknown ISA '", name, "' (scalar or avx2)");
  });
  m.def("cpu_has_vnni", &pq::cpu_has_vnni, "AVX-512 VNNI + VL + BW on this CPU, and the vnni/ kernels built");
  m.def("get_vnni", &pq::vnni_enabled, "whether the 8-row GEMV runs its vpdpbusd build (PYQUANT_VNNI)");
  m.def("l2_cache_bytes", &pq::l2_cache_bytes,
        "per-core L2 bytes the int8 GEMM sizes its panel sets by (PYQUANT_L2_BYTES, else the OS's figure, else 512 KiB)");
  m.def("set_vnni", &pq::set_vnni, "use (True) or not (False) the vpdpbusd build of the 8-row GEMV");
  m.def("get_num_threads", &pq::get_num_threads);
  m.def("set_num_threads", &pq::set_num_threads);
  m.def("qtype_table", [] {
    std::vector<std::tuple<int, int, int>> out;
    for (int id = 0; id < pq::kMaxQType; ++id) {
      auto g = pq::qtype_geometry(id);
      if (g.block_size) out.emplace_back(id, g.block_size, g.type_size);
    }
    return out;
  });

  pq::register_dequant_bindings(m);
  pq::register_quantize_bindings(m);
  pq::register_matmul_bindings(m);
  pq::register_llm_bindings(m);
  pq::register_prefill_bindings(m);
}
