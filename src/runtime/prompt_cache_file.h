// A saved prompt cache (--prompt-cache FILE, llama.cpp's flag): the tokens
// of a prompt and the latent-cache rows that hold them, so the next run on
// the same model evaluates only what follows the longest matching prefix.
// MLA makes these files small: one row of kv_lora_rank + qk_rope_head_dim
// values per token and layer.
//
// Chat's /save writes the same file with the conversation it holds.
//
// Models whose cache is not one row per token (DeepSeek-V4: rings of recent
// rows and the compressors' state, one row per block) save a state of their
// own making instead of rows (`state`, checked by the session that reads it).
//
// Layout (little-endian): "MOEPCACH", u32 version, u64 model id, u32 model
// name length and bytes, u32 cache type, u32 layers, u32 floats per row,
// u32 conversation length and bytes, u64 tokens n, n i32 tokens,
// layers * n * row floats, u64 state bytes s and s bytes, u64 FNV-1a of all
// the bytes before it. A file is read like any hostile input: every size is
// checked against the bytes there are (and the model's shape) before
// anything is allocated, and the checksum catches a torn or edited file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

// What a file must match to be used with a session.
// The cache type of a DeepSeek-V4 state: this plus its rows' LatentType.
inline constexpr uint32_t kDeepseek4StateType = 0x34565344;  // "DSV4"

struct PromptCacheShape {
  uint64_t model_id = 0;      // gguf_model_fingerprint()
  std::string model_name;     // for messages
  uint32_t latent_type = 0;   // LatentType, or kDeepseek4StateType + LatentType
  uint32_t n_layers = 0;
  uint32_t row_floats = 0;    // storage floats of one cache row (0: a state instead)
  int64_t n_ctx = 0;          // most tokens it may hold
  int64_t n_vocab = 0;
};

struct PromptCacheData {
  std::vector<int32_t> tokens;
  std::vector<float> rows;   // [layer][token][row_floats]
  std::string state;         // or the session's own state (row_floats 0)
  std::string conversation;  // chat /save: the messages as JSON; "" for --prompt-cache
};

std::string encode_prompt_cache(const PromptCacheShape& shape, const PromptCacheData& data);
// Throws moe::Error naming `what` (the path) and the fault: not a prompt
// cache, another version, another model (named), another cache type or
// shape, more tokens than the context, a token outside the vocabulary, a
// size the bytes do not hold, a checksum that does not match.
PromptCacheData decode_prompt_cache(std::string_view bytes, const PromptCacheShape& expect, const std::string& what);

}  // namespace moe
