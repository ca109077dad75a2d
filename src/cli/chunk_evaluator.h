// Evaluating a text chunk by chunk as llama-perplexity and llama-imatrix do:
// each chunk of n_ctx tokens from an empty cache, its first token replaced by
// BOS, and the logits of its second half kept (the scored positions).
// Header-only, as run_flags.h, so that the tools can share it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/inference_session.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace moe {

// A text file as llama.cpp reads -f: whole, one trailing newline dropped.
inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_error("cannot open the text file '%s'", path.c_str());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

// Runs chunks through a session and keeps the logits of the scored half.
class ChunkEvaluator {
 public:
  // A session of either model with a context of at least n_ctx; n_batch:
  // tokens per forward step (at most n_ctx).
  ChunkEvaluator(std::unique_ptr<InferenceSession> session, const Tokenizer& tok, int n_ctx, int64_t n_batch)
      : session_(std::move(session)),
        n_ctx_(n_ctx), first_(n_ctx / 2), n_batch_(static_cast<int>(std::min<int64_t>(n_batch, n_ctx))),
        vocab_(session_->n_vocab()),
        bos_(tok.vocab().add_bos ? tok.bos() : -1),
        chunk_(static_cast<size_t>(n_ctx)),
        last_(static_cast<size_t>(vocab_)),
        logits_(static_cast<size_t>((n_ctx - first_) * vocab_)) {}

  int64_t vocab() const { return vocab_; }
  int first() const { return first_; }

  // Evaluates tokens[0..n_ctx) (the first replaced by BOS when the
  // vocabulary adds one). Afterwards row(j) holds the logits after position j,
  // for first() <= j < n_ctx.
  void eval(const int32_t* tokens) {
    std::copy(tokens, tokens + n_ctx_, chunk_.begin());
    if (bos_ >= 0) chunk_[0] = bos_;
    session_->reset();
    // Batches of n_batch, cut at `first` too so the unscored half asks for
    // the last row only.
    for (int pos = 0; pos < n_ctx_;) {
      int end = std::min(pos + n_batch_, n_ctx_);
      if (pos < first_ && end > first_) end = first_;
      if (end <= first_) {
        session_->forward(&chunk_[static_cast<size_t>(pos)], end - pos, last_.data(), /*all_logits=*/false);
      } else {
        float* out = &logits_[static_cast<size_t>((pos - first_) * vocab_)];
        session_->forward(&chunk_[static_cast<size_t>(pos)], end - pos, out, /*all_logits=*/true);
      }
      pos = end;
    }
  }
  const float* row(int j) const { return &logits_[static_cast<size_t>((j - first_) * vocab_)]; }
  InferenceSession& session() { return *session_; }

 private:
  std::unique_ptr<InferenceSession> session_;
  int n_ctx_, first_, n_batch_;
  int64_t vocab_;
  int32_t bos_;
  std::vector<int32_t> chunk_;
  std::vector<float> last_, logits_;
};

}  // namespace moe
