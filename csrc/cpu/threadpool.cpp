#include "cpu/threadpool.h"

#include <climits>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <vector>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PQ_PAUSE() _mm_pause()
#else
#define PQ_PAUSE() std::this_thread::yield()
#endif

namespace pq {

// ---------------------------------------------------------------- spin, then sleep
// Waiters spin (pause) for a short while, then sleep in the kernel on the word itself (futex), so
// a thread whose partner was descheduled by a competing process gives its core away instead of
// burning the very time slice the partner needs (issue #9: with a busy process on each of 2
// cores, 2 threads spinning in barriers ran at 2.6-26 tok/s against 29-54 for 1 thread).
// `sleepers` keeps the waker's syscall off the fast path: waker (store word; load sleepers) and
// sleeper (add sleepers; futex re-checks word) are both sequentially consistent, so either the
// waker sees the sleeper or the sleeper's futex sees the new word.
int spin_us() {
  static const int v = [] {
    const char* e = std::getenv("PYQUANT_SPIN_US");
    return e && std::atoi(e) >= 0 ? std::atoi(e) : 50;
  }();
  return v;
}

void wait_while_equal(WakeWord& w, uint32_t old) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto budget = std::chrono::microseconds(spin_us());
  for (int spins = 1; w.word.load(std::memory_order_acquire) == old; ++spins) {
    PQ_PAUSE();
    if ((spins & 63) != 0) continue;
    if (std::chrono::steady_clock::now() - t0 < budget) continue;
    w.sleepers.fetch_add(1, std::memory_order_seq_cst);
#if defined(__linux__)
    while (w.word.load(std::memory_order_seq_cst) == old)
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&w.word), FUTEX_WAIT_PRIVATE, old, nullptr, nullptr, 0);
#else
    while (w.word.load(std::memory_order_seq_cst) == old) std::this_thread::sleep_for(std::chrono::microseconds(20));
#endif
    w.sleepers.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
}

void wake_all(WakeWord& w) {
  if (w.sleepers.load(std::memory_order_seq_cst) == 0) return;
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&w.word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#endif
}

namespace {

std::atomic<int> g_num_threads{0};
thread_local bool t_in_pool = false;

// Each worker has its own mailbox: the caller writes the job and nth there and then bumps the
// ticket, so a worker only ever reads a job addressed to it. (One shared job pointer and
// generation, as before, let a worker that sat out a job read the *next* job's fields after the
// caller had moved on: two regions of different thread counts in a row then ran a job twice, or a
// null one, and the remaining-count went past zero: SIGSEGV, hangs, wrong results, issue #15.)
struct alignas(64) Mailbox {
  WakeWord ticket;
  const std::function<void(int, int)>* job = nullptr;
  int nth = 0;
};

class Pool;
std::atomic<Pool*> g_pool{nullptr};

class Pool {
 public:
  // Leaked on purpose: no join races at interpreter exit. A forked child gets a fresh pool
  // (pthread_atfork below): the parent's workers do not exist there, so the first region of the
  // child would wait forever for them (a multiprocessing fork pool hung, issue #15).
  static Pool& get() {
    static const bool registered = [] {
      pthread_atfork(nullptr, nullptr, [] { g_pool.store(new Pool()); });
      return true;
    }();
    (void)registered;
    Pool* p = g_pool.load(std::memory_order_acquire);
    if (!p) {
      Pool* fresh = new Pool();
      if (g_pool.compare_exchange_strong(p, fresh)) return *fresh;
      delete fresh;
    }
    return *p;
  }

  void run(int nth, const std::function<void(int, int)>& fn) {
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock() || t_in_pool) { fn(0, 1); return; }
    ensure_workers(nth - 1);
    remaining_.store(nth - 1, std::memory_order_relaxed);
    for (int w = 1; w < nth; ++w) {
      Mailbox& mb = *boxes_[(size_t)w - 1];
      mb.job = &fn;
      mb.nth = nth;
      mb.ticket.word.fetch_add(1, std::memory_order_seq_cst);  // publishes job/nth (release)
      wake_all(mb.ticket);
    }
    t_in_pool = true;
    fn(0, nth);
    t_in_pool = false;
    // The last worker to finish bumps done_; a stale bump from an earlier job only costs a re-check.
    while (remaining_.load(std::memory_order_acquire) != 0) {
      const uint32_t d = done_.word.load(std::memory_order_acquire);
      if (remaining_.load(std::memory_order_acquire) == 0) break;
      wait_while_equal(done_, d);
    }
  }

 private:
  void ensure_workers(int n) {
    while ((int)boxes_.size() < n) {
      boxes_.push_back(std::make_unique<Mailbox>());
      Mailbox* mb = boxes_.back().get();
      const int idx = (int)boxes_.size();
      std::thread([this, mb, idx] { worker_loop(*mb, idx); }).detach();
    }
  }

  void worker_loop(Mailbox& mb, int idx) {
    t_in_pool = true;
    uint32_t seen = 0;  // the mailbox is new: its first job is ticket 1
    for (;;) {
      wait_while_equal(mb.ticket, seen);
      seen = mb.ticket.word.load(std::memory_order_acquire);
      (*mb.job)(idx, mb.nth);
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        done_.word.fetch_add(1, std::memory_order_seq_cst);
        wake_all(done_);
      }
    }
  }

  std::mutex run_mutex_;
  std::vector<std::unique_ptr<Mailbox>> boxes_;  // worker idx (1..) uses boxes_[idx - 1]
  std::atomic<int> remaining_{0};
  WakeWord done_;
};

}  // namespace

int get_num_threads() {
  int n = g_num_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  if (const char* env = std::getenv("PYQUANT_NUM_THREADS")) {
    n = std::atoi(env);
    if (n > 0) return n;
  }
  n = (int)std::thread::hardware_concurrency();
  return n > 0 ? n : 1;
}

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : 0); }

void parallel_run(int nth, const std::function<void(int, int)>& fn) {
  if (nth <= 0) nth = get_num_threads();
  if (nth > 256) nth = 256;
  if (nth == 1) { fn(0, 1); return; }
  Pool::get().run(nth, fn);
}

}  // namespace pq
