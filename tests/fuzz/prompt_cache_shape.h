// The prompt-cache shape the fuzz target reads against, its seeds are
// written for, and the regression test replays committed inputs with.
#pragma once

#include "runtime/prompt_cache_file.h"

namespace moe {

inline PromptCacheShape fuzz_prompt_cache_shape() {
  PromptCacheShape s;
  s.model_id = 0x5eed;
  s.model_name = "seed";
  s.n_layers = 2;
  s.row_floats = 6;
  s.n_ctx = 64;
  s.n_vocab = 50;
  return s;
}

}  // namespace moe
