// SentencePiece (`llama`) vocabularies: a small BPE model is trained with
// libsentencepiece, its pieces, scores and types written to a GGUF file the
// way converters do, and our Tokenizer (which rebuilds a ModelProto from the
// GGUF) must encode and decode exactly as the original processor.
#include <doctest/doctest.h>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <memory>

#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

using namespace moe;
using TokenIds = std::vector<int32_t>;

namespace {

// A few hundred lines mixing words, numbers and punctuation; no CJK, so
// those characters must come out through byte fallback.
void write_corpus(const std::string& path) {
  const char* words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "mixture", "of",
                         "experts", "latent", "attention", "token", "model", "deep", "seek", "hello", "world",
                         "café", "naïve", "über", "Привет", "мир"};
  std::ofstream f(path);
  unsigned x = 12345;
  for (int line = 0; line < 400; ++line) {
    const int n = 4 + line % 9;
    for (int w = 0; w < n; ++w) {
      x = x * 1103515245u + 12345u;
      f << (w ? " " : "") << words[(x >> 16) % (sizeof words / sizeof *words)];
      if ((x >> 8) % 7 == 0) f << ",";
      if ((x >> 4) % 11 == 0) f << " " << (x >> 20) % 1000;
    }
    f << (line % 3 ? "." : "!") << "\n";
  }
}

struct TrainedModel {
  std::string dir;
  sentencepiece::SentencePieceProcessor sp;
  std::string gguf;
};

const TrainedModel& trained_model() {
  static const std::unique_ptr<TrainedModel> m = [] {
    auto t = std::make_unique<TrainedModel>();
    t->dir = test::temp_dir();
    write_corpus(t->dir + "/corpus.txt");
    const auto st = sentencepiece::SentencePieceTrainer::Train(
        "--input=" + t->dir + "/corpus.txt --model_prefix=" + t->dir +
        "/sp --model_type=bpe --vocab_size=400 --byte_fallback=true --character_coverage=1.0"
        " --normalization_rule_name=identity --remove_extra_whitespaces=false --num_threads=1 --minloglevel=2");
    REQUIRE_MESSAGE(st.ok(), st.ToString());
    REQUIRE(t->sp.Load(t->dir + "/sp.model").ok());

    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
    for (int i = 0; i < t->sp.GetPieceSize(); ++i) {
      tokens.push_back(t->sp.IdToPiece(i));
      scores.push_back(t->sp.GetScore(i));
      // tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 5 unused, 6 byte
      const auto& sp = t->sp;
      types.push_back(sp.IsUnknown(i) ? 2 : sp.IsControl(i) ? 3 : sp.IsUnused(i) ? 5 : sp.IsByte(i) ? 6 : 1);
    }
    t->gguf = t->dir + "/sp.gguf";
    GgufWriter w(t->gguf);
    w.set("general.architecture", GgufValue::string("llama"));
    w.set("tokenizer.ggml.model", GgufValue::string("llama"));
    w.set("tokenizer.ggml.tokens", GgufValue::array_of_strings(tokens));
    w.set("tokenizer.ggml.scores", GgufValue::array<float>(GgufType::FLOAT32, scores));
    w.set("tokenizer.ggml.token_type", GgufValue::array<int32_t>(GgufType::INT32, types));
    w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(t->sp.bos_id())));
    w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(t->sp.eos_id())));
    w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(static_cast<uint32_t>(t->sp.unk_id())));
    w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(true));
    w.begin();
    w.finish();
    return t;
  }();
  return *m;
}

}  // namespace

TEST_CASE("tokenizer: SentencePiece vocabulary encodes and decodes as libsentencepiece") {
  const TrainedModel& m = trained_model();
  const Tokenizer tok = Tokenizer::from_gguf(GgufFile::open(m.gguf));
  CHECK(tok.n_vocab() == m.sp.GetPieceSize());
  CHECK(tok.bos() == m.sp.bos_id());
  CHECK(tok.eos() == m.sp.eos_id());

  const std::string texts[] = {
      "the quick brown fox", "Hello world", " leading space", "trailing spaces   ", "two  spaces",
      "café über naïve", "Привет, мир!", "深度求索", "emoji 😀 and 🚀", "tabs\tand\nnewlines",
      "numbers 1234567 and 3.14", "", "x", "UPPER lower MiXeD", "a,b.c!d?e",
  };
  for (const std::string& text : texts) {
    CAPTURE(text);
    std::vector<int> expected_int;
    REQUIRE(m.sp.Encode(text, &expected_int).ok());
    const TokenIds expected(expected_int.begin(), expected_int.end());
    const TokenIds ids = tok.encode(text, false, false);
    CHECK(ids == expected);
    std::string expected_text;
    REQUIRE(m.sp.Decode(expected_int, &expected_text).ok());
    CHECK(tok.decode(ids) == expected_text);
    CHECK(tok.decode(ids) == text);  // identity normalization: a lossless round trip

    StreamDecoder dec(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.push(id);
    streamed += dec.flush();
    CHECK(streamed == text);
  }

  // Streaming a continuation (at_start false) keeps the dummy-prefix space.
  StreamDecoder cont(tok, true, /*at_start=*/false);
  std::string continued;
  for (int32_t id : tok.encode("Hello world", false, false)) continued += cont.push(id);
  CHECK(continued + cont.flush() == " Hello world");

  // BOS as the model asks (llama vocabularies default to it), and special
  // tokens in text when parsed.
  const TokenIds with_bos = tok.encode("hello", true, false);
  REQUIRE(!with_bos.empty());
  CHECK(with_bos.front() == m.sp.bos_id());
  const TokenIds parsed = tok.encode("</s>hello", false, true);
  REQUIRE(!parsed.empty());
  CHECK(parsed.front() == m.sp.eos_id());
  CHECK(tok.encode("</s>", false, false).size() > 1);
  // The dummy-prefix space is dropped from the first token only, as in
  // llama.cpp's detokenizer; here that is </s>, printed as nothing.
  CHECK(tok.decode(parsed, /*special=*/false) == " hello");

  // Invalid UTF-8 must not crash (libsentencepiece turns it into U+FFFD).
  const TokenIds bad = tok.encode("a\xFF\xC3", false, false);
  CHECK(!bad.empty());
}

TEST_CASE("tokenizer: SentencePiece vocabulary without an unknown token is refused") {
  const TrainedModel& m = trained_model();
  const std::string path = test::temp_dir() + "/nounk.gguf";
  std::vector<std::string> tokens;
  for (int i = 0; i < m.sp.GetPieceSize(); ++i) tokens.push_back(m.sp.IdToPiece(i));
  GgufWriter w(path);
  w.set("tokenizer.ggml.model", GgufValue::string("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::array_of_strings(tokens));  // no types: all normal
  w.begin();
  w.finish();
  try {
    Tokenizer::from_gguf(GgufFile::open(path));
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("no token of type unknown") != std::string::npos);
  }
}
