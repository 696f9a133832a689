// A persistent worker pool. Kernels at token-step time take ~0.1-2 ms, so creating threads per
// call (tens of microseconds) or waking sleeping threads through the OS on every call would
// cost a visible share; workers spin briefly (PYQUANT_SPIN_US, default 50) on their mailbox
// before sleeping in the kernel, and so does a caller waiting for its workers.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>

namespace pq {

// A 32-bit word threads wait on: spin ~PYQUANT_SPIN_US, then futex-sleep until it changes.
struct WakeWord {
  std::atomic<uint32_t> word{0};
  std::atomic<int> sleepers{0};
};
// Returns once w.word != old (spinning first, then sleeping).
void wait_while_equal(WakeWord& w, uint32_t old);
// Call after changing w.word: wakes the threads sleeping on it (no syscall when none sleeps).
void wake_all(WakeWord& w);

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
