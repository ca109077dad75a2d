// A tokenizer vocabulary as a GGUF file stores it (tokenizer.ggml.*): the
// token texts, their types and scores, BPE merges, the special token ids and
// the flags that say how to encode. Loading checks everything the
// tokenizer later relies on, so encode and decode never meet a bad id.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"

namespace moe {

class GgufFile;

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type, which are
// also SentencePiece's piece types).
enum class TokenType : int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

enum class VocabKind {
  bpe,            // tokenizer.ggml.model "gpt2": byte-level BPE with merges
  sentencepiece,  // tokenizer.ggml.model "llama": SentencePiece pieces with scores
};

struct Vocab {
  VocabKind kind = VocabKind::bpe;
  std::string model;  // tokenizer.ggml.model as written
  std::string pre;    // tokenizer.ggml.pre ("" when absent)
  std::string source; // the file, for error messages

  std::vector<std::string> tokens;
  std::vector<TokenType> types;
  std::vector<float> scores;
  TokenIndex index;   // text -> id (a text listed twice maps to its last id, as in llama.cpp)
  BpeMerges merges;   // empty for SentencePiece

  // -1 when the vocabulary has none.
  int32_t bos = -1, eos = -1, unk = -1, pad = -1, sep = -1, eot = -1, eom = -1;
  int32_t fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;  // fill-in-the-middle
  std::vector<int32_t> eog;  // tokens that end generation, sorted

  bool add_bos = false;  // tokenizer.ggml.add_bos_token
  bool add_eos = false;  // tokenizer.ggml.add_eos_token
  bool add_space_prefix = false;  // SentencePiece: tokenizer.ggml.add_space_prefix

  // Reads and checks the tokenizer.ggml.* keys. Throws moe::Error naming the
  // file and key: unknown model, array lengths that differ, ids out of range,
  // merge lines without a space.
  static Vocab from_gguf(const GgufFile& f);

  Vocab() = default;
  // `index` points into `tokens`, so a copy would dangle; moves keep it valid.
  Vocab(Vocab&&) = default;
  Vocab& operator=(Vocab&&) = default;
  Vocab(const Vocab&) = delete;
  Vocab& operator=(const Vocab&) = delete;

  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t find(std::string_view text) const;  // -1 when no token has this text
  TokenType type(int32_t id) const { return types[static_cast<size_t>(id)]; }
  bool is_eog(int32_t id) const;
};

const char* token_type_name(TokenType t);

}  // namespace moe
