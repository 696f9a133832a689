// Errors raised by the C++ side. pybind maps pq::Error to pyquant.errors.KernelError (a
// PyquantError and a ValueError), so a bad argument never reaches a kernel: validate at the
// boundary, report the numbers.
#pragma once
#include <cstdint>
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

// a * b for sizes from the caller (both >= 0), or an Error naming `who` and `what` when it
// overflows int64 (a forged shape must not wrap around into a small allocation or check).
inline int64_t checked_mul(const char* who, int64_t a, int64_t b, const char* what) {
  int64_t r;
  PQ_CHECK(a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, &r), who, ": ", what, " overflows (", a, " x ", b, ")");
  return r;
}

}  // namespace pq
