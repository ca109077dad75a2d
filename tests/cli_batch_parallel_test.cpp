// `moe --batch FILE -np N`: up to N lines answered at once (continuous
// batching). A line's record must not depend on -np: same text, token
// counts and finish reason at -np 1 and -np 8, greedy and seeded, on the
// trained default model and on the random fixture; bad lines keep their
// error records in place; Ctrl-C keeps every finished record; caches that
// cannot fit are refused before any work.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>
#include <vector>

#include "test_util.h"

using namespace moe;
using nlohmann::json;

namespace {

const std::string kDefaultModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";
std::string moe_bin() { return test::bin_dir() + "/moe"; }

// 40 lines of different lengths, budgets and seeds, with bad lines among
// them (invalid JSON, a prompt longer than -c 128).
std::string batch_file(const std::string& dir) {
  std::string file;
  std::string verse = "and Ruth said , intreat me not to leave thee , or to return from following after thee";
  for (int i = 1; i <= 40; ++i) {
    if (i == 7) file += "{\"id\": \"bad\", \"prompt\": \"unterminated\n";
    else if (i == 23) {
      std::string words;
      for (int k = 0; k < 150; ++k) words += " the LORD";
      file += R"({"id": "long", "prompt": ")" + words + "\"}\n";
    } else {
      const std::string prompt = verse.substr(0, static_cast<size_t>(8 + (i * 13) % 80));
      file += R"({"id": )" + std::to_string(i) + R"(, "prompt": ")" + prompt + R"(", "n_predict": )" +
              std::to_string(4 + (i * 7) % 30) + (i % 5 == 0 ? R"(, "seed": 5, "temperature": 1.1)" : "") + "}\n";
    }
  }
  const std::string path = dir + "/lines.jsonl";
  test::write_file(path, file.data(), file.size());
  return path;
}

// extra_np8: flags of the -np 8 run only (drafts, which change no greedy answer).
void check_same_records_at_any_np(const std::string& model, const std::vector<std::string>& sampling,
                                  const std::vector<std::string>& extra_np8 = {}) {
  const std::string path = batch_file(test::temp_dir());
  std::vector<std::vector<json>> runs;
  for (const char* np : {"1", "8"}) {
    std::vector<std::string> args = {moe_bin(), "-m", model, "--batch", path, "-c", "128", "-t", "2", "-np", np, "-s", "42"};
    args.insert(args.end(), sampling.begin(), sampling.end());
    if (np[0] == '8') args.insert(args.end(), extra_np8.begin(), extra_np8.end());
    const auto r = test::run_command(args);
    INFO("-np " << np << " stderr: " << r.err);
    CHECK(r.exit_code == 1);  // two lines failed
    runs.push_back(test::parse_json_lines(r.out));
    REQUIRE(runs.back().size() == 40);
  }
  int answered = 0, generated = 0;
  for (size_t i = 0; i < 40; ++i) {
    const json &a = runs[0][i], &b = runs[1][i];
    INFO(a.dump() << "\n" << b.dump());
    CHECK(a.at("line") == static_cast<int>(i) + 1);  // input order
    CHECK(b.at("line") == a.at("line"));
    CHECK(b.value("error", "") == a.value("error", ""));
    // (Drafts keep a sampled line's distribution, not its draws: only the
    // greedy lines are compared then.)
    const bool sampled_line = (i + 1) % 5 == 0;  // "seed": 5, "temperature": 1.1
    if (!extra_np8.empty() && sampled_line) continue;
    CHECK(b.value("text", "<none>") == a.value("text", "<none>"));
    CHECK(b.value("generated_tokens", -1) == a.value("generated_tokens", -1));
    CHECK(b.value("prompt_tokens", -1) == a.value("prompt_tokens", -1));
    CHECK(b.at("finish_reason") == a.at("finish_reason"));
    if (a.contains("text")) ++answered, generated += a.at("generated_tokens").get<int>();
  }
  if (!extra_np8.empty()) answered += 8;  // the sampled lines skipped above
  CHECK(answered == 38);
  CHECK(generated > 200);  // the answers are not trivially empty
  int64_t drafted = 0, accepted = 0;
  for (const json& rec : runs[1])
    if (rec.contains("speculative"))
      drafted += rec["speculative"].at("drafted").get<int64_t>(), accepted += rec["speculative"].at("accepted").get<int64_t>();
  if (extra_np8.empty()) {
    CHECK(drafted == 0);
  } else {
    CHECK(drafted > 50);
    CHECK(accepted * 2 > drafted);
  }
  CHECK(runs[0][6].at("error").get<std::string>().find("invalid JSON") != std::string::npos);
  CHECK(runs[1][22].at("error").get<std::string>().find("longer than the context") != std::string::npos);
}

}  // namespace

