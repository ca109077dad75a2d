// SentencePiece vocabularies (tokenizer.ggml.model "llama"), encoded by
// libsentencepiece. A GGUF file keeps only the pieces, scores and types, so
// the ModelProto that SentencePieceProcessor loads is rebuilt from them, the
// way llama.cpp reads such a file:
//  - model type BPE: pieces merge by score, which is llama.cpp's SPM
//    algorithm (and LLaMA's own tokenizer.model type);
//  - no normalization rule; whitespace escaped as U+2581; a dummy prefix
//    space when tokenizer.ggml.add_space_prefix (default true); extra
//    whitespace kept, since llama.cpp ignores remove_extra_whitespaces here;
//  - byte fallback when the vocabulary has byte tokens (<0x00>..<0xFF>).
// Invalid UTF-8 becomes U+FFFD, as libsentencepiece's normalizer decides.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace moe {

struct Vocab;

class SentencePieceModel {
 public:
  // Throws moe::Error when libsentencepiece rejects the vocabulary (no
  // unknown token, an empty or repeated piece, a malformed byte piece).
  explicit SentencePieceModel(const Vocab& vocab);
  ~SentencePieceModel();
  SentencePieceModel(const SentencePieceModel&) = delete;
  SentencePieceModel& operator=(const SentencePieceModel&) = delete;

  // Appends the ids of `text` (no BOS/EOS; special tokens already cut out).
  void encode(std::string_view text, std::vector<int32_t>& out) const;

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

// The serialized sentencepiece.ModelProto built from `vocab` (see above).
std::string sentencepiece_model_proto(const Vocab& vocab);

}  // namespace moe
