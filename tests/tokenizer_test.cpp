// Tokenizer: byte-level BPE against llama.cpp and Hugging Face on the full
// DeepSeek-V3 vocabulary (tokenizer-deepseek-v3.visible.json), the prompts of
// the tiny reference models, the pre-tokenizer regex rewrites, streaming
// decode, invalid input and broken vocabularies, and the moe-tokenize CLI.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "test_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/regex_split.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

using namespace moe;
namespace fs = std::filesystem;
using TokenIds = std::vector<int32_t>;

namespace {

const char* kVocabFixture = "tokenizer/deepseek-v3-vocab.gguf";
const char* kStringsFixture = "tokenizer/tokenizer-deepseek-v3.visible.json";

// The 129k-token vocabulary, loaded once for all cases; null when absent.
const Tokenizer* deepseek_v3() {
  static const std::unique_ptr<Tokenizer> tok = []() -> std::unique_ptr<Tokenizer> {
    const std::string path = test::shared_fixture(kVocabFixture);
    if (path.empty()) return nullptr;
    return std::make_unique<Tokenizer>(Tokenizer::from_gguf(GgufFile::open(path)));
  }();
  return tok.get();
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  REQUIRE(f.good());
  return nlohmann::json::parse(f);
}

// A small byte-level BPE vocabulary: the 256 byte characters, then the
// merges' results, then the given extra tokens. Keys in `extra` replace or
// add to the defaults.
struct TinyVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges = {"Ġ a", "a b", "ab c", "Ġa b"};
  std::string pre = "deepseek-v3";
  std::vector<std::pair<std::string, GgufValue>> extra;

  TinyVocab() {
    for (int b = 0; b < 256; ++b) tokens.push_back(byte_level_char(static_cast<uint8_t>(b)));
    for (const char* t : {"ab", "abc", "Ġa", "Ġab", "<|bos|>", "<|eos|>", "<tool>"}) tokens.push_back(t);
    types.assign(tokens.size(), 1);
    types[tokens.size() - 3] = 3;  // <|bos|>
    types[tokens.size() - 2] = 3;  // <|eos|>
    types[tokens.size() - 1] = 4;  // <tool>, user-defined
  }
  int32_t id(const std::string& t) const {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] == t) return static_cast<int32_t>(i);
    return -1;
  }
  std::string write() const {
    const std::string path = test::temp_dir() + "/vocab.gguf";
    GgufWriter w(path);
    w.set("general.architecture", GgufValue::string("deepseek2"));
    w.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
    w.set("tokenizer.ggml.pre", GgufValue::string(pre));
    w.set("tokenizer.ggml.tokens", GgufValue::array_of_strings(tokens));
    w.set("tokenizer.ggml.token_type", GgufValue::array<int32_t>(GgufType::INT32, types));
    w.set("tokenizer.ggml.merges", GgufValue::array_of_strings(merges));
    w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(id("<|bos|>"))));
    w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(id("<|eos|>"))));
    w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(true));
    for (const auto& [k, v] : extra) w.set(k, v);
    w.begin();
    w.finish();
    return path;
  }
  Tokenizer load() const { return Tokenizer::from_gguf(GgufFile::open(write())); }
};

std::string load_error(const TinyVocab& v) {
  try {
    v.load();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Pushes ids one at a time; every piece must be valid UTF-8.
std::string stream_decode(const Tokenizer& tok, const TokenIds& ids, int* held_back = nullptr) {
  StreamDecoder dec(tok);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = dec.push(id);
    CHECK(utf8_is_valid(piece));
    if (held_back && piece.empty()) ++*held_back;
    out += piece;
  }
  const std::string tail = dec.flush();
  CHECK(utf8_is_valid(tail));
  return out + tail;
}

}  // namespace

