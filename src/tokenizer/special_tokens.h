// Special tokens in input text: before any pre-tokenizing, text is cut around
// the texts of control, user_defined and unknown tokens, so "<｜User｜>" typed
// in a prompt becomes that one token instead of eleven pieces of punctuation.
//
// The cut follows llama.cpp's tokenizer_st_partition: tokens are tried
// longest text first, each one everywhere in the text still unclaimed, left to
// right. User-defined tokens are always cut out; control and unknown tokens
// only when special tokens are parsed (otherwise they are ordinary text).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace moe {

struct Vocab;

struct TextFragment {
  std::string_view text;  // empty when this fragment is a special token
  int32_t token = -1;     // the special token, or -1 for ordinary text
};

class SpecialTokens {
 public:
  explicit SpecialTokens(const Vocab& vocab);

  // `text` as fragments, in order; text fragments are never empty.
  std::vector<TextFragment> partition(std::string_view text, bool parse_special) const;

 private:
  struct Entry {
    std::string_view text;  // points into the vocabulary
    int32_t id;
    bool always;  // user_defined: cut out even when special tokens are not parsed
  };
  std::vector<Entry> entries_;  // longest text first
};

}  // namespace moe
