#include "runtime/stop_matcher.h"

#include <algorithm>

namespace moe {

size_t partial_match_suffix(std::string_view text, std::string_view needle) {
  const size_t max = std::min(text.size(), needle.size() - (needle.empty() ? 0 : 1));
  for (size_t len = max; len > 0; --len)
    if (text.substr(text.size() - len) == needle.substr(0, len)) return len;
  return 0;
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return {};
  held_ += text;
  // The earliest complete match wins.
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  size_t keep = 0;
  for (const auto& s : stops_) keep = std::max(keep, partial_match_suffix(held_, s));
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  return out;
}

}  // namespace moe
