// A fixed pool of worker threads, created once; parallel_for splits an index
// range across them and the calling thread, with no allocation or thread
// creation per call.
//
// A forward pass issues hundreds of parallel_for calls per token, microseconds
// apart; waking a sleeping thread through the kernel costs tens of
// microseconds each time. So workers spin for a short while after a job
// before they sleep on the condition variable, and the caller spins on the
// completion count.
//
// On a machine with more runnable threads than cores a worker may not be
// running when a job is posted. Chunks are therefore claimed, not assigned:
// the caller (and any worker) takes every chunk nobody has started, and
// waits only for chunks already running; spinning threads yield now and
// then. Which thread computes a chunk never changes the chunk's bounds, so
// results do not depend on scheduling.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moe {

// The default thread count, as llama.cpp picks it: the physical cores
// (hyper-threads share a core's vector units, and a second thread on a core
// slows matrix products down), capped by the CPUs this process may run on
// (taskset, cgroup cpusets). At least 1.
int default_thread_count();

class ThreadPool {
 public:
  // n_threads counts the caller: 1 means no worker threads.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end, thread_index) over disjoint chunks covering [0, n):
  // contiguous, at most one per thread, of fixed bounds. A thread may run
  // more than one chunk, one after another, always passing its own index
  // (per-thread scratch stays private). Blocks until done.
  // Exceptions thrown by fn are rethrown here (the first one).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Calls fn(job, thread_index) once for every job in [0, n_jobs), each
  // thread taking the next job from a shared counter: for jobs of uneven
  // cost (experts with different token counts, causal attention rows).
  void parallel_jobs(int64_t n_jobs, const std::function<void(int64_t, int)>& fn);

 private:
  void worker(int index);
  void run_chunk(int64_t chunk, int thread);
  bool run_one(uint32_t gen, int thread);  // claims and runs one chunk of generation gen

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  // Published before generation_ is incremented, read after it is seen.
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t n_chunks_ = 1;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> claim_{0};   // generation (high 32 bits) | next chunk to claim
  std::atomic<int64_t> done_{0};     // chunks finished in this generation
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // guarded by mu_
};

}  // namespace moe
