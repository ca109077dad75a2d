// What the generation loop needs from a model's session: evaluate tokens
// into its cache and hand back logits. One sequence, positions 0..n_past()-1.
#pragma once

#include <cstdint>

namespace moe {

class InferenceSession {
 public:
  virtual ~InferenceSession() = default;
  // Evaluates tokens at positions n_past() .. n_past()+n-1, appending them to
  // the cache. Writes logits for every token ([n][n_vocab]) when all_logits,
  // else for the last one only ([n_vocab]).
  virtual void forward(const int32_t* tokens, int64_t n, float* logits, bool all_logits) = 0;
  virtual int64_t n_past() const = 0;
  virtual int64_t n_ctx() const = 0;
  virtual int64_t n_vocab() const = 0;
  virtual void reset() = 0;
  virtual void truncate(int64_t n) = 0;  // forget positions n..
};

}  // namespace moe
