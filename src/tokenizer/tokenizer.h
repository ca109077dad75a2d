// Text <-> token ids for a model, from the tokenizer.ggml.* keys of its GGUF
// file (a vocabulary-only file works too).
//
// Encoding follows llama.cpp's llama_tokenize: special tokens are cut out of
// the text first (special_tokens.h), then each stretch of ordinary text is
// pre-tokenized and byte-level BPE encoded (`gpt2` vocabularies) or handed to
// libsentencepiece (`llama` vocabularies).
//
//   Tokenizer tok = Tokenizer::from_gguf(GgufFile::open("model.gguf"));
//   std::vector<int32_t> ids = tok.encode(prompt, /*add_special=*/true, /*parse_special=*/true);
//   StreamDecoder out(tok);
//   for (int32_t id : generated) fputs(out.push(id).c_str(), stdout);
//   fputs(out.flush().c_str(), stdout);
//
// A Tokenizer is immutable: copies share it, and any number of threads may
// use one at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

class GgufFile;
struct Vocab;

class Tokenizer {
 public:
  // Throws moe::Error naming the file and key on anything it cannot use.
  static Tokenizer from_gguf(const GgufFile& f);

  // `add_special`: add BOS (and EOS) where the model asks for them with
  // tokenizer.ggml.add_bos_token / add_eos_token, as llama.cpp's add_special
  // does; DeepSeek files ask for BOS only. `parse_special`: text of control
  // tokens such as "<｜User｜>" becomes those tokens; otherwise it is encoded
  // as ordinary text (user-defined tokens are matched either way).
  // Never throws on any input bytes.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes of the tokens, concatenated; `special` false leaves out control
  // and unknown tokens (BOS, EOS, <｜User｜>). SentencePiece vocabularies drop
  // the dummy-prefix space of the first token. Throws on an id out of range.
  std::string decode(const std::vector<int32_t>& ids, bool special = true) const;
  // One token's bytes (possibly part of a UTF-8 character; see StreamDecoder).
  std::string token_to_piece(int32_t id, bool special = true) const;
  // Whether decode() drops one leading space from the first token's piece.
  bool strips_leading_space() const;

  int32_t bos() const;  // -1 when none
  int32_t eos() const;  // -1 when none
  bool is_eog(int32_t id) const;  // EOS, EOT and other end-of-generation tokens
  int32_t n_vocab() const;
  const Vocab& vocab() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

// Turns tokens, one at a time, into text that is always complete UTF-8: bytes
// of a character split across tokens are held back until its last byte comes.
// Bytes that cannot become valid UTF-8 are written as U+FFFD. For tokens
// whose decode() is valid UTF-8, the pushes and the final flush concatenate to
// exactly decode().
class StreamDecoder {
 public:
  // `special` as in decode(). `at_start`: the first token pushed begins the
  // text, so a SentencePiece vocabulary's dummy-prefix space is dropped from
  // it as decode() does; pass false to continue a text, e.g. for the tokens
  // generated after a prompt.
  explicit StreamDecoder(Tokenizer tokenizer, bool special = true, bool at_start = true);

  std::string push(int32_t id);
  // What is still held back (an unfinished character, as U+FFFD); call at
  // the end of the stream. The decoder can then be reused for a new text.
  std::string flush();

 private:
  Tokenizer tok_;
  bool special_;
  bool at_start_;
  bool first_;
  std::string pending_;  // bytes not yet returned: the start of an unfinished character
};

}  // namespace moe
