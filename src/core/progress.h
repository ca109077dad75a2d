// A one-line progress bar on stderr, drawn only when stderr is a terminal
// (scripts and logs see nothing). Thread-safe: workers may call advance().
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

namespace moe {

class ProgressBar {
 public:
  // `total` units (bytes, tensors...); `label` is printed before the bar.
  ProgressBar(std::string label, uint64_t total, bool enabled = true);
  ~ProgressBar();  // finishes the line
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void advance(uint64_t units, const std::string& item = "");
  void finish();
  bool active() const { return active_; }

 private:
  void draw_locked(const std::string& item);

  std::mutex mu_;
  std::string label_;
  uint64_t total_;
  uint64_t done_ = 0;
  int last_permille_ = -1;
  double start_s_;
  bool active_;
  bool finished_ = false;
};

}  // namespace moe
