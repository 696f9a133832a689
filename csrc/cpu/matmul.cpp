// Placeholder until the fused matmul kernels land (issue #3): registers nothing.
#include <pybind11/pybind11.h>
namespace pq {
void register_matmul_bindings(pybind11::module_&) {}
}  // namespace pq
