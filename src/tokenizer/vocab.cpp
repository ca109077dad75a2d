#include "tokenizer/vocab.h"

#include <algorithm>
#include <cinttypes>
#include <limits>

#include "core/error.h"
#include "gguf/gguf_reader.h"

namespace moe {

namespace {

// Roles found by token text when no key names them, as llama.cpp does
// (llama_vocab::impl::load) because converters rarely write these keys. The
// first token found takes the role, and is made a control token.
struct RoleByText {
  int32_t Vocab::*role;
  std::initializer_list<std::string_view> texts;
};
const RoleByText kRolesByText[] = {
    {&Vocab::eot, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
                   "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}},
    {&Vocab::eom, {"<|eom_id|>"}},
    {&Vocab::fim_pre, {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                       "<|code_prefix|>", "<|prefix|>"}},
    {&Vocab::fim_suf, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                       "<|code_suffix|>", "<|suffix|>"}},
    {&Vocab::fim_mid, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                       "<|code_middle|>", "<|middle|>"}},
    {&Vocab::fim_pad, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
    {&Vocab::fim_rep, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
    {&Vocab::fim_sep, {"<|file_sep|>"}},
};

// Tokens that end generation, by text (llama.cpp's list, without its
// special cases for gpt-oss and Gemma 4); also made control tokens.
constexpr std::string_view kEndOfGenerationTexts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
};

int32_t read_token_id(const GgufFile& f, const char* key, int32_t fallback, int32_t n_tokens) {
  const std::optional<uint32_t> v = f.get_u32_opt(key);
  if (!v) return fallback < n_tokens ? fallback : -1;
  if (*v >= static_cast<uint32_t>(n_tokens))
    throw_error("%s: %s is %u, out of range for a vocabulary of %d tokens", f.path().c_str(), key, *v, n_tokens);
  return static_cast<int32_t>(*v);
}

}  // namespace

const char* token_type_name(TokenType t) {
  switch (t) {
    case TokenType::undefined: return "undefined";
    case TokenType::normal: return "normal";
    case TokenType::unknown: return "unknown";
    case TokenType::control: return "control";
    case TokenType::user_defined: return "user_defined";
    case TokenType::unused: return "unused";
    case TokenType::byte: return "byte";
  }
  return "?";
}

Vocab Vocab::from_gguf(const GgufFile& f) {
  Vocab v;
  v.source = f.path();
  const char* src = v.source.c_str();

  v.model = f.get_string("tokenizer.ggml.model");
  if (v.model == "gpt2") {
    v.kind = VocabKind::bpe;
  } else if (v.model == "llama") {
    v.kind = VocabKind::sentencepiece;
  } else {
    throw_error("%s: unknown tokenizer model '%s' (tokenizer.ggml.model); supported: gpt2 (byte-level BPE), "
                "llama (SentencePiece)",
                src, v.model.c_str());
  }
  v.pre = f.get_string_opt("tokenizer.ggml.pre").value_or("");

  v.tokens = f.get_string_array("tokenizer.ggml.tokens");
  MOE_ASSERT(!v.tokens.empty(), "%s: tokenizer.ggml.tokens is empty", src);
  MOE_ASSERT(v.tokens.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()),
             "%s: tokenizer.ggml.tokens has %zu entries, more than a token id can hold", src, v.tokens.size());
  const auto n = static_cast<int32_t>(v.tokens.size());

