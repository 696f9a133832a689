// Fused transformer helper ops for the runner's decode step (placeholder: registers nothing yet).
#include <pybind11/pybind11.h>
namespace pq {
void register_llm_bindings(pybind11::module_&) {}
}  // namespace pq
