// A persistent worker pool. Kernels at decode time take ~0.1-2 ms, so creating threads per
// call (tens of microseconds) or waking sleeping threads through the OS on every call would
// cost a visible share; workers spin briefly on a generation counter before sleeping.
#pragma once
#include <cstdint>
#include <functional>

namespace pq {

// Default thread count: set_num_threads() value, else PYQUANT_NUM_THREADS, else hardware cores.
int get_num_threads();
void set_num_threads(int n);

// Runs fn(tid, nth) on nth threads (the caller is tid 0) and returns when all are done.
// nth <= 0 means get_num_threads(). Re-entrant or concurrent calls run serially (nth = 1).
void parallel_run(int nth, const std::function<void(int tid, int nth)>& fn);

// Splits [0, n) into contiguous ranges, multiples of `grain` except the last, one per thread.
template <typename F>
void parallel_for(int64_t n, int64_t grain, int nth, F&& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (nth <= 0) nth = get_num_threads();
  const int64_t units = (n + grain - 1) / grain;
  if (nth > units) nth = (int)units;
  if (nth <= 1) { fn((int64_t)0, n); return; }
  parallel_run(nth, [&](int tid, int nt) {
    const int64_t u0 = units * tid / nt, u1 = units * (tid + 1) / nt;
    const int64_t b = u0 * grain, e = u1 * grain < n ? u1 * grain : n;
    if (b < e) fn(b, e);
  });
}

}  // namespace pq
