#include "core/async_worker.h"

#include "core/error.h"

namespace moe {

AsyncWorker::AsyncWorker() : thread_([this] { loop(); }) {}

AsyncWorker::~AsyncWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AsyncWorker::submit(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    MOE_ASSERT(!busy_, "AsyncWorker: a task is already running");
    task_ = std::move(fn);
    busy_ = true;
  }
  cv_.notify_all();
}

void AsyncWorker::wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !busy_; });
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void AsyncWorker::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || (busy_ && task_); });
    if (stop_) return;
    std::function<void()> fn = std::move(task_);
    task_ = nullptr;
    lock.unlock();
    std::exception_ptr err;
    try {
      fn();
    } catch (...) {
      err = std::current_exception();
    }
    lock.lock();
    error_ = err;
    busy_ = false;
    cv_.notify_all();
  }
}

}  // namespace moe
