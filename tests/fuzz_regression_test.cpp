// Hostile inputs: what the fuzz targets (tests/fuzz/) found, replayed through
// the same entry points, and resource claims that must be refused before
// anything is allocated. Each input must give a clean moe::Error or success.
//
// Committed fuzz inputs live in tests/fixtures/fuzz/TARGET/ (TARGET as in
// scripts/fuzz.sh: gguf_reader, safetensors, tokenizer, chat_template,
// batch_line); a new finding is added there with the fix.
#include <doctest/doctest.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "chat/batch_input.h"
#include "chat/chat_template.h"
#include "convert/safetensors.h"
#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "gguf_bytes.h"
#include "fuzz/prompt_cache_shape.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace {

namespace fs = std::filesystem;
using moe::test::GgufBytes;

long peak_rss_kib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

// Runs `parse`, which must throw moe::Error containing every fragment,
// quickly and without raising the peak RSS by anything near the claim.
template <typename F>
void expect_refused_cheaply(F&& parse, std::initializer_list<const char*> fragments) {
  const long rss0 = peak_rss_kib();
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg;
  try {
    parse();
  } catch (const moe::Error& e) {
    msg = e.what();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO("message: " << msg);
  REQUIRE_FALSE(msg.empty());
  for (const char* f : fragments) CHECK_MESSAGE(msg.find(f) != std::string::npos, "missing fragment: " << f);
  CHECK(secs < 1.0);
  CHECK(peak_rss_kib() - rss0 < 64 * 1024);
}

void parse_gguf(const GgufBytes& g) { (void)moe::GgufFile::parse(g.b.data(), g.b.size(), "hostile.gguf"); }

std::vector<uint8_t> safetensors_bytes(uint64_t header_len, const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(header_len >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data_bytes, 0);
  return b;
}

void parse_safetensors(const std::vector<uint8_t>& b) {
  (void)moe::SafetensorsFile::parse(b.data(), b.size(), "hostile.safetensors");
}

// The committed inputs of one fuzz target, or empty when there are none.
std::vector<std::string> fuzz_inputs(const std::string& target) {
  std::vector<std::string> out;
  const std::string dir = moe::test::local_fixture("fuzz/" + target);
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path().string());
  return out;
}

std::string as_text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

}  // namespace

TEST_CASE("hostile GGUF: claims bigger than the file fail fast without allocating") {
  SUBCASE("a 2^40-byte string value") {
    GgufBytes g;
    g.header(0, 1).str("big.string").u32(8).u64(1ull << 40).zeros(16);
    expect_refused_cheaply([&] { parse_gguf(g); }, {"hostile.gguf", "big.string", "string length"});
  }
  SUBCASE("a 2^30-byte string value (allocatable, so only the check stops it)") {
    GgufBytes g;
    g.header(0, 1).str("big.string").u32(8).u64(1ull << 30).zeros(16);
    expect_refused_cheaply([&] { parse_gguf(g); }, {"big.string", "string length"});
  }
  SUBCASE("arrays of 2^60 elements: scalars, strings, arrays") {
    for (uint32_t elem : {0u /*uint8*/, 10u /*uint64*/, 8u /*string*/, 9u /*array*/}) {
      GgufBytes g;
      g.header(0, 1).str("big.array").u32(9).u32(elem).u64(1ull << 60).zeros(64);
      expect_refused_cheaply([&] { parse_gguf(g); }, {"big.array", "cannot fit"});
    }
  }
  SUBCASE("2^60 tensors and 2^60 metadata entries") {
    GgufBytes t, k;
    t.header(1ull << 60, 0).zeros(64);
    k.header(0, 1ull << 60).zeros(64);
    expect_refused_cheaply([&] { parse_gguf(t); }, {"tensor count"});
    expect_refused_cheaply([&] { parse_gguf(k); }, {"metadata count"});
  }
  SUBCASE("tensor dimensions whose data cannot be in the file") {
    GgufBytes ovf, big;
    ovf.header(1, 0).tensor("t.overflow", {1ull << 40, 1ull << 40}, 0, 0).pad_to(32).zeros(32);
    big.header(1, 0).tensor("t.big", {1ull << 20, 1ull << 20}, 0, 0).pad_to(32).zeros(32);
    expect_refused_cheaply([&] { parse_gguf(ovf); }, {"t.overflow"});
    expect_refused_cheaply([&] { parse_gguf(big); }, {"t.big"});
  }
}