TEST_CASE("tokenizer: DeepSeek-V3 vocabulary reproduces llama.cpp and Hugging Face ids") {
  const Tokenizer* tok = deepseek_v3();
  const std::string strings = test::shared_fixture(kStringsFixture);
  if (!tok || strings.empty()) return test::skip("shared fixtures tokenizer/ absent");
  CHECK(tok->n_vocab() == 129280);
  CHECK(tok->bos() == 0);
  CHECK(tok->eos() == 1);
  CHECK(tok->is_eog(1));
  CHECK_FALSE(tok->is_eog(0));

  const nlohmann::json cases = read_json(strings);
  REQUIRE(cases.size() == 40);
  for (const auto& c : cases) {
    const std::string text = c["text"];
    CAPTURE(text);
    const TokenIds ids = c["ids"].get<TokenIds>();
    CHECK(tok->encode(text, false, false) == ids);                               // llama.cpp, special as text
    CHECK(tok->encode(text, false, true) == c["ids_parse_special"].get<TokenIds>());  // Hugging Face
    CHECK(tok->decode(ids) == c["decoded"].get<std::string>());
    TokenIds with_bos = ids;
    with_bos.insert(with_bos.begin(), 0);
    CHECK(tok->encode(text, true, false) == with_bos);
  }
}

TEST_CASE("tokenizer: Unicode 15 characters as llama.cpp tokenizes them") {
  const Tokenizer* tok = deepseek_v3();
  if (!tok) return test::skip("shared fixture tokenizer/deepseek-v3-vocab.gguf absent");
  // TokenIds from llama.cpp (node-llama-cpp 3.22.1, the build that made the fixtures).
  const std::string text = "shaking \U0001FAE8b, goose \U0001FABF! CJK-H \U00031350x 2FFC\u2FFCy";
  const TokenIds expected = {3037, 1690, 7351, 107, 104, 68,   14,  79823, 7351, 106, 126, 3,   54442, 45,
                        7955, 86387, 112, 238, 241, 90, 223, 20,    6459, 37,  161, 126, 123,   91};
  CHECK(tok->encode(text, false, false) == expected);
  CHECK(tok->decode(expected) == text);
}

TEST_CASE("tokenizer: prompts of the tiny reference models") {
  const std::string dir = test::shared_fixture("models");
  if (dir.empty()) return test::skip("shared fixtures models/ absent");
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    const fs::path gguf = fs::path(e.path()).replace_extension(".gguf");
    if (!fs::exists(gguf)) continue;
    CAPTURE(gguf.string());
    const nlohmann::json j = read_json(e.path().string());
    const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(gguf.string()));
    const TokenIds expected = j["prompt_tokens"].get<TokenIds>();
    CHECK(j["add_bos"].get<bool>());
    // The prompts hold no special-token text, so both settings must agree.
    CHECK(tok.encode(j["prompt"].get<std::string>(), true, true) == expected);
    CHECK(tok.encode(j["prompt"].get<std::string>(), true, false) == expected);
    CHECK(tok.n_vocab() == j["n_vocab"].get<int>());
    ++n;
  }
  CHECK(n > 0);
}

TEST_CASE("tokenizer: control tokens are matched only when parsed, user-defined ones always") {
  const Tokenizer* tok = deepseek_v3();
  if (!tok) return test::skip("shared fixture tokenizer/deepseek-v3-vocab.gguf absent");
  const std::string bos = "<｜begin▁of▁sentence｜>", eos = "<｜end▁of▁sentence｜>";
  const TokenIds parsed = tok->encode(bos + "hi" + eos, false, true);
  REQUIRE(parsed.size() >= 3);
  CHECK(parsed.front() == 0);
  CHECK(parsed.back() == 1);
  CHECK(tok->decode(parsed) == bos + "hi" + eos);
  CHECK(tok->decode(parsed, /*special=*/false) == "hi");
  const TokenIds plain = tok->encode(bos, false, false);
  CHECK(plain.size() > 1);
  CHECK(tok->decode(plain) == bos);

  // <｜User｜> and <｜Assistant｜> are user-defined in DeepSeek-V3: one token
  // even as plain text (as in llama.cpp and Hugging Face), and always printed.
  const std::string user = "<｜User｜>";
  const int32_t user_id = tok->vocab().find(user);
  REQUIRE(user_id >= 0);
  CHECK(tok->vocab().type(user_id) == TokenType::user_defined);
  CHECK(tok->encode(user + "hi", false, false) == tok->encode(user + "hi", false, true));
  CHECK(tok->encode(user, false, false) == TokenIds{user_id});
  CHECK(tok->decode({user_id}, /*special=*/false) == user);
}

