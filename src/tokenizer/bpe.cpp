#include "tokenizer/bpe.h"

#include <queue>

#include "core/error.h"
#include "tokenizer/byte_level.h"

namespace moe {

namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

uint64_t pair_hash(uint64_t key) {
  key *= 0x9E3779B97F4A7C15ull;  // Fibonacci hashing; the high bits are the well-mixed ones
  return key ^ (key >> 29);
}

}  // namespace

int32_t BpeMerges::symbol(std::string_view text, const TokenIndex& tokens) {
  if (auto it = tokens.find(text); it != tokens.end()) return it->second;
  auto [it, added] = extra_symbols_.try_emplace(std::string(text), 0);
  if (added) it->second = n_vocab_ + static_cast<int32_t>(extra_symbols_.size()) - 1;
  return it->second;
}

void BpeMerges::insert(uint64_t key, Merge m) {
  for (uint64_t i = pair_hash(key) & mask_;; i = (i + 1) & mask_) {
    if (keys_[i] == key) return;  // listed before: the lower rank stays
    if (keys_[i] == kEmpty) {
      keys_[i] = key;
      values_[i] = m;
      return;
    }
  }
}

void BpeMerges::build(int32_t n_vocab, const std::vector<std::string>& merge_lines, const TokenIndex& tokens,
                      const std::string& source) {
  n_vocab_ = n_vocab;
  n_merges_ = merge_lines.size();
  extra_symbols_.clear();
  for (int b = 0; b < 256; ++b) byte_symbols_[b] = symbol(byte_level_char(static_cast<uint8_t>(b)), tokens);

  size_t capacity = 16;
  while (capacity < 2 * merge_lines.size()) capacity *= 2;
  keys_.assign(capacity, kEmpty);
  values_.assign(capacity, Merge{0, 0});
  mask_ = capacity - 1;

  std::string joined;
  for (size_t rank = 0; rank < merge_lines.size(); ++rank) {
    const std::string& line = merge_lines[rank];
    const size_t space = line.size() > 1 ? line.find(' ', 1) : std::string::npos;
    if (space == std::string::npos)
      throw_error("%s: tokenizer.ggml.merges[%zu] is '%s', expected two token texts separated by a space",
                  source.c_str(), rank, line.c_str());
    const std::string_view left(line.data(), space);
    const std::string_view right(line.data() + space + 1, line.size() - space - 1);
    joined.assign(left);
    joined.append(right);
    const int32_t l = symbol(left, tokens);
    const int32_t r = symbol(right, tokens);
    insert(pair_key(l, r), Merge{static_cast<int32_t>(rank), symbol(joined, tokens)});
  }
}

const BpeMerges::Merge* BpeMerges::find(int32_t left, int32_t right) const {
  if (keys_.empty()) return nullptr;
  const uint64_t key = pair_key(left, right);
  for (uint64_t i = pair_hash(key) & mask_;; i = (i + 1) & mask_) {
    if (keys_[i] == key) return &values_[i];
    if (keys_[i] == kEmpty) return nullptr;
  }
}

void bpe_encode_piece(std::string_view piece, const BpeMerges& merges, int32_t unk_id, std::vector<int32_t>& out) {
  struct Symbol {
    int32_t id;
    int32_t prev, next;  // neighbours in the live list, -1 at the ends
    uint32_t begin, end; // the bytes of the piece it covers
  };
  struct Candidate {
    int32_t rank;
    int32_t left;  // index of the left symbol
    int32_t left_id, right_id;
    // std::priority_queue puts the greatest first: lowest rank, then leftmost.
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };

  const auto n = static_cast<int32_t>(piece.size());
  if (n == 0) return;
  std::vector<Symbol> sym(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    sym[i] = Symbol{merges.byte_symbol(static_cast<uint8_t>(piece[i])), i - 1, i + 1 < n ? i + 1 : -1,
                    static_cast<uint32_t>(i), static_cast<uint32_t>(i + 1)};

  std::priority_queue<Candidate> queue;
  const auto consider = [&](int32_t left) {
    if (left < 0 || sym[left].next < 0) return;
    const Symbol& r = sym[sym[left].next];
    if (const BpeMerges::Merge* m = merges.find(sym[left].id, r.id)) queue.push({m->rank, left, sym[left].id, r.id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& l = sym[c.left];
    // A candidate is stale once either side has merged with something else:
    // the left symbol's id changes when it grows, and the right one's when it
    // grows or is absorbed (then it is no longer the left one's neighbour).
    if (l.id != c.left_id || l.next < 0 || sym[l.next].id != c.right_id) continue;
    Symbol& r = sym[l.next];
    l.id = merges.find(c.left_id, c.right_id)->result;
    l.end = r.end;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    r.id = -1;
    consider(l.prev);
    consider(c.left);
  }

  for (int32_t i = 0; i >= 0; i = sym[i].next) {
    const Symbol& s = sym[i];
    if (s.id < merges.n_vocab()) {
      out.push_back(s.id);
      continue;
    }
    for (uint32_t b = s.begin; b < s.end; ++b) {
      const int32_t t = merges.byte_symbol(static_cast<uint8_t>(piece[b]));
      if (t < merges.n_vocab()) {
        out.push_back(t);
      } else if (unk_id >= 0) {
        out.push_back(unk_id);
      }
    }
  }
}

}  // namespace moe
