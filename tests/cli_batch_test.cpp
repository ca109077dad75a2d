// `moe --batch`: 50 prompts with malformed lines among them. Every good line
// is answered in input order, every bad line gets an error record, the exit
// code says something failed, and a rerun with the same seed gives the same
// texts.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

#include "test_util.h"

using namespace moe;
using nlohmann::json;

namespace {

std::string moe_bin() { return test::bin_dir() + "/moe"; }

}  // namespace

TEST_CASE("moe --batch: 50 prompts with bad lines, in order, errors per line, reproducible") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/prompts.jsonl";

  // Lines (1-based) that are bad, and what about them.
  const std::set<int> bad_lines = {5, 12, 20, 27, 33, 41, 48};
  std::string file;
  int line = 0, good = 0;
  auto add = [&](const std::string& l) {
    file += l + "\n";
    ++line;
  };
  while (good < 50) {
    const int next = line + 1;
    if (bad_lines.count(next)) {
      switch (next) {
        case 5: add(R"({"id": "b5", "prompt": "unterminated)"); break;                 // invalid JSON
        case 12: add(R"({"id": "b12", "text": "no prompt key"})"); break;             // missing prompt
        case 20: add(R"({"id": "b20", "prompt": ["not", "a", "string"]})"); break;    // wrong type
        case 27: add("{\"id\": \"b27\", \"prompt\": \"bad \xff\xfe bytes\"}"); break;  // invalid UTF-8
        case 33: {                                                                     // longer than -c 64
          std::string words;
          for (int i = 0; i < 200; ++i) words += " word" + std::to_string(i);
          add(R"({"id": "b33", "prompt": ")" + words + R"("})");
          break;
        }
        case 41: add(R"({"id": "b41", "prompt": "x", "n_predict": "many"})"); break;  // wrong type
        case 48: add(R"({"id": "b48", "prompt": ")" + std::string(1 << 20, 'a') + R"("})"); break;  // > 1 MiB
      }
      continue;
    }
    ++good;
    if (good % 10 == 3) {
      add(R"({"id": "g)" + std::to_string(good) + R"(", "messages": [{"role": "system", "content": "Be brief."}, )"
          R"({"role": "user", "content": "Question )" + std::to_string(good) + R"("}]})");
    } else if (good % 10 == 7) {
      add(R"({"id": "g)" + std::to_string(good) + R"(", "prompt": "Seeded )" + std::to_string(good) +
          R"(", "seed": 99, "temperature": 1.2, "n_predict": 4})");
    } else {
      add(R"({"id": "g)" + std::to_string(good) + R"(", "prompt": "Prompt number )" + std::to_string(good) + R"("})");
    }
    if (good == 25) add("");  // blank lines are skipped, not answered
  }
  test::write_file(path, file.data(), file.size());

  const std::vector<std::string> args = {moe_bin(), "-m", model_path, "--batch", path, "-n", "6", "-s", "1234",
                                         "-c", "64", "-t", "2"};
  const auto a = test::run_command(args);
  INFO("stderr: " << a.err);
  CHECK(a.exit_code == 1);  // some lines failed
  const std::vector<json> ra = test::parse_json_lines(a.out);
  REQUIRE(ra.size() == 50 + bad_lines.size());

  int64_t prev_line = 0;
  int answered = 0;
  for (const json& r : ra) {
    INFO(r.dump());
    const int64_t ln = r.at("line").get<int64_t>();
    CHECK(ln > prev_line);  // input order
    prev_line = ln;
    if (bad_lines.count(static_cast<int>(ln))) {
      CHECK(r.contains("error"));
      CHECK(r.at("finish_reason") == "error");
      CHECK_FALSE(r.contains("text"));
      if (ln != 5 && ln != 27 && ln != 48) CHECK(r.at("id") == "b" + std::to_string(ln));  // id kept when readable
    } else {
      CHECK_FALSE(r.contains("error"));
      CHECK(r.at("id").get<std::string>()[0] == 'g');
      CHECK(r.at("text").is_string());
      CHECK(r.at("prompt_tokens").get<int64_t>() > 0);
      const int64_t gen = r.at("generated_tokens").get<int64_t>();
      const std::string fin = r.at("finish_reason");
      CHECK((fin == "length" || fin == "eos"));
      CHECK(gen <= 6);
      if (fin == "length") CHECK(gen == (r.at("seed") == 99 ? 4 : 6));  // the line's n_predict, else -n
      CHECK(r.at("timings").at("generation_s").get<double>() >= 0);
      ++answered;
    }
  }
  CHECK(answered == 50);
  // The error names the problem.
  auto error_of = [&](int ln) {
    for (const json& r : ra)
      if (r.at("line") == ln) return r.at("error").get<std::string>();
    return std::string();
  };
  CHECK(error_of(5).find("invalid JSON") != std::string::npos);
  CHECK(error_of(12).find("missing \"prompt\"") != std::string::npos);
  CHECK(error_of(20).find("must be a string") != std::string::npos);
  CHECK(error_of(27).find("UTF-8") != std::string::npos);
  CHECK(error_of(33).find("longer than the context") != std::string::npos);
  CHECK(error_of(41).find("n_predict") != std::string::npos);
  CHECK(error_of(48).find("limit") != std::string::npos);

  // Same seed, same texts (timings differ).
  const auto b = test::run_command(args);
  const std::vector<json> rb = test::parse_json_lines(b.out);
  REQUIRE(rb.size() == ra.size());
  for (size_t i = 0; i < ra.size(); ++i) {
    CHECK(ra[i].value("text", "<none>") == rb[i].value("text", "<none>"));
    CHECK(ra[i].at("line") == rb[i].at("line"));
  }
  // Another -s changes the lines that take their seed from it, not those
  // that set their own.
  const auto c = test::run_command({moe_bin(), "-m", model_path, "--batch", path, "-n", "6", "-s", "99999", "-c", "64",
                                    "-t", "2"});
  const std::vector<json> rc = test::parse_json_lines(c.out);
  REQUIRE(rc.size() == ra.size());
  int differ = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    if (!ra[i].contains("text")) continue;
    if (ra[i].at("seed") == 99) CHECK(ra[i].at("text") == rc[i].at("text"));  // per-line seed wins over -s
    else differ += ra[i].at("text") != rc[i].at("text");
  }
  CHECK(differ > 10);
}

