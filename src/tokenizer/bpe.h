// Byte-level BPE (GPT-2 style): a piece's bytes start as one symbol each (the
// byte-level characters of byte_level.h) and the adjacent pair with the lowest
// merge rank is merged until no pair has a rank; ties go to the leftmost pair,
// as in Hugging Face tokenizers and llama.cpp.
//
// Symbols are interned as integers so that merging never builds strings:
// symbol ids below n_vocab are token ids; texts that occur only in
// tokenizer.ggml.merges (no token of their own, which well-formed vocabularies
// never have) get ids from n_vocab up.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace moe {

// Token text -> id; the views point into the vocabulary's own strings.
using TokenIndex = std::unordered_map<std::string_view, int32_t>;

class BpeMerges {
 public:
  struct Merge {
    int32_t rank;    // position in tokenizer.ggml.merges: lower merges first
    int32_t result;  // symbol of the merged text
  };

  // Each merge line is "LEFT RIGHT", split at its first space after the
  // first byte (a token may start with a space). When a pair is listed twice
  // the first (lowest) rank wins, as in llama.cpp. `source` names the file in
  // errors; a line without a space is one.
  void build(int32_t n_vocab, const std::vector<std::string>& merge_lines, const TokenIndex& tokens,
             const std::string& source);

  const Merge* find(int32_t left, int32_t right) const;
  // The symbol for a single byte.
  int32_t byte_symbol(uint8_t b) const { return byte_symbols_[b]; }
  int32_t n_vocab() const { return n_vocab_; }
  size_t n_merges() const { return n_merges_; }

 private:
  int32_t symbol(std::string_view text, const TokenIndex& tokens);
  void insert(uint64_t key, Merge m);

  int32_t n_vocab_ = 0;
  size_t n_merges_ = 0;
  int32_t byte_symbols_[256] = {};
  std::unordered_map<std::string, int32_t> extra_symbols_;  // texts with no token
  // Open addressing, keyed by (left << 32 | right); kEmpty marks a free slot.
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  std::vector<uint64_t> keys_;
  std::vector<Merge> values_;
  uint64_t mask_ = 0;
};

// Appends the tokens of one pre-tokenized piece (raw bytes, not byte-level
// text). A final symbol that is not a token falls back to the tokens of its
// single bytes, and a byte without a token to `unk_id` (dropped when -1).
void bpe_encode_piece(std::string_view piece, const BpeMerges& merges, int32_t unk_id, std::vector<int32_t>& out);

}  // namespace moe