TEST_CASE("tokenizer: StreamDecoder yields only whole UTF-8 characters") {
  const Tokenizer* tok = deepseek_v3();
  const std::string strings = test::shared_fixture(kStringsFixture);
  if (!tok || strings.empty()) return test::skip("shared fixtures tokenizer/ absent");
  int held_back = 0;
  for (const auto& c : read_json(strings)) {
    const TokenIds ids = c["ids"].get<TokenIds>();
    CAPTURE(c["text"].get<std::string>());
    CHECK(stream_decode(*tok, ids, &held_back) == tok->decode(ids));
  }
  CHECK(held_back > 0);  // the emoji and Hangul strings split characters across tokens

  // A CJK character and an emoji given as single-byte tokens: nothing comes
  // out until the last byte.
  for (const std::string ch : {"深", "😀"}) {
    TokenIds bytes;
    for (char b : ch) bytes.push_back(tok->vocab().find(byte_level_char(static_cast<uint8_t>(b))));
    StreamDecoder dec(*tok);
    for (size_t i = 0; i + 1 < bytes.size(); ++i) CHECK(dec.push(bytes[i]).empty());
    CHECK(dec.push(bytes.back()) == ch);
    CHECK(dec.flush().empty());
  }
  // An unfinished character at the end is flushed as U+FFFD, a stray
  // continuation byte at once.
  StreamDecoder dec(*tok);
  CHECK(dec.push(tok->vocab().find(byte_level_char(0xE6))).empty());
  CHECK(dec.flush() == kUtf8Replacement);
  CHECK(dec.push(tok->vocab().find(byte_level_char(0x80))) == kUtf8Replacement);
}

TEST_CASE("tokenizer: invalid UTF-8 is encoded byte for byte and never crashes") {
  const Tokenizer* tok = deepseek_v3();
  if (!tok) return test::skip("shared fixture tokenizer/deepseek-v3-vocab.gguf absent");
  const std::string inputs[] = {
      "\xFF", "\x80", "abc\xC3", "\xE4\xBD", "\xED\xA0\x80 surrogate", "\xC0\xAF overlong",
      "\xF4\x90\x80\x80 > U+10FFFF",
      "a\x80" "b", "深度\xE6\xB7求索", std::string("nul\0byte", 8), "\xF0\x9F\x98", "ok \xFE\xFF ok",
  };
  for (const std::string& s : inputs) {
    CAPTURE(s);
    for (bool special : {false, true}) {
      const TokenIds ids = tok->encode(s, false, special);
      CHECK(tok->decode(ids) == s);
      CHECK(utf8_is_valid(stream_decode(*tok, ids)));
    }
  }
  // Each invalid byte is a piece of its own, next to the regex pieces.
  const Pretokenizer pre("deepseek-v3");
  const std::vector<std::string_view> pieces = pre.split("ab\xFF\xFE" "cd");
  CHECK(pieces == std::vector<std::string_view>{"ab", "\xFF", "\xFE", "cd"});
}