TEST_CASE("hostile GGUF: a tensor with empty rows (found by fuzz_gguf_reader)") {
  // shape [0, 5]: no elements, 5 rows; n_rows() divided 0 by 0 before.
  GgufBytes g;
  g.header(1, 0).tensor("t.empty", {0, 5}, 0, 0).pad_to(32);
  const moe::GgufFile f = moe::GgufFile::parse(g.b.data(), g.b.size(), "empty.gguf");
  REQUIRE(f.tensors().size() == 1);
  CHECK(f.tensors()[0].n_elements == 0);
  CHECK(f.tensors()[0].nbytes == 0);
  CHECK(f.tensors()[0].n_rows() == 5);
  // A zero dimension must not hide an overflowing product of the others.
  GgufBytes o;
  o.header(1, 0).tensor("t.zero.overflow", {0, 1ull << 62, 1ull << 62}, 0, 0).pad_to(32);
  expect_refused_cheaply([&] { parse_gguf(o); }, {"t.zero.overflow", "overflows"});
}

TEST_CASE("hostile safetensors: claims bigger than the file fail fast without allocating") {
  expect_refused_cheaply([&] { parse_safetensors(safetensors_bytes(1ull << 40, "{}", 0)); },
                         {"hostile.safetensors", "header length"});
  expect_refused_cheaply([&] { parse_safetensors(safetensors_bytes(~0ull, "{}", 0)); }, {"header length"});
  const std::string huge_shape = R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})";
  expect_refused_cheaply([&] { parse_safetensors(safetensors_bytes(huge_shape.size(), huge_shape, 4)); },
                         {"'w'", "overflows"});
  const std::string far = R"({"w":{"dtype":"U8","shape":[1073741824],"data_offsets":[0,1073741824]}})";
  expect_refused_cheaply([&] { parse_safetensors(safetensors_bytes(far.size(), far, 4)); }, {"'w'", "data_offsets"});
  std::string deep(100000, '[');
  deep = R"({"__metadata__":)" + deep;
  expect_refused_cheaply([&] { parse_safetensors(safetensors_bytes(deep.size(), deep, 0)); }, {"nested"});
}

TEST_CASE("hostile batch input: a line over the limit is refused without being parsed") {
  const std::string line(moe::kMaxBatchLineBytes + 1, 'a');
  for (moe::BatchFormat f : {moe::BatchFormat::jsonl, moe::BatchFormat::text}) {
    const moe::BatchLine r = moe::batch_parse_line(line, 3, f);
    CHECK(r.kind == moe::BatchLine::invalid);
    CHECK(r.error.find("limit") != std::string::npos);
    CHECK(r.req.line == 3);
  }
  // At the limit it is still a prompt.
  const moe::BatchLine ok = moe::batch_parse_line(std::string(moe::kMaxBatchLineBytes, 'a'), 1, moe::BatchFormat::text);
  CHECK(ok.kind == moe::BatchLine::request);
}

TEST_CASE("hostile batch input: a number too large for a double is an error for its line (found by fuzz_batch_line)") {
  for (const char* line : {"1E400", R"({"prompt": "x", "n_predict": 1e999})", R"({"prompt": "x", "temperature": -4E4444})"}) {
    INFO(line);
    const moe::BatchLine r = moe::batch_parse_line(line, 7, moe::BatchFormat::jsonl);
    CHECK(r.kind == moe::BatchLine::invalid);
    CHECK(r.error.find("invalid JSON") != std::string::npos);
    CHECK(r.error.find("number overflow") != std::string::npos);
  }
}

TEST_CASE("fuzz regression: committed GGUF and safetensors inputs fail cleanly") {
  const std::vector<std::string> gguf = fuzz_inputs("gguf_reader"), st = fuzz_inputs("safetensors");
  if (gguf.empty() && st.empty()) return moe::test::skip("no committed inputs in tests/fixtures/fuzz/{gguf_reader,safetensors}");
  for (const std::string& p : gguf) {
    INFO(p);
    const std::vector<uint8_t> b = moe::test::read_file(p);
    try {
      const moe::GgufFile f = moe::GgufFile::parse(b.data(), b.size(), p);
      for (const moe::GgufKv& kv : f.metadata()) (void)kv.value.to_string();
      for (const moe::GgufTensorInfo& t : f.tensors()) {
        CHECK(t.n_rows() >= 0);
        (void)t.shape_string();
      }
    } catch (const moe::Error& e) {
      CHECK(std::string(e.what()).find(p) != std::string::npos);  // names the file
    }
  }
  for (const std::string& p : st) {
    INFO(p);
    const std::vector<uint8_t> b = moe::test::read_file(p);
    try {
      const moe::SafetensorsFile f = moe::SafetensorsFile::parse(b.data(), b.size(), p);
      for (const moe::SafetensorInfo& t : f.tensors())
        if (t.n_elements <= 4096) (void)moe::tensor_to_f32(t);
    } catch (const moe::Error& e) {
      CHECK(std::string(e.what()).find(p) != std::string::npos);
    }
  }
}

