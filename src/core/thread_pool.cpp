#include "core/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>

namespace moe {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// About 50 microseconds of pause instructions: longer than the gap between
// two products of a forward pass, short enough not to matter when idle.
constexpr int kSpinIters = 20000;
// Spinning threads yield the core this often, so that on a machine busier
// than its cores they do not starve the thread they wait for.
constexpr int kYieldEvery = 256;

}  // namespace

int default_thread_count() {
  std::set<std::string> cores;  // one thread_siblings mask per physical core
  for (int cpu = 0;; ++cpu) {
    std::ifstream f("/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings");
    if (!f) break;
    std::string mask;
    if (std::getline(f, mask)) cores.insert(mask);
  }
  int n = cores.empty() ? static_cast<int>(std::thread::hardware_concurrency()) : static_cast<int>(cores.size());
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) n = std::min(n, CPU_COUNT(&set));
  return std::max(1, n);
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_chunk(int64_t chunk, int thread) {
  const int64_t per = (job_n_ + n_chunks_ - 1) / n_chunks_;
  const int64_t begin = std::min<int64_t>(job_n_, per * chunk);
  const int64_t end = std::min<int64_t>(job_n_, begin + per);
  if (begin >= end) return;
  try {
    (*job_)(begin, end, thread);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!error_) error_ = std::current_exception();
  }
}

bool ThreadPool::run_one(uint32_t gen, int thread) {
  uint64_t s = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(s >> 32) != gen || static_cast<int64_t>(s & 0xFFFFFFFFu) >= n_chunks_) return false;
    if (claim_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) break;
  }
  // The chunk is ours and its generation cannot end before it is done, so
  // job_ and job_n_ are this generation's.
  run_chunk(static_cast<int64_t>(s & 0xFFFFFFFFu), thread);
  done_.fetch_add(1, std::memory_order_acq_rel);
  return true;
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int spins = 0; g == seen && !stop_.load(std::memory_order_acquire); ++spins) {
      if (spins < kSpinIters) {
        cpu_relax();
        // On a machine with more runnable threads than cores, let them run.
        if (spins % kYieldEvery == kYieldEvery - 1) std::this_thread::yield();
      } else {
        // The generation is incremented under mu_, so no wake-up is lost.
        std::unique_lock<std::mutex> lock(mu_);
        cv_start_.wait(lock, [&] {
          return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
        });
      }
      g = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = g;
    while (run_one(static_cast<uint32_t>(g), index)) {
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  if (n_threads_ == 1 || n == 1) {
    fn(0, n, 0);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  n_chunks_ = std::min<int64_t>(n_threads_, n);
  error_ = nullptr;
  done_.store(0, std::memory_order_relaxed);
  uint64_t g;
  {
    std::lock_guard<std::mutex> lock(mu_);
    g = generation_.load(std::memory_order_relaxed) + 1;
    // Chunks become claimable before the workers are told.
    claim_.store(static_cast<uint64_t>(static_cast<uint32_t>(g)) << 32, std::memory_order_release);
    generation_.store(g, std::memory_order_release);
  }
  cv_start_.notify_all();
  // The caller takes chunks too, and any chunk a worker has not started yet
  // (it may be descheduled on a busy machine): it waits only for chunks
  // already running.
  while (run_one(static_cast<uint32_t>(g), 0)) {
  }
  for (int spins = 0; done_.load(std::memory_order_acquire) != n_chunks_; ++spins) {
    if (spins < kSpinIters && spins % kYieldEvery != kYieldEvery - 1) cpu_relax();
    else std::this_thread::yield();  // a worker holding a chunk was descheduled
  }
  job_ = nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::parallel_jobs(int64_t n_jobs, const std::function<void(int64_t, int)>& fn) {
  std::atomic<int64_t> next{0};
  parallel_for(std::min<int64_t>(n_threads_, n_jobs), [&](int64_t, int64_t, int thread) {
    for (int64_t j; (j = next.fetch_add(1, std::memory_order_relaxed)) < n_jobs;) fn(j, thread);
  });
}

}  // namespace moe