TEST_CASE("moe --batch -np 8: every record equals its -np 1 record (trained model, greedy)") {
  check_same_records_at_any_np(kDefaultModel, {"--temp", "0"});
}

TEST_CASE("moe --batch -np 8 --spec-type draft-mtp: every greedy record equals its -np 1 record without drafts") {
  check_same_records_at_any_np(kDefaultModel, {"--temp", "0"}, {"--spec-type", "draft-mtp", "--spec-draft-n-max", "2"});
}

TEST_CASE("moe --batch -np 8: every record equals its -np 1 record (trained model, seeded sampling)") {
  check_same_records_at_any_np(kDefaultModel, {"--temp", "0.9", "--top-k", "40"});
}

TEST_CASE("moe --batch -np 8: every record equals its -np 1 record (random fixture, seeded sampling)") {
  check_same_records_at_any_np(test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), {"--temp", "0.8"});
}

TEST_CASE("moe --batch --batch-unordered: every record, each once, as it finishes") {
  const std::string path = batch_file(test::temp_dir());
  const auto r = test::run_command(
      {moe_bin(), "-m", kDefaultModel, "--batch", path, "-c", "128", "-t", "2", "-np", "6", "--batch-unordered"});
  CHECK(r.exit_code == 1);
  std::set<int> lines;
  for (const json& rec : test::parse_json_lines(r.out)) lines.insert(rec.at("line").get<int>());
  CHECK(lines.size() == 40);
  CHECK(*lines.begin() == 1);
  CHECK(*lines.rbegin() == 40);
}

TEST_CASE("moe --batch -np 4: Ctrl-C keeps every finished record, in order, and ends the lines in flight") {
  std::string file;
  constexpr int kLines = 120;
  for (int i = 1; i <= kLines; ++i) file += "{\"id\": " + std::to_string(i) + ", \"prompt\": \"and Ruth said\"}\n";
  const std::string dir = test::temp_dir();
  test::write_file(dir + "/many.jsonl", file.data(), file.size());
  // Long answers (--ignore-eos, 200 tokens each). The signal is sent as soon
  // as the first record is on disk (records are flushed one by one), not
  // after a fixed delay: on a fast machine the whole batch once finished
  // inside such a delay. By then about 1/30 of the work is done, so lines
  // are in flight on any machine. The wait is bounded (30 s).
  const std::string out_path = test::shell_quote(dir + "/out.jsonl");
  const auto r = test::run_shell(moe_bin() + " -m " + test::shell_quote(kDefaultModel) + " --batch " +
                                 test::shell_quote(dir + "/many.jsonl") +
                                 " -c 256 -n 200 --ignore-eos -t 2 -np 4 > " + out_path +
                                 " 2>/dev/null & pid=$!; i=0; while [ ! -s " + out_path +
                                 " ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i+1)); done; kill -INT $pid; wait $pid; "
                                 "echo $?");
  CHECK(r.out == "130\n");
  const std::string out(reinterpret_cast<const char*>(test::read_file(dir + "/out.jsonl").data()),
                        test::read_file(dir + "/out.jsonl").size());
  const std::vector<json> recs = test::parse_json_lines(out);  // every line is whole JSON
  REQUIRE(recs.size() >= 1);
  CHECK(recs.size() < kLines);  // it stopped early
  int prev = 0, interrupted = 0;
  for (const json& rec : recs) {
    CHECK(rec.at("line").get<int>() == prev + 1);  // in order, none lost before the last
    prev = rec.at("line").get<int>();
    if (rec.at("finish_reason") == "interrupted") ++interrupted;
    else CHECK(rec.at("generated_tokens") == 200);
  }
  CHECK(interrupted >= 1);
  CHECK(interrupted <= 4);
}

