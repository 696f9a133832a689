// Errors raised by the C++ side. pybind maps pq::Error to pyquant.errors.KernelError (a
// PyquantError and a ValueError), so a bad argument never reaches a kernel: validate at the
// boundary, report the numbers.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace pq {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(os.str());
}

#define PQ_CHECK(cond, ...)                 \
  do {                                      \
    if (!(cond)) ::pq::fail(__VA_ARGS__);   \
  } while (0)

}  // namespace pq
