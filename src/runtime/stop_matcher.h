// Stop strings in streamed text: text that may still become a stop string is
// held back until the next piece decides.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace moe {

// Length of the longest suffix of `text` that is a proper prefix of `needle`:
// bytes that may still become `needle` once more text arrives.
size_t partial_match_suffix(std::string_view text, std::string_view needle);

// Holds back text while it could still be the start of a stop string; on a
// match, the text before it is released and everything after is dropped.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Returns the text that is now certain to be output.
  std::string push(std::string_view text);
  // The text still held back (call when generation ends without a match).
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace moe