  v.types.assign(v.tokens.size(), TokenType::normal);
  if (f.has("tokenizer.ggml.token_type")) {
    const std::vector<int32_t> t = f.get_i32_array("tokenizer.ggml.token_type");
    MOE_ASSERT(t.size() == v.tokens.size(), "%s: tokenizer.ggml.token_type has %zu entries, tokenizer.ggml.tokens %zu",
               src, t.size(), v.tokens.size());
    for (size_t i = 0; i < t.size(); ++i) {
      MOE_ASSERT(t[i] >= 0 && t[i] <= 6, "%s: tokenizer.ggml.token_type[%zu] is %d, expected 0..6", src, i, t[i]);
      v.types[i] = static_cast<TokenType>(t[i]);
    }
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  if (f.has("tokenizer.ggml.scores")) {
    v.scores = f.get_f32_array("tokenizer.ggml.scores");
    MOE_ASSERT(v.scores.size() == v.tokens.size(),
               "%s: tokenizer.ggml.scores has %zu entries, tokenizer.ggml.tokens %zu", src, v.scores.size(),
               v.tokens.size());
  }

  v.index.reserve(v.tokens.size());
  for (int32_t i = 0; i < n; ++i) v.index[v.tokens[static_cast<size_t>(i)]] = i;

  if (v.kind == VocabKind::bpe)
    v.merges.build(n, f.get_string_array("tokenizer.ggml.merges"), v.index, v.source);

  // Without keys, SentencePiece vocabularies put <unk>, <s>, </s> at 0, 1, 2.
  const bool spm = v.kind == VocabKind::sentencepiece;
  v.bos = read_token_id(f, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, n);
  v.eos = read_token_id(f, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, n);
  v.unk = read_token_id(f, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, n);
  v.pad = read_token_id(f, "tokenizer.ggml.padding_token_id", -1, n);
  v.sep = read_token_id(f, "tokenizer.ggml.seperator_token_id", -1, n);  // sic: the key is misspelt in GGUF
  v.eot = read_token_id(f, "tokenizer.ggml.eot_token_id", -1, n);
  v.eom = read_token_id(f, "tokenizer.ggml.eom_token_id", -1, n);
  v.fim_pre = read_token_id(f, "tokenizer.ggml.fim_pre_token_id", -1, n);
  v.fim_suf = read_token_id(f, "tokenizer.ggml.fim_suf_token_id", -1, n);
  v.fim_mid = read_token_id(f, "tokenizer.ggml.fim_mid_token_id", -1, n);
  v.fim_pad = read_token_id(f, "tokenizer.ggml.fim_pad_token_id", -1, n);
  v.fim_rep = read_token_id(f, "tokenizer.ggml.fim_rep_token_id", -1, n);
  v.fim_sep = read_token_id(f, "tokenizer.ggml.fim_sep_token_id", -1, n);

  // llama.cpp's defaults: SentencePiece adds BOS and a space prefix; BPE
  // vocabularies add nothing unless the pre-tokenizer is llama3's.
  const bool llama3 = v.pre == "llama3" || v.pre == "llama-v3" || v.pre == "llama-bpe";
  v.add_bos = f.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(spm || llama3);
  // llama.cpp adds no BOS for GLM-4's vocabulary (it unsets special_bos_id),
  // whatever the file says.
  if (v.pre == "glm4" || v.pre == "chatglm-bpe") v.add_bos = false;
  v.add_eos = f.get_bool_opt("tokenizer.ggml.add_eos_token").value_or(false);
  v.add_space_prefix = f.get_bool_opt("tokenizer.ggml.add_space_prefix").value_or(spm);
  MOE_ASSERT(!v.add_bos || v.bos >= 0, "%s: tokenizer.ggml.add_bos_token is true but there is no BOS token", src);
  MOE_ASSERT(!v.add_eos || v.eos >= 0, "%s: tokenizer.ggml.add_eos_token is true but there is no EOS token", src);

  const auto make_control = [&](int32_t id) {
    if (v.types[static_cast<size_t>(id)] != TokenType::unused) v.types[static_cast<size_t>(id)] = TokenType::control;
  };
  for (const RoleByText& r : kRolesByText) {
    for (std::string_view text : r.texts) {
      if (v.*r.role >= 0) break;
      if (const int32_t id = v.find(text); id >= 0) {
        v.*r.role = id;
        make_control(id);
      }
    }
  }

  // End of generation: EOS, EOT, EOM, the FIM tokens that close a fill-in
  // (pad, repo, file separator) and the tokens known by text.
  for (int32_t id : {v.eos, v.eot, v.eom, v.fim_pad, v.fim_rep, v.fim_sep})
    if (id >= 0) v.eog.push_back(id);
  for (std::string_view text : kEndOfGenerationTexts) {
    if (const int32_t id = v.find(text); id >= 0) {
      v.eog.push_back(id);
      make_control(id);
    }
  }
  std::sort(v.eog.begin(), v.eog.end());
  v.eog.erase(std::unique(v.eog.begin(), v.eog.end()), v.eog.end());
  return v;
}

int32_t Vocab::find(std::string_view text) const {
  const auto it = index.find(text);
  return it == index.end() ? -1 : it->second;
}

bool Vocab::is_eog(int32_t id) const { return std::binary_search(eog.begin(), eog.end(), id); }

}  // namespace moe
