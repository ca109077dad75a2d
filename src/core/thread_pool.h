// A fixed pool of worker threads, created once; parallel_for splits an index
// range across them and the calling thread, with no allocation or thread
// creation per call.
//
// A forward pass issues hundreds of parallel_for calls per token, microseconds
// apart; waking a sleeping thread through the kernel costs tens of
// microseconds each time. So workers spin for a short while after a job
// before they sleep on the condition variable, and the caller spins on the
// completion count.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moe {

class ThreadPool {
 public:
  // n_threads counts the caller: 1 means no worker threads.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end, thread_index) over disjoint chunks covering [0, n);
  // chunks are contiguous and at most one per thread. Blocks until done.
  // Exceptions thrown by fn are rethrown here (the first one).
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

  // Calls fn(job, thread_index) once for every job in [0, n_jobs), each
  // thread taking the next job from a shared counter: for jobs of uneven
  // cost (experts with different token counts, causal attention rows).
  void parallel_jobs(int64_t n_jobs, const std::function<void(int64_t, int)>& fn);

 private:
  void worker(int index);
  void run_chunk(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  // Published before generation_ is incremented, read after it is seen.
  const std::function<void(int64_t, int64_t, int)>* job_ = nullptr;
  int64_t job_n_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;  // guarded by mu_
};

}  // namespace moe
