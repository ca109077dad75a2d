#include "core/progress.h"

#include <chrono>
#include <cstdio>
#include <unistd.h>

namespace moe {

namespace {
double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

ProgressBar::ProgressBar(std::string label, uint64_t total, bool enabled)
    : label_(std::move(label)), total_(total), start_s_(now_s()),
      active_(enabled && isatty(fileno(stderr))) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::advance(uint64_t units, const std::string& item) {
  if (!active_) return;
  std::lock_guard<std::mutex> lock(mu_);
  done_ += units;
  draw_locked(item);
}

void ProgressBar::draw_locked(const std::string& item) {
  int permille = total_ ? static_cast<int>(1000.0 * static_cast<double>(done_) / static_cast<double>(total_)) : 1000;
  if (permille > 1000) permille = 1000;
  if (permille == last_permille_ && item.empty()) return;
  last_permille_ = permille;
  constexpr int kWidth = 30;
  int filled = permille * kWidth / 1000;
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < filled ? '#' : '.';
  bar[kWidth] = '\0';
  double elapsed = now_s() - start_s_;
  std::string shown = item.size() > 40 ? "..." + item.substr(item.size() - 37) : item;
  std::fprintf(stderr, "\r\033[K%s [%s] %5.1f%% %6.1fs %s", label_.c_str(), bar, permille / 10.0,
               elapsed, shown.c_str());
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (!active_) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

}  // namespace moe
