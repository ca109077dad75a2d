// --prompt-cache FILE for the one-shot mode: the latent cache of a prompt
// saved after the run, and on the next run the longest prefix of the new
// prompt it holds loaded instead of evaluated; chat's /save and /load write
// and read the same file with the conversation in it
// (runtime/prompt_cache_file.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/inference_session.h"
#include "runtime/prompt_cache_file.h"

namespace moe {

// When FILE exists: checks it (a clear error for a corrupt file or one of
// another model) and loads into sequence 0 the longest prefix of `tokens`
// it holds, short of the last token (whose logits the run needs). Returns
// the tokens loaded (0 without a file).
int64_t prompt_cache_load(const std::string& path, InferenceSession& s, const std::vector<int32_t>& tokens);
// Writes FILE (atomically) with the first tokens.size() positions of
// sequence 0, which must hold them, and a conversation (chat's /save).
// `model_path` is the model's file, which FILE must not be.
void prompt_cache_save(const std::string& path, const std::string& model_path, InferenceSession& s,
                       const std::vector<int32_t>& tokens, const std::string& conversation = "");
// FILE whole, checked against the session (chat's /load).
PromptCacheData prompt_cache_read(const std::string& path, const InferenceSession& s);

}  // namespace moe