TEST_CASE("moe --batch: a line's answer equals the one-shot answer with the same seed") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const std::string path = test::temp_dir() + "/p.jsonl";
  const std::string file = "{\"id\": 1, \"prompt\": \"The cat\", \"seed\": 7, \"n_predict\": 10, \"temperature\": 0.9}\n";
  test::write_file(path, file.data(), file.size());
  const auto batch = test::run_command({moe_bin(), "-m", model_path, "--batch", path, "-t", "2"});
  REQUIRE(batch.exit_code == 0);
  const json r = json::parse(batch.out);
  const auto one = test::run_command({moe_bin(), "-m", model_path, "-p", "The cat", "-s", "7", "-n", "10", "--temp",
                                      "0.9", "--no-display-prompt", "-t", "2", "--json"});
  REQUIRE(one.exit_code == 0);
  const json o = json::parse(one.out);
  CHECK(r.at("text") == o.at("text"));
  CHECK(r.at("generated_tokens") == o.at("generated_tokens"));
  CHECK(o.at("prompt_tokens") == r.at("prompt_tokens"));
}

TEST_CASE("moe --batch: plain text from stdin, one prompt per line") {
  const std::string model_path = test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
  const std::string dir = test::temp_dir();
  const std::string in = dir + "/in.txt";
  const std::string text = "First prompt\n\nSecond {prompt}\n";
  test::write_file(in, text.data(), text.size());
  // run_command has no stdin: go through the shell for the redirect.
  const auto r = test::run_command({"/bin/sh", "-c", moe_bin() + " -m " + model_path + " --batch - -n 3 -s 5 -t 2 < " + in});
  INFO("stderr: " << r.err);
  CHECK(r.exit_code == 0);
  const std::vector<json> recs = test::parse_json_lines(r.out);
  REQUIRE(recs.size() == 2);
  CHECK(recs[0].at("id") == 1);
  CHECK(recs[1].at("id") == 3);
  CHECK(recs[1].at("line") == 3);
  CHECK(recs[1].at("generated_tokens").get<int>() <= 3);
}