TEST_CASE("tokenizer: pre-tokenizer splits") {
  using Pieces = std::vector<std::string_view>;
  const Pretokenizer v3("deepseek-v3");
  CHECK(v3.split("Hello  world") == Pieces{"Hello", " ", " world"});
  CHECK(v3.split("1234567") == Pieces{"123", "456", "7"});
  CHECK(v3.split("深度求索MoE") == Pieces{"深度求索", "MoE"});
  CHECK(v3.split("a\r\n\r\nb") == Pieces{"a", "\r\n\r\n", "b"});
  CHECK(v3.split("").empty());

  const Pretokenizer llm("deepseek-llm");
  CHECK(llm.split("Hi there!\n") == Pieces{"Hi", " there", "!", "\n"});
  // U+3000 lies inside the literal range [ࠀ-一] but, as whitespace, must not
  // join the ideographs around it (llama.cpp matches it as \v).
  CHECK(llm.split("深度\u3000求索") == Pieces{"深度", "\u3000", "求索"});

  const Pretokenizer llama3("llama-bpe");
  CHECK(llama3.name() == "llama3");
  CHECK(llama3.ignore_merges());
  CHECK(llama3.split("I'm 12345 ok") == Pieces{"I", "'m", " ", "123", "45", " ok"});
  const Pretokenizer qwen("deepseek-r1-qwen");
  CHECK(qwen.split("ab 12") == Pieces{"ab", " ", "1", "2"});
  const Pretokenizer gpt2("gpt2");
  CHECK(gpt2.split("it's  fine") == Pieces{"it", "'s", " ", " fine"});

  // Unicode 15 characters that Debian's PCRE2 (Unicode 14) calls unassigned
  // split by their llama.cpp (Unicode 15.1) categories: U+1FAE8 is a symbol,
  // U+31350 (CJK Extension H) a letter.
  CHECK(v3.split("\U0001FAE8b") == Pieces{"\U0001FAE8", "b"});
  CHECK(v3.split("x\U00031350") == Pieces{"x\U00031350"});

  // The whitespace rewrite: \s is llama.cpp's set, and literal classes lose
  // the non-ASCII whitespace they contain.
  CHECK(regex_llama_semantics("[\u3000-\u3002]") == "[\\x{3001}-\\x{3002}]");
  CHECK(regex_llama_semantics("[a-z]") == "[a-z]");
  CHECK(regex_llama_semantics("\\s+(?!\\S)").find("\\x{3000}") != std::string::npos);
}

TEST_CASE("tokenizer: a small synthetic vocabulary") {
  TinyVocab v;
  const Tokenizer tok = v.load();
  CHECK(tok.encode("abc", false, false) == TokenIds{v.id("abc")});
  CHECK(tok.encode(" ab", false, false) == TokenIds{v.id("Ġab")});
  CHECK(tok.encode("abab", false, false) == TokenIds{v.id("ab"), v.id("ab")});
  CHECK(tok.encode("abc", true, false) == TokenIds{v.id("<|bos|>"), v.id("abc")});
  // Control tokens only when parsed; user-defined ones always.
  CHECK(tok.encode("<|eos|>", false, true) == TokenIds{v.id("<|eos|>")});
  CHECK(tok.encode("<|eos|>", false, false).size() > 1);
  CHECK(tok.encode("<tool>ab", false, false) == TokenIds{v.id("<tool>"), v.id("ab")});
  CHECK(tok.is_eog(v.id("<|eos|>")));
  CHECK(tok.decode({v.id("Ġab"), v.id("<|eos|>")}) == " ab<|eos|>");
  CHECK_THROWS_AS(tok.decode({static_cast<int32_t>(v.tokens.size())}), Error);
  CHECK_THROWS_AS(tok.token_to_piece(-1), Error);
}

TEST_CASE("tokenizer: broken vocabularies give errors that name the problem") {
  {
    TinyVocab v;
    v.pre = "no-such-pre";
    const std::string e = load_error(v);
    CHECK(e.find("'no-such-pre'") != std::string::npos);
    CHECK(e.find("deepseek-v3") != std::string::npos);  // lists the supported ones
    CHECK(e.find("tokenizer.ggml.pre") != std::string::npos);
  }
  {
    TinyVocab v;
    v.extra.emplace_back("tokenizer.ggml.model", GgufValue::string("bert"));
    const std::string e = load_error(v);
    CHECK(e.find("unknown tokenizer model 'bert'") != std::string::npos);
  }
  {
    TinyVocab v;
    v.merges.push_back("nospace");
    const std::string e = load_error(v);
    CHECK(e.find("tokenizer.ggml.merges[4]") != std::string::npos);
    CHECK(e.find("nospace") != std::string::npos);
  }
  {
    TinyVocab v;
    v.types.pop_back();
    CHECK(load_error(v).find("tokenizer.ggml.token_type has 262 entries, tokenizer.ggml.tokens 263") !=
          std::string::npos);
  }
  {
    TinyVocab v;
    v.extra.emplace_back("tokenizer.ggml.scores", GgufValue::array<float>(GgufType::FLOAT32, {0.0f, 1.0f}));
    CHECK(load_error(v).find("tokenizer.ggml.scores has 2 entries") != std::string::npos);
  }
  {
    TinyVocab v;
    v.extra.emplace_back("tokenizer.ggml.eos_token_id", GgufValue::u32(5000));
    CHECK(load_error(v).find("tokenizer.ggml.eos_token_id is 5000, out of range") != std::string::npos);
  }
  {
    TinyVocab v;
    v.types[0] = 9;
    CHECK(load_error(v).find("tokenizer.ggml.token_type[0] is 9") != std::string::npos);
  }
}

