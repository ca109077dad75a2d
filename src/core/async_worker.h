// One thread that runs one task at a time for its owner: the host's share of
// a step (the routed experts kept in host memory) while the calling thread
// drives the device. Created once; submit() and wait() allocate nothing but
// the task's std::function.
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace moe {

class AsyncWorker {
 public:
  AsyncWorker();
  ~AsyncWorker();
  AsyncWorker(const AsyncWorker&) = delete;
  AsyncWorker& operator=(const AsyncWorker&) = delete;

  // Starts fn on the worker thread. At most one task at a time: wait() first.
  void submit(std::function<void()> fn);
  // Blocks until the task is done; rethrows what it threw.
  void wait();

 private:
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<void()> task_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace moe
