#include "runtime/reasoning_filter.h"

#include "runtime/stop_matcher.h"

namespace moe {

namespace {
constexpr std::string_view kOpen = "<think>", kClose = "</think>";
constexpr std::string_view kDim = "\x1b[2m", kNormal = "\x1b[22m";
}  // namespace

// Each shown piece of reasoning carries its own dim/normal pair, so an
// interrupted answer never leaves the terminal dimmed.
std::string ReasoningFilter::show(std::string_view s, bool reasoning) const {
  if (s.empty()) return {};
  if (!reasoning) return std::string(s);
  if (hide_) return {};
  if (!dim_) return std::string(s);
  return std::string(kDim) + std::string(s) + std::string(kNormal);
}

std::string ReasoningFilter::push(std::string_view text) {
  held_ += text;
  std::string out;
  for (;;) {
    const std::string_view tag = inside_ ? kClose : kOpen;
    const size_t pos = held_.find(tag);
    if (pos == std::string::npos) break;
    out += show(std::string_view(held_).substr(0, pos), inside_);
    // The tags belong to the reasoning: dimmed with it, hidden with it.
    out += show(tag, true);
    held_.erase(0, pos + tag.size());
    inside_ = !inside_;
  }
  const size_t keep = partial_match_suffix(held_, inside_ ? kClose : kOpen);
  out += show(std::string_view(held_).substr(0, held_.size() - keep), inside_);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string ReasoningFilter::flush() {
  std::string out = show(held_, inside_);
  held_.clear();
  return out;
}

}  // namespace moe