TEST_CASE("fuzz regression: committed tokenizer, chat and batch inputs are handled") {
  const std::vector<std::string> tok_in = fuzz_inputs("tokenizer"), chat_in = fuzz_inputs("chat_template"),
                                 batch_in = fuzz_inputs("batch_line");
  if (tok_in.empty() && chat_in.empty() && batch_in.empty())
    return moe::test::skip("no committed inputs in tests/fixtures/fuzz/{tokenizer,chat_template,batch_line}");
  if (!tok_in.empty()) {
    const moe::Tokenizer tok = moe::Tokenizer::from_gguf(moe::GgufFile::open(moe::test::local_fixture("tiny-dsv3.Q4_K_M.gguf")));
    for (const std::string& p : tok_in) {
      INFO(p);
      const std::string text = as_text(moe::test::read_file(p));
      for (bool parse_special : {false, true}) {
        const std::vector<int32_t> ids = tok.encode(text, false, parse_special);
        const std::string whole = tok.decode(ids);
        if (moe::utf8_is_valid(text)) CHECK(whole == text);
        moe::StreamDecoder dec(tok);
        std::string streamed;
        for (int32_t id : ids) streamed += dec.push(id);
        streamed += dec.flush();
        CHECK(moe::utf8_is_valid(streamed));
        if (moe::utf8_is_valid(whole)) CHECK(streamed == whole);
      }
    }
  }
  for (const std::string& p : batch_in) {
    INFO(p);
    const std::string input = as_text(moe::test::read_file(p));
    int64_t n = 0;
    for (std::string_view line : moe::batch_split_lines(input)) {
      for (moe::BatchFormat f : {moe::BatchFormat::jsonl, moe::BatchFormat::text}) {
        const moe::BatchLine r = moe::batch_parse_line(line, ++n, f);
        CHECK((r.kind != moe::BatchLine::invalid || !r.error.empty()));
      }
    }
  }
  for (const std::string& p : chat_in) {
    INFO(p);
    // The fuzz input format (tests/fuzz/fuzz_chat_template.cpp): a selector
    // byte, then NUL-separated messages whose first byte picks the role.
    const std::string input = as_text(moe::test::read_file(p));
    REQUIRE_FALSE(input.empty());
    std::vector<moe::ChatMessage> msgs;
    static const char* const kRoles[] = {"system", "user", "assistant", "tool", ""};
    std::string_view rest = std::string_view(input).substr(1);
    while (!rest.empty()) {
      const size_t end = rest.find('\0');
      const std::string_view m = rest.substr(0, end);
      msgs.push_back({m.empty() ? "user" : kRoles[static_cast<uint8_t>(m[0]) % 5], std::string(m.empty() ? m : m.substr(1))});
      if (end == std::string_view::npos) break;
      rest.remove_prefix(end + 1);
    }
    const int fam = static_cast<uint8_t>(input[0]) % 16;
    if (fam > static_cast<int>(moe::ChatFamily::mistral)) continue;
    const moe::ChatTemplate t(static_cast<moe::ChatFamily>(fam), "<s>", "</s>");
    try {
      CHECK_FALSE(t.render(msgs, true).empty());
    } catch (const moe::Error& e) {
      CHECK(std::string(e.what()).find("message") != std::string::npos);
    }
  }
}

TEST_CASE("hostile text: long runs of one character class encode without throwing") {
  // The pre-tokenizer regexes run under PCRE2; a long match must not run out
  // of match stack (encode() promises never to throw on any bytes).
  const moe::Tokenizer tok =
      moe::Tokenizer::from_gguf(moe::GgufFile::open(moe::test::local_fixture("tiny-dsv3.Q4_K_M.gguf")));
  std::string cjk;
  for (int i = 0; i < 20000; ++i) cjk += "中";
  const std::vector<std::string> texts = {std::string(100000, 'a'), std::string(100000, ' '),
                                          std::string(100000, '7'), std::string(100000, '!'),
                                          std::string(100000, '\n'), cjk, std::string(50000, '\xff')};
  for (const std::string& text : texts) {
    INFO("a run of " << text.size() << " bytes starting with byte " << int(static_cast<uint8_t>(text[0])));
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int32_t> ids;
    CHECK_NOTHROW(ids = tok.encode(text, false, true));
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 10.0);
    if (moe::utf8_is_valid(text)) CHECK(tok.decode(ids) == text);
  }
}

TEST_CASE("fuzz regression: committed prompt cache inputs read cleanly (found by fuzz_prompt_cache)") {
  const std::vector<std::string> inputs = fuzz_inputs("prompt_cache");
  REQUIRE(!inputs.empty());
  const moe::PromptCacheShape s = moe::fuzz_prompt_cache_shape();
  for (const std::string& path : inputs) {
    CAPTURE(path);
    const std::string b = as_text(moe::test::read_file(path));
    try {
      const moe::PromptCacheData d = moe::decode_prompt_cache(b, s, path);
      CHECK(d.rows.size() == d.tokens.size() * 12);  // an empty cache (0 tokens) reads as empty
    } catch (const moe::Error&) {
    }
  }
}
