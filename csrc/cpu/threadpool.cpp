#include "cpu/threadpool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PQ_PAUSE() _mm_pause()
#else
#define PQ_PAUSE() std::this_thread::yield()
#endif

namespace pq {

namespace {

std::atomic<int> g_num_threads{0};
thread_local bool t_in_pool = false;

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // leaked on purpose: no join races at interpreter exit
    return *pool;
  }

  void run(int nth, const std::function<void(int, int)>& fn) {
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (!busy.owns_lock() || t_in_pool) { fn(0, 1); return; }
    ensure_workers(nth - 1);
    job_ = &fn;
    job_nth_ = nth;
    remaining_.store(nth - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(sleep_mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    sleep_cv_.notify_all();
    t_in_pool = true;
    fn(0, nth);
    t_in_pool = false;
    // Spin, but yield the core now and then: when the machine is oversubscribed (more runnable
    // threads than cores) the worker we wait for may need this very core to finish its share.
    for (int spins = 0; remaining_.load(std::memory_order_acquire) != 0;) {
      PQ_PAUSE();
      if (++spins == 64) { spins = 0; std::this_thread::yield(); }
    }
    job_ = nullptr;
  }

 private:
  void ensure_workers(int n) {
    while ((int)workers_.size() < n) {
      const int idx = (int)workers_.size() + 1;
      // The worker must start from the generation *before* the bump that publishes the job that
      // created it; reading it inside the new thread races with run() and can miss that job.
      const uint64_t gen = generation_.load(std::memory_order_acquire);
      workers_.emplace_back([this, idx, gen] { worker_loop(idx, gen); });
      workers_.back().detach();
    }
  }

  void worker_loop(int idx, uint64_t seen) {
    t_in_pool = true;
    for (;;) {
      // Spin ~50 us before sleeping: back-to-back kernel calls then cost no OS wake-up.
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      while (generation_.load(std::memory_order_acquire) == seen) {
        PQ_PAUSE();
        if (++spins == 256) {
          spins = 0;
          std::this_thread::yield();  // see run(): let a descheduled caller make progress
          if (std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(50)) {
            std::unique_lock<std::mutex> lk(sleep_mutex_);
            sleep_cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
          }
        }
      }
      seen = generation_.load(std::memory_order_acquire);
      if (idx < job_nth_) {
        (*job_)(idx, job_nth_);
        remaining_.fetch_sub(1, std::memory_order_acq_rel);
      }
    }
  }

  std::mutex run_mutex_;
  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> remaining_{0};
  const std::function<void(int, int)>* job_ = nullptr;
  int job_nth_ = 0;
  std::vector<std::thread> workers_;
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
