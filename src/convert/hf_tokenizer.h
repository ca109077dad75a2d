// A Hugging Face byte-level BPE tokenizer (tokenizer.json,
// tokenizer_config.json, optional chat_template.jinja) turned into the GGUF
// tokenizer keys llama.cpp's converter writes for DeepSeek models
// (TextModel._set_vocab_gpt2 + gguf-py's SpecialVocab): model "gpt2", the
// pre-tokenizer name, tokens, token types, merges, special token ids,
// add_bos/add_eos and the chat template.
#pragma once

#include <cstdint>
#include <string>

#include "convert/deepseek2_gguf_layout.h"
#include "convert/hf_config.h"

namespace moe {

// The llama.cpp pre-tokenizer name (tokenizer.ggml.pre) for a tokenizer.json
// `pre_tokenizer` object given as JSON text; throws naming `path` when it is
// not one llama.cpp implements for DeepSeek vocabularies.
std::string recognise_pretokenizer(const std::string& pre_tokenizer_json, const std::string& path);

// Appends the tokenizer keys for checkpoint `dir` in the converter's order.
// `config` supplies vocab_size (the token list is padded with [PADn] unused
// entries up to it) and the bos/eos/pad ids config.json declares.
void hf_tokenizer_metadata(const std::string& dir, const HfConfig& config, GgufKvList& kv);

}  // namespace moe
