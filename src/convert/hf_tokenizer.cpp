#include "convert/hf_tokenizer.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace moe {

namespace {

using nlohmann::json;

// gguf-py TokenType.
enum : int32_t { kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5 };

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json parse_json_file(const std::string& path, bool required) {
  const auto text = read_text(path);
  if (!text) {
    if (required) throw_error("%s: cannot open (the tokenizer is required)", path.c_str());
    return json();
  }
  try {
    return json::parse(*text);
  } catch (const json::exception& e) {
    throw_error("%s: not valid JSON: %s", path.c_str(), e.what());
  }
}

// The pre-tokenizer regexes as tokenizer.json spells them (after JSON
// unescaping), for the vocabularies llama.cpp implements for DeepSeek
// models (src/llama-vocab.cpp: DEEPSEEK3_LLM, DEEPSEEK_LLM, DEEPSEEK_CODER).
struct KnownPretokenizer {
  const char* name;
  std::vector<std::string> splits;  // "" matches any pattern (see below)
};

const std::vector<KnownPretokenizer>& known_pretokenizers() {
  static const std::vector<KnownPretokenizer> known = {
      {"deepseek-v3",
       {R"(\p{N}{1,3})", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^)"
        "\r\n"
        R"(\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[)"
        "\r\n"
        R"(]*|\s*[)"
        "\r\n"
        R"(]+|\s+(?!\S)|\s+)"}},
      // The second split is a long class of cased letters; it is matched by
      // its opening (the other five splits already tell this one apart).
      {"deepseek-llm",
       {"[\r\n]", "", "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", R"(\s+$)",
        "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", R"(\p{N}+)"}},
      {"deepseek-coder",
       {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", R"(\p{N})"}},
  };
  return known;
}

std::string split_regex(const json& step) {
  if (!step.is_object() || step.value("type", "") != "Split" || !step.contains("pattern")) return {};
  const json& p = step.at("pattern");
  if (p.is_object() && p.contains("Regex") && p.at("Regex").is_string()) return p.at("Regex").get<std::string>();
  return {};
}

// tokenizers' AddedToken fields the converter looks at.
struct AddedToken {
  std::string content;
  bool special = false;
  bool normalized = true;
};

// TextModel.does_token_look_special: tokens some models forgot to mark special.
bool looks_special(const std::string& t) {
  auto starts = [&](const std::string& s) { return t.compare(0, s.size(), s) == 0; };
  auto ends = [&](const std::string& s) { return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0; };
  if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
  if (starts("<|") && ends("|>")) return true;
  if (starts("<\uff5c") && ends("\uff5c>")) return true;  // DeepSeek's full-width bars
  return starts("<unused") && ends(">");
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}

// Merges as "a b" strings; the newer [a, b] form has its spaces encoded as
// U+0120 so the pair stays splittable (SpecialVocab does the same).
std::vector<std::string> read_merges(const json& model, const std::string& path) {
  std::vector<std::string> merges;
  if (!model.contains("merges")) return merges;
  const json& m = model.at("merges");
  if (!m.is_array()) throw_error("%s: model.merges must be an array", path.c_str());
  merges.reserve(m.size());
  for (size_t i = 0; i < m.size(); ++i) {
    const json& e = m[i];
    if (e.is_string()) {
      merges.push_back(e.get<std::string>());
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      merges.push_back(replace_all(e[0].get<std::string>(), " ", "\u0120") + " " +
                       replace_all(e[1].get<std::string>(), " ", "\u0120"));
    } else {
      throw_error("%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]: %s", path.c_str(), i, e.dump().c_str());
    }
  }
  return merges;
}

// The content string of a tokenizer_config.json *_token entry (a string or an AddedToken object).
std::optional<std::string> token_content(const json& cfg, const std::string& key) {
  if (!cfg.is_object() || !cfg.contains(key)) return std::nullopt;
  const json& e = cfg.at(key);
  if (e.is_string()) return e.get<std::string>();
  if (e.is_object() && e.contains("content") && e.at("content").is_string()) return e.at("content").get<std::string>();
  return std::nullopt;
}

}  // namespace

std::string recognise_pretokenizer(const std::string& pre_json, const std::string& path) {
  // llama.cpp's converter recognises the pre-tokenizer by running the Hugging
  // Face tokenizer on a probe text and hashing the ids, which needs the
  // `transformers` runtime. The pre-tokenizer is what that hash tells apart,
  // and tokenizer.json states it outright: the sequence of Split regexes
  // before the ByteLevel step. We compare that sequence to the regexes of the
  // DeepSeek pre-tokenizers llama.cpp implements.
  json pre;
  try {
    pre = json::parse(pre_json);
  } catch (const json::exception& e) {
    throw_error("%s: pre_tokenizer is not valid JSON: %s", path.c_str(), e.what());
  }
  std::vector<std::string> splits;
  bool byte_level = false;
  const json steps = pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers")
                         ? pre.at("pretokenizers")
                         : json::array({pre});
  for (const json& step : steps) {
    if (step.is_object() && step.value("type", "") == "ByteLevel") {
      byte_level = true;
      continue;
    }
    const std::string re = split_regex(step);
    if (re.empty())
      throw_error("%s: unsupported pre_tokenizer step %s (expected Split regexes and ByteLevel)", path.c_str(),
                  step.dump().substr(0, 200).c_str());
    splits.push_back(re);
  }
  if (!byte_level) throw_error("%s: pre_tokenizer has no ByteLevel step: not a byte-level BPE tokenizer", path.c_str());
  for (const KnownPretokenizer& k : known_pretokenizers()) {
    if (k.splits.size() != splits.size()) continue;
    bool same = true;
    for (size_t i = 0; i < splits.size() && same; ++i)
      same = k.splits[i].empty() ? splits[i].compare(0, 12, "\\s?[A-Za-zµ") == 0 : k.splits[i] == splits[i];
    if (same) return k.name;
  }
  throw_error("%s: pre-tokenizer not recognised (%zu Split regexes, first \"%s\"); known: deepseek-v3, "
              "deepseek-llm, deepseek-coder",
              path.c_str(), splits.size(), splits.empty() ? "" : splits[0].substr(0, 60).c_str());
}

void hf_tokenizer_metadata(const std::string& dir, const HfConfig& config, GgufKvList& kv) {
  const std::string tok_path = dir + "/tokenizer.json";
  const std::string cfg_path = dir + "/tokenizer_config.json";
  const json tok = parse_json_file(tok_path, true);
  const json cfg = parse_json_file(cfg_path, false);
  if (!tok.is_object() || !tok.contains("model") || !tok.at("model").is_object())
    throw_error("%s: missing the \"model\" object", tok_path.c_str());
  const json& model = tok.at("model");
  if (model.value("type", "BPE") != "BPE")
    throw_error("%s: model.type is \"%s\"; only BPE tokenizers are supported", tok_path.c_str(),
                model.value("type", "").c_str());
  if (!model.contains("vocab") || !model.at("vocab").is_object())
    throw_error("%s: model.vocab must be an object of token -> id", tok_path.c_str());

  const std::string pre = recognise_pretokenizer(tok.contains("pre_tokenizer") ? tok.at("pre_tokenizer").dump() : "null",
                                                 tok_path);

  // id -> token over the model vocabulary and the added tokens (HF's tokenizer.vocab).
  const int64_t n_vocab = config.vocab_size;
  std::map<int64_t, std::string> by_id;
  auto check_id = [&](int64_t id, const std::string& what) {
    if (id < 0 || id >= n_vocab)
      throw_error("%s: %s has id %lld, outside the vocab_size %lld of config.json", tok_path.c_str(), what.c_str(),
                  static_cast<long long>(id), static_cast<long long>(n_vocab));
  };
  for (const auto& [text, id] : model.at("vocab").items()) {
    if (!id.is_number_integer()) throw_error("%s: model.vocab[\"%s\"] is not an integer id", tok_path.c_str(), text.c_str());
    check_id(id.get<int64_t>(), "token \"" + text + "\"");
    by_id[id.get<int64_t>()] = text;
  }
  std::map<int64_t, AddedToken> added;
  const json added_json = tok.value("added_tokens", json::array());
  for (const json& a : added_json) {
    if (!a.is_object() || !a.contains("id") || !a.at("id").is_number_integer() || !a.contains("content") ||
        !a.at("content").is_string())
      throw_error("%s: added_tokens entry without an integer id and a string content: %s", tok_path.c_str(),
                  a.dump().substr(0, 200).c_str());
    const int64_t id = a.at("id").get<int64_t>();
    AddedToken t{a.at("content").get<std::string>(), a.value("special", false), a.value("normalized", true)};
    check_id(id, "added token \"" + t.content + "\"");
    by_id[id] = t.content;
    added[id] = std::move(t);
  }

  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(static_cast<size_t>(n_vocab));
  types.reserve(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) {
    auto it = by_id.find(i);
    if (it == by_id.end()) {
      tokens.push_back("[PAD" + std::to_string(i) + "]");
      types.push_back(kUnused);
      continue;
    }
    std::string token = it->second;
    auto at = added.find(i);
    if (at == added.end()) {
      types.push_back(kNormal);
    } else if (at->second.special || looks_special(token)) {
      // The converter re-encodes non-normalized added tokens through the HF
      // tokenizer and decodes them back; a byte-level BPE gives the same text.
      types.push_back(kControl);
    } else {
      token = replace_all(token, "\u2581", " ");  // pre-normalized user-defined spaces
      types.push_back(kUserDefined);
    }
    tokens.push_back(std::move(token));
  }

  kv.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
  kv.set("tokenizer.ggml.pre", GgufValue::string(pre));
  kv.set("tokenizer.ggml.tokens", GgufValue::array_of_strings(std::move(tokens)));
  kv.set("tokenizer.ggml.token_type", GgufValue::array(GgufType::INT32, types));
  std::vector<std::string> merges = read_merges(model, tok_path);
  if (!merges.empty()) kv.set("tokenizer.ggml.merges", GgufValue::array_of_strings(std::move(merges)));

  // SpecialVocab: ids named in tokenizer_config.json (looked up among the
  // added tokens) first, then config.json's *_token_id for the rest.
  static const std::vector<std::pair<std::string, std::string>> special_types = {
      {"bos", "tokenizer.ggml.bos_token_id"},     {"eos", "tokenizer.ggml.eos_token_id"},
      {"unk", "tokenizer.ggml.unknown_token_id"}, {"sep", "tokenizer.ggml.seperator_token_id"},
      {"pad", "tokenizer.ggml.padding_token_id"}, {"cls", ""},  // gguf-py has no cls key: skipped
      {"mask", "tokenizer.ggml.mask_token_id"},
  };
  std::vector<std::pair<std::string, int64_t>> ids;  // insertion order, first wins
  auto set_id = [&](const std::string& typ, std::optional<int64_t> id) {
    if (!id) return;
    if (*id < 0) throw_error("%s: invalid value for special token type %s: %lld", cfg_path.c_str(), typ.c_str(),
                             static_cast<long long>(*id));
    for (const auto& e : ids)
      if (e.first == typ) return;
    ids.emplace_back(typ, *id);
  };
  std::vector<std::pair<std::string, bool>> add_flags;
  for (const auto& [typ, key] : special_types) {
    if (cfg.is_object() && cfg.contains("add_" + typ + "_token") && cfg.at("add_" + typ + "_token").is_boolean())
      add_flags.emplace_back(typ, cfg.at("add_" + typ + "_token").get<bool>());
    if (const auto content = token_content(cfg, typ + "_token")) {
      for (const json& a : added_json) {
        if (a.at("content").get<std::string>() == *content) {
          set_id(typ, a.at("id").get<int64_t>());
          break;
        }
      }
    }
  }
  set_id("bos", config.bos_token_id);
  set_id("eos", config.eos_token_id);
  set_id("unk", config.unk_token_id);
  set_id("pad", config.pad_token_id);
  for (const auto& [typ, id] : ids) {
    for (const auto& [t, key] : special_types)
      if (t == typ && !key.empty()) kv.set(key, GgufValue::u32(static_cast<uint32_t>(id)));
  }
  for (const auto& [typ, value] : add_flags) {
    if (typ == "bos" || typ == "eos" || typ == "sep") kv.set("tokenizer.ggml.add_" + typ + "_token", GgufValue::boolean(value));
  }

  // Chat template: tokenizer_config.json, else chat_template.jinja / chat_template.json.
  std::optional<std::string> tmpl;
  if (cfg.is_object() && cfg.contains("chat_template") && cfg.at("chat_template").is_string()) {
    tmpl = cfg.at("chat_template").get<std::string>();
  } else if (cfg.is_object()) {
    if (auto jinja = read_text(dir + "/chat_template.jinja")) {
      tmpl = std::move(jinja);
    } else {
      const json ct = parse_json_file(dir + "/chat_template.json", false);
      if (ct.is_object() && ct.contains("chat_template") && ct.at("chat_template").is_string())
        tmpl = ct.at("chat_template").get<std::string>();
    }
  }
  if (tmpl) kv.set("tokenizer.chat_template", GgufValue::string(std::move(*tmpl)));
}

}  // namespace moe
