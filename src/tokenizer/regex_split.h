// One pre-tokenizer regex: compiled once with PCRE2 (UTF + UCP, JIT when the
// library has it) and used to split text as llama.cpp's unicode_regex_split
// does: every match is a piece, and so is each stretch of text between two
// matches (unmatched text is never dropped).
//
// Patterns are written as the tokenizer.json files and llama.cpp write them.
// Before compiling, regex_llama_semantics() rewrites the places where PCRE2
// and llama.cpp (std::regex over its own Unicode tables) would disagree:
//  - `\s` is exactly llama.cpp's whitespace set (Unicode White_Space: \t..\r,
//    space, U+0085, U+00A0, U+1680, U+2000..200A, U+2028/9, U+202F, U+205F,
//    U+3000). PCRE2's own \s also takes U+180E.
//  - llama.cpp replaces every non-ASCII whitespace character of the text by
//    \v before matching, so such a character never matches a literal class
//    like [\x{800}-\x{4E00}] that happens to contain it; such classes lose
//    them here.
//  - \p{L}, \p{M}, \p{N}, \p{P}, \p{S} follow Unicode 15.1, as llama.cpp's
//    tables do, even when the PCRE2 library knows an older Unicode (Debian
//    12's knows 14.0). A PCRE2 that knows Unicode 16 or later would put the
//    newer characters in categories llama.cpp does not know yet.
#pragma once

#include <string>
#include <string_view>
#include <vector>

struct pcre2_real_code_8;
struct pcre2_real_match_context_8;

namespace moe {

class SplitRegex {
 public:
  // Throws moe::Error naming the pattern and the offset on a compile error.
  explicit SplitRegex(std::string_view pattern);
  ~SplitRegex();
  SplitRegex(SplitRegex&& o) noexcept;
  SplitRegex& operator=(SplitRegex&& o) noexcept;
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;

  const std::string& pattern() const { return pattern_; }

  // Splits each of `in` (well-formed UTF-8, unchecked) into matches and the
  // text between them, appending the pieces to `out` in order.
  void split(const std::vector<std::string_view>& in, std::vector<std::string_view>& out) const;

 private:
  std::string pattern_;
  pcre2_real_code_8* code_ = nullptr;
  pcre2_real_match_context_8* context_ = nullptr;  // read-only once built: shared by all threads
};

// The pattern PCRE2 compiles for `pattern` (see above); exposed for tests.
std::string regex_llama_semantics(std::string_view pattern);

}  // namespace moe
