// Pre-tokenizers of byte-level BPE vocabularies, chosen by the GGUF key
// `tokenizer.ggml.pre`: a list of regexes applied in sequence, each one
// splitting the pieces the previous produced (as llama.cpp's
// llm_tokenizer_bpe does). BPE then never merges across piece boundaries.
//
// Invalid UTF-8 never reaches the regexes: each byte that is not part of a
// well-formed sequence becomes a piece of its own (byte-level BPE encodes any
// byte, so the text round-trips). llama.cpp instead turns such bytes into
// U+FFFD; Hugging Face tokenizers cannot take them at all.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex_split.h"

namespace moe {

class Pretokenizer {
 public:
  // `pre` is the value of tokenizer.ggml.pre ("" means "default"). Throws
  // moe::Error naming it and listing the supported values when unknown.
  explicit Pretokenizer(const std::string& pre);

  // Every accepted value of tokenizer.ggml.pre, aliases included.
  static std::vector<std::string> supported_names();

  const std::string& name() const { return name_; }
  // llama3-style vocabularies look a whole piece up before merging it.
  bool ignore_merges() const { return ignore_merges_; }

  // Pieces of `text`, in order; concatenated they give back `text`.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  std::string name_;
  bool ignore_merges_ = false;
  std::vector<SplitRegex> regexes_;
};

}  // namespace moe
