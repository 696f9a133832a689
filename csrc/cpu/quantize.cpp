// Placeholder until the quantizers land (issue #2): registers nothing.
#include <pybind11/pybind11.h>
namespace pq {
void register_quantize_bindings(pybind11::module_&) {}
}  // namespace pq
