#include "tokenizer/tokenizer.h"

#include "tokenizer/utf8.h"

namespace moe {

StreamDecoder::StreamDecoder(Tokenizer tokenizer, bool special, bool at_start)
    : tok_(std::move(tokenizer)), special_(special), at_start_(at_start), first_(at_start) {}

std::string StreamDecoder::push(int32_t id) {
  std::string piece = tok_.token_to_piece(id, special_);
  if (first_ && tok_.strips_leading_space() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  first_ = false;
  pending_ += piece;

  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const Utf8Sequence q = utf8_sequence_at(pending_, i);
    if (q.kind == Utf8Sequence::truncated) break;  // the rest of it comes with a later token
    if (q.kind == Utf8Sequence::valid) {
      out.append(pending_, i, q.length);
    } else {
      out += kUtf8Replacement;
    }
    i += q.length;
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  // Only the start of one character can be pending: one U+FFFD for it.
  std::string out = pending_.empty() ? std::string() : std::string(kUtf8Replacement);
  pending_.clear();
  first_ = at_start_;
  return out;
}

}  // namespace moe
