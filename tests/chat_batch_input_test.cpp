// The batch line parser: every kind of bad line becomes an error for that
// line, never an exception; good lines keep their fields.
#include <doctest/doctest.h>

#include "chat/batch_input.h"

using namespace moe;

namespace {
BatchLine jsonl(std::string_view s, int64_t line = 7) { return batch_parse_line(s, line, BatchFormat::jsonl); }
}  // namespace

TEST_CASE("batch input: a full JSONL request") {
  const BatchLine r = jsonl(R"({"id": "q1", "prompt": "Hello", "n_predict": 8, "temperature": 0.5, "seed": 42,)"
                            R"( "stop": ["\n", "END"], "extra": true})");
  REQUIRE(r.kind == BatchLine::request);
  CHECK(r.req.id == "q1");
  CHECK(r.req.line == 7);
  CHECK(r.req.prompt == "Hello");
  CHECK_FALSE(r.req.is_chat());
  CHECK(r.req.n_predict == 8);
  CHECK(r.req.temperature == doctest::Approx(0.5));
  CHECK(r.req.seed == 42u);
  CHECK(r.req.stop == std::vector<std::string>{"\n", "END"});
}

TEST_CASE("batch input: messages, numeric id, single stop string") {
  const BatchLine r = jsonl(R"({"id": 3, "messages": [{"role": "system", "content": "Be brief."},)"
                            R"( {"role": "user", "content": "Hi \u00e9"}], "stop": "x"})");
  REQUIRE(r.kind == BatchLine::request);
  CHECK(r.req.id == 3);
  REQUIRE(r.req.messages.size() == 2);
  CHECK(r.req.messages[1].role == "user");
  CHECK(r.req.messages[1].content == "Hi \xc3\xa9");
  CHECK(r.req.stop == std::vector<std::string>{"x"});
  CHECK_FALSE(r.req.n_predict.has_value());
  CHECK(jsonl(R"({"prompt": "no id"})").req.id.is_null());
}

TEST_CASE("batch input: bad lines give an error naming the problem") {
  struct Case {
    std::string line;
    const char* expect;
  };
  const Case cases[] = {
      {R"({"id": 1, "prompt": "unterminated)", "invalid JSON"},
      {R"([1, 2])", "expected a JSON object"},
      {R"({"id": 1})", "missing \"prompt\""},
      {R"({"id": 1, "prompt": 5})", "\"prompt\" must be a string"},
      {R"({"id": 1, "prompt": ""})", "empty"},
      {R"({"id": 1, "prompt": "a", "messages": []})", "not both"},
      {R"({"id": 1, "messages": "hi"})", "\"messages\" must be a non-empty array"},
      {R"({"id": 1, "messages": [{"role": "user"}]})", "messages[0].content"},
      {R"({"id": 1, "messages": [{"role": "tool", "content": "x"}]})", "expected system, user or assistant"},
      {R"({"id": 1, "prompt": "a", "n_predict": "8"})", "\"n_predict\" must be an integer"},
      {R"({"id": 1, "prompt": "a", "n_predict": -5})", "\"n_predict\" must be an integer >= -2"},
      {R"({"id": 1, "prompt": "a", "temperature": "hot"})", "\"temperature\" must be a number"},
      {R"({"id": 1, "prompt": "a", "seed": -1})", "\"seed\" must be an integer >= 0"},
      {R"({"id": 1, "prompt": "a", "seed": 1.5})", "\"seed\""},
      {R"({"id": 1, "prompt": "a", "stop": [1]})", "\"stop\" entries must be strings"},
      {R"({"id": 1, "prompt": "a", "stop": [""]})", "must not be empty"},
      {"{\"id\": 1, \"prompt\": \"bad \xff byte\"}", "not valid UTF-8"},
      {"{\"id\": 1, \"prompt\": \"cut \xe2\x82\"}", "not valid UTF-8"},
  };
  for (const auto& c : cases) {
    INFO(c.line);
    const BatchLine r = jsonl(c.line);
    CHECK(r.kind == BatchLine::invalid);
    CHECK(r.error.find(c.expect) != std::string::npos);
    CHECK(r.req.line == 7);
  }
  // The id of a line whose other fields are wrong is kept for the error record.
  CHECK(jsonl(R"({"id": "keep", "prompt": 5})").req.id == "keep");
}

TEST_CASE("batch input: line length limit, blank lines, text lines") {
  const std::string huge = "{\"prompt\": \"" + std::string(kMaxBatchLineBytes, 'a') + "\"}";
  const BatchLine big = jsonl(huge);
  CHECK(big.kind == BatchLine::invalid);
  CHECK(big.error.find("limit") != std::string::npos);
  CHECK(jsonl("   ").kind == BatchLine::blank);
  const BatchLine t = batch_parse_line("just a prompt", 4, BatchFormat::text);
  REQUIRE(t.kind == BatchLine::request);
  CHECK(t.req.prompt == "just a prompt");
  CHECK(t.req.id == 4);
  CHECK(batch_parse_line("bad \xc0\xaf", 4, BatchFormat::text).kind == BatchLine::invalid);
}

TEST_CASE("batch input: line splitting and format detection") {
  const auto lines = batch_split_lines("a\r\nb\n\nc");
  REQUIRE(lines.size() == 4);
  CHECK(lines[0] == "a");
  CHECK(lines[2].empty());
  CHECK(lines[3] == "c");
  CHECK(batch_split_lines("a\n").size() == 1);
  CHECK(batch_detect_format(batch_split_lines("\n  {\"prompt\": \"x\"}\nnot json\n")) == BatchFormat::jsonl);
  CHECK(batch_detect_format(batch_split_lines("Tell me a story\n{\"prompt\": 1}\n")) == BatchFormat::text);
  CHECK(batch_format_from_name("jsonl") == BatchFormat::jsonl);
  CHECK_THROWS(batch_format_from_name("csv"));
}