TEST_CASE("tokenizer: moe-tokenize prints the ids as a JSON array") {
  const std::string vocab = test::shared_fixture(kVocabFixture);
  if (vocab.empty()) return test::skip("shared fixture tokenizer/deepseek-v3-vocab.gguf absent");
  const std::string exe = test::bin_dir() + "/moe-tokenize";
  if (!fs::exists(exe)) return test::skip("moe-tokenize is not built");

  test::CommandResult r = test::run_command({exe, "-m", vocab, "--text", "Hello world"});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "[0,19923,2058]\n");
  r = test::run_command({exe, "-m", vocab, "--text", "Hello world", "--no-bos"});
  CHECK(r.out == "[19923,2058]\n");

  const std::string file = test::temp_dir() + "/prompt.txt";
  const std::string prompt = "<｜begin▁of▁sentence｜>Hello world";
  test::write_file(file, prompt.data(), prompt.size());
  r = test::run_command({exe, "-m", vocab, "--file", file, "--no-bos", "--parse-special"});
  CHECK(r.exit_code == 0);
  CHECK(r.out == "[0,19923,2058]\n");

  r = test::run_command({exe, "-m", vocab + ".missing", "--text", "x"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.rfind("moe-tokenize: error: ", 0) == 0);
  r = test::run_command({exe, "-m", vocab});  // neither --text nor --file
  CHECK(r.exit_code == 1);
  CHECK(r.err.rfind("moe-tokenize: error: ", 0) == 0);
}

// Kimi K2 and GLM-4.7-Flash run on the deepseek2 graph with their own
// pre-tokenizers: the DeepSeek-V3 vocabulary with only tokenizer.ggml.pre
// changed, against llama.cpp's ids for 120 strings each.
TEST_CASE("tokenizer: the kimi-k2 and glm4 pre-tokenizers give llama.cpp's ids") {
  const std::string vocab = test::shared_fixture(kVocabFixture);
  if (vocab.empty()) return test::skip("shared fixtures tokenizer/ absent");
  const GgufFile base = GgufFile::open(vocab);
  for (const char* pre : {"kimi-k2", "glm4"}) {
    CAPTURE(pre);
    const std::string strings = test::shared_fixture(std::string("tokenizer/tokenizer-") + pre + ".visible.json");
    if (strings.empty()) {
      test::skip(std::string(pre) + " strings absent");
      continue;
    }
    const std::string path = test::temp_dir() + "/" + pre + ".gguf";
    {
      GgufWriter w(path);
      for (const GgufKv& kv : base.metadata()) w.set(kv.key, kv.value);
      w.set("tokenizer.ggml.pre", GgufValue::string(pre));
      w.begin();
      w.finish();
    }
    const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(path));
    const nlohmann::json cases = read_json(strings);
    REQUIRE(cases.size() == 120);
    int exact = 0;
    for (const auto& c : cases) {
      const std::string text = c["text"];
      CAPTURE(text);
      const TokenIds ids = c["ids"].get<TokenIds>();
      const TokenIds got = tok.encode(text, false, false);
      CHECK(got == ids);
      exact += got == ids;
    }
    MESSAGE(std::string(pre) << ": " << exact << " of 120 strings exact");
  }
}