TEST_CASE("moe --batch: caches for -np sequences that cannot fit are refused before any work") {
  const std::string path = test::temp_dir() + "/one.jsonl";
  test::write_file(path, "{\"prompt\": \"x\"}\n", 16);
  const auto r = test::run_command({moe_bin(), "-m", test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), "--batch", path,
                                    "-c", "163840", "-np", "4096", "-t", "2"});
  CHECK(r.exit_code != 0);
  CHECK(r.out.empty());
  CHECK(r.err.find("-np 4096") != std::string::npos);
  CHECK(r.err.find("latent cache needs") != std::string::npos);
  CHECK(r.err.find("MiB of memory is left after the weights") != std::string::npos);
}

TEST_CASE("moe --batch -np 4: a prefix the lines share is evaluated once, and the records equal -np 1's") {
  // 12 lines behind one common preamble; lines 5 and 6 share a longer one.
  const std::string preamble = "In the days when the judges ruled , there was a famine in the land . ";
  std::string file;
  for (int i = 1; i <= 12; ++i) {
    static const char* const words[] = {"Boaz", "Orpah", "Moab", "Jesse", "", "Ephrath", "Ruth", "Tamar", "", "Gilead",
                                        "Pharez", "David"};
    const std::string tail = (i == 5 || i == 6) ? "Naomi said unto her two daughters in law , Go , return " + std::to_string(i)
                                                : std::string(words[i - 1]) + " went down";
    file += "{\"id\": " + std::to_string(i) + ", \"prompt\": \"" + preamble + tail + "\", \"n_predict\": 12}\n";
  }
  const std::string path = test::temp_dir() + "/shared.jsonl";
  test::write_file(path, file.data(), file.size());
  std::vector<std::vector<json>> runs;
  for (const char* np : {"1", "4"}) {
    const auto r = test::run_command(
        {moe_bin(), "-m", kDefaultModel, "--batch", path, "-c", "128", "-b", "8", "-t", "2", "-np", np, "--temp", "0"});
    INFO("stderr: " << r.err);
    REQUIRE(r.exit_code == 0);
    runs.push_back(test::parse_json_lines(r.out));
    REQUIRE(runs.back().size() == 12);
  }
  int shared = 0;
  for (size_t i = 0; i < 12; ++i) {
    INFO(runs[0][i].dump() << "\n" << runs[1][i].dump());
    CHECK(runs[1][i].at("text") == runs[0][i].at("text"));
    CHECK(runs[1][i].at("prompt_tokens") == runs[0][i].at("prompt_tokens"));
    shared += runs[1][i].value("prompt_tokens_shared", 0) > 0;
  }
  // The first line of the preamble's group evaluates it, the other 9 copy
  // it (the slots that start with it wait for it); line 6 takes the longer
  // section line 5 evaluated, or evaluates it itself when 5's slot has moved on.
  CHECK(shared >= 9);
  const int s2 = runs[1][1].value("prompt_tokens_shared", 0), s6 = runs[1][5].value("prompt_tokens_shared", 0);
  CHECK(s2 > 0);
  CHECK((s6 == 0 || s6 > s2));
}
