// Display of R1-style reasoning: text between <think> and </think> is shown
// dimmed (ANSI, only when writing to a terminal) or hidden. Tags split
// across tokens are recognised: text that may be the start of a tag is held
// back until the next piece decides.
#pragma once

#include <string>
#include <string_view>

namespace moe {

class ReasoningFilter {
 public:
  // inside: the text starts within a <think> block (the R1 generation prompt
  // opens one). hide: drop the reasoning. dim: wrap it in ANSI dim/normal.
  ReasoningFilter(bool inside, bool hide, bool dim) : inside_(inside), hide_(hide), dim_(dim) {}

  std::string push(std::string_view text);  // what to print now
  std::string flush();                      // what is still held back

 private:
  std::string show(std::string_view s, bool reasoning) const;

  bool inside_, hide_, dim_;
  std::string held_;
};

}  // namespace moe
