// Chat prefix reuse: a new turn renders the whole conversation, and only
// what the session's cache does not hold yet is evaluated.
//
// The session holds the previous prompt and the tokens the model generated;
// when the new rendering starts with exactly that text, and the tokens of the
// rest are also where a tokenization of the whole rendering ends (no token
// spans the seam), only those tokens are new. Otherwise (a template that
// rewrites history, like R1 dropping earlier reasoning, or a stop string that
// cut an answer) the whole rendering is tokenized and the cache is cut back
// to the longest common token prefix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace moe {

struct PrefixReuse {
  std::vector<int32_t> tokens;  // the whole conversation
  size_t keep = 0;              // the session keeps tokens[0..keep); the rest are new (at least one)
};

// cached: the tokens in the session, in order; cached_text: their text, or
// "" when it is not known (the cache ends inside a prompt).
PrefixReuse plan_prefix_reuse(const Tokenizer& tok, const std::string& rendered, const std::vector<int32_t>& cached,
                              const std::string& cached_text);

}  // namespace moe
