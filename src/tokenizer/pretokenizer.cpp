#include "tokenizer/pretokenizer.h"

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace moe {

namespace {

struct PretokenizerDef {
  std::vector<std::string> names;  // the first is the canonical one
  bool ignore_merges;
  std::vector<const char*> patterns;
};

// Contractions written without (?i:...), as llama.cpp adapts them
// (https://github.com/ggml-org/llama.cpp/pull/6920#issuecomment-2080233989).
#define MOE_CONTRACTIONS R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))re"

// The Han ranges of llama.cpp's unicode_cpt_is_han: CJK Unified Ideographs
// and Extensions A-F, and the Compatibility Ideographs and their Supplement.
#define MOE_KIMI_HAN                                                                                    \
  "[\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{20000}-\\x{2A6DF}\\x{2A700}-\\x{2EBEF}\\x{F900}-\\x{FAFF}" \
  "\\x{2F800}-\\x{2FA1F}]"

// The regexes come from each model's tokenizer.json (pre_tokenizer "Split"
// steps), in the forms llama.cpp uses (src/llama-vocab.cpp, llm_tokenizer_bpe).
const std::vector<PretokenizerDef>& pretokenizer_defs() {
  static const std::vector<PretokenizerDef> defs = {
      // DeepSeek-V3, V3.1, R1: up to three digits, runs of CJK ideographs
      // (U+4E00..9FA5) and kana, then a GPT-4-like split that keeps combining
      // marks with letters. Non-ASCII characters are written as \x{..}: an
      // editor that normalizes Unicode would silently change literal ones.
      {{"deepseek-v3"},
       false,
       {
           R"re(\p{N}{1,3})re",
           R"re([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)re",
           R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)re"
           R"re(| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
       }},
      // DeepSeek LLM / V2 / V2.5: letters of cased scripts (Latin, Greek,
      // Cyrillic, Armenian, Georgian, Cherokee, ... and their full-width and
      // mathematical forms), ASCII and full-width punctuation, trailing
      // spaces, CJK and Hangul, digits.
      {{"deepseek-llm"},
       false,
       {
           R"re([\r\n])re",
           "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"
           "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"
           "\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"
           "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
           "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"
           "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}"
           "\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}"
           "\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}"
           "\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}"
           "\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}"
           "\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"
           "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
           "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}"
           "\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}"
           "\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"
           "\\x{1E900}-\\x{1E943}]+",
           R"re(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)re",
           R"re(\s+$)re",
           R"re([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)re",
           R"re(\p{N}+)re",
       }},
      {{"deepseek-coder"},
       false,
       {
           R"re([\r\n])re",
           R"re(\s?\p{L}+)re",
           R"re(\s?\p{P}+)re",
           R"re([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)re",
           R"re(\p{N})re",
       }},
      // Llama 3 (tiktoken cl100k-style); llama.cpp also looks whole pieces up first.
      {{"llama3", "llama-v3", "llama-bpe"},
       true,
       {
           MOE_CONTRACTIONS
           R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
       }},
      // GLM-4 / GLM-4.7-Flash (on the deepseek2 graph): Llama 3's split, but
      // merges are always applied (llama.cpp's CHATGLM4).
      {{"glm4", "chatglm-bpe"},
       false,
       {
           MOE_CONTRACTIONS
           R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
       }},
      // Kimi K2 (tokenization_kimi.py): runs of Han ideographs apart, then a
      // GPT-4-like split whose letter runs exclude them. llama.cpp implements
      // it by hand (unicode.cpp, unicode_regex_split_custom_kimi_k2), with
      // one letter class (no upper/lower split) and its own Han ranges
      // (unicode_cpt_is_han); this regex is that behaviour.
      {{"kimi-k2"},
       false,
       {
           MOE_KIMI_HAN R"re(+|[^\r\n\p{L}\p{N}]?(?:(?!)re" MOE_KIMI_HAN R"re()\p{L})+)re" MOE_CONTRACTIONS
           R"re(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
       }},
      // Qwen2 and the DeepSeek-R1 distills built on it: single digits.
      {{"qwen2", "deepseek-r1-qwen"},
       false,
       {
           MOE_CONTRACTIONS
           R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
       }},
      {{"gpt-2", "gpt2"},
       false,
       {
           R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re",
       }},
      // What llama.cpp uses for a BPE vocabulary that names no pre-tokenizer.
      {{"default"},
       false,
       {
           R"re([\p{P}\$\+<=>\^~\|]+)re",
           R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re",
           R"re(\p{N}+)re",
           R"re([0-9][0-9][0-9])re",
       }},
  };
  return defs;
}

#undef MOE_CONTRACTIONS
#undef MOE_KIMI_HAN

}  // namespace

std::vector<std::string> Pretokenizer::supported_names() {
  std::vector<std::string> names;
  for (const auto& d : pretokenizer_defs()) names.insert(names.end(), d.names.begin(), d.names.end());
  return names;
}

Pretokenizer::Pretokenizer(const std::string& pre) {
  const std::string wanted = pre.empty() ? "default" : pre;
  for (const auto& d : pretokenizer_defs()) {
    for (const auto& n : d.names) {
      if (n != wanted) continue;
      name_ = d.names.front();
      ignore_merges_ = d.ignore_merges;
      for (const char* p : d.patterns) regexes_.emplace_back(p);
      return;
    }
  }
  std::string list;
  for (const auto& n : supported_names()) list += (list.empty() ? "" : ", ") + n;
  throw_error("unknown pre-tokenizer '%s' (tokenizer.ggml.pre); supported: %s", pre.c_str(), list.c_str());
}

std::vector<std::string_view> Pretokenizer::split(std::string_view text) const {
  // Well-formed runs go through the regexes; each invalid byte stands alone.
  std::vector<std::string_view> pieces;
  std::vector<std::string_view> next;
  std::vector<std::string_view> out;
  const auto flush_run = [&](size_t begin, size_t end) {
    if (end == begin) return;
    pieces.assign(1, text.substr(begin, end - begin));
    for (const SplitRegex& re : regexes_) {
      next.clear();
      re.split(pieces, next);
      pieces.swap(next);
    }
    out.insert(out.end(), pieces.begin(), pieces.end());
  };
  size_t run_start = 0;
  for (size_t i = 0; i < text.size();) {
    const Utf8Sequence q = utf8_sequence_at(text, i);
    if (q.kind == Utf8Sequence::valid) {
      i += q.length;
      continue;
    }
    flush_run(run_start, i);
    out.push_back(text.substr(i, 1));
    run_start = ++i;
  }
  flush_run(run_start, text.size());
  return out;
}

}  // namespace moe
