// A llama.cpp user's habits: their flags (single-dash long names included)
// do what they do in llama.cpp or are refused by name, escapes in -p and
// --stop are processed, outputs never destroy inputs, write errors and bad
// flags exit 1, and the small surprises of a first session are gone.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <thread>

#include "chat/escapes.h"
#include "core/thread_pool.h"
#include "model/deepseek2.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";

std::string bin(const std::string& tool) { return test::bin_dir() + "/" + tool; }

// moe on the default model, stdin from /dev/null unless a script says otherwise.
test::CommandResult run_moe(const std::string& args, const std::string& redirect = "< /dev/null") {
  return test::run_shell(test::shell_quote(bin("moe")) + " -m " + test::shell_quote(kModel) + " -t 1 " + args + " " +
                         redirect);
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

int count(const std::string& text, const std::string& part) {
  int n = 0;
  for (size_t p = text.find(part); p != std::string::npos; p = text.find(part, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("habits: moe-quantize refuses an output that is its input, under any name, before any work") {
  const std::string dir = test::temp_dir(), in = dir + "/in.gguf";
  fs::copy_file(test::local_fixture("tiny-dsv3.Q4_K_M.gguf"), in);
  fs::create_symlink(in, dir + "/link.gguf");
  fs::create_hard_link(in, dir + "/hard.gguf");
  const std::vector<uint8_t> before = test::read_file(in);
  for (const std::string& out : {in, dir + "/./in.gguf", dir + "/link.gguf", dir + "/hard.gguf"}) {
    CAPTURE(out);
    const auto r = test::run_command({bin("moe-quantize"), in, out, "Q8_0", "--allow-requantize"});
    CHECK(r.exit_code == 1);
    CHECK(has(r.err, "is the input file"));
    CHECK(test::read_file(in) == before);
  }
  const auto nodir = test::run_command({bin("moe-quantize"), in, dir + "/no/such/dir/out.gguf", "Q8_0",
                                        "--allow-requantize"});
  CHECK(nodir.exit_code == 1);
  CHECK(has(nodir.err, "does not exist"));
  CHECK_FALSE(has(nodir.out, "tensors in"));  // refused before the work
  // llama-quantize's trailing thread count.
  const auto ok = test::run_command({bin("moe-quantize"), in, dir + "/out.gguf", "Q8_0", "2", "--allow-requantize"});
  CHECK_MESSAGE(ok.exit_code == 0, ok.err);
  CHECK(has(ok.out, "2 threads"));
}

TEST_CASE("habits: moe-convert refuses to write over its checkpoint's own files") {
  const std::string dir = test::temp_dir();
  const std::string config = "{\"architectures\": [\"DeepseekV3ForCausalLM\"]}";
  test::write_file(dir + "/config.json", config.data(), config.size());
  const auto r = test::run_command({bin("moe-convert"), dir, "-o", dir + "/config.json"});
  CHECK(r.exit_code == 1);
  CHECK(has(r.err, "checkpoint's own file"));
  const std::vector<uint8_t> after = test::read_file(dir + "/config.json");
  CHECK(std::string(after.begin(), after.end()) == config);
  const auto nodir = test::run_command({bin("moe-convert"), dir, "-o", dir + "/missing/out.gguf"});
  CHECK(nodir.exit_code == 1);
  CHECK(has(nodir.err, "does not exist"));
}

TEST_CASE("habits: escapes are processed as llama.cpp processes them") {
  CHECK(process_escapes(R"(a\nb\tc\\d\'e\"f)") == "a\nb\tc\\d'e\"f");
  CHECK(process_escapes(R"(\x41\x7a)") == "Az");
  CHECK(process_escapes(R"(C:\path\qx \x4 end\)") == R"(C:\path\qx \x4 end\)");  // not escapes: kept
  CHECK(process_escapes("\\r") == "\r");

  // --stop "\n" stops at the first new line; with --no-escape it is the two
  // characters backslash and n, which the model never writes.
  const auto stop = run_moe("-p 'And God said' -n 80 --temp 0 --json --stop '\\n'");
  REQUIRE_MESSAGE(stop.exit_code == 0, stop.err);
  const auto js = nlohmann::json::parse(stop.out);
  CHECK(js["finish_reason"] == "stop");
  CHECK_FALSE(has(js["text"].get<std::string>(), "\n"));
  const auto literal = run_moe("-p 'And God said' -n 80 --temp 0 --json --stop '\\n' --no-escape");
  REQUIRE(literal.exit_code == 0);
  const auto jl = nlohmann::json::parse(literal.out);
  CHECK(jl["finish_reason"] != "stop");
  CHECK(has(jl["text"].get<std::string>(), "\n"));
  // -r is llama.cpp's spelling of a stop text.
  const auto r = run_moe("-p 'And God said' -n 80 --temp 0 --json -r '\\n'");
  CHECK(nlohmann::json::parse(r.out)["text"] == js["text"]);
}

TEST_CASE("habits: llama.cpp's single-dash flags are accepted where they mean something here") {
  const auto base = run_moe("-p 'In the beginning' -n 12 --temp 0");
  REQUIRE_MESSAGE(base.exit_code == 0, base.err);
  struct Same {
    const char* args;
    const char* in_err;
  };
  for (const Same& c : {Same{"-ngl 99", "-ngl 99 is ignored"}, Same{"-fa", ""}, Same{"-fa on", ""},
                        Same{"-fa off", ""}, Same{"-ctk f32 -ctv f32", ""}, Same{"-ub 4", ""},
                        Same{"-tb 2", "-tb 2 is not used"}, Same{"-e", ""}, Same{"--mlock", ""},
                        Same{"--no-mmap", ""}, Same{"-v", "CPU ("}, Same{"-dev none", ""},
                        Same{"-sys Hi", "apply to chat mode"}, Same{"-no-cnv", ""}, Same{"-ncmoe 1", ""},
                        Same{"-cmoe", ""}, Same{"-ot exps=CPU", ""}}) {
    CAPTURE(c.args);
    const auto r = run_moe(std::string("-p 'In the beginning' -n 12 --temp 0 ") + c.args);
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.out == base.out);
    CHECK(has(r.err, c.in_err));
  }
  const auto version = test::run_command({bin("moe"), "--version"});
  CHECK(version.exit_code == 0);
  CHECK(has(version.out, "moe 0."));
  CHECK(has(version.out, "commit"));

  // --ignore-eos: the budget is spent whatever the model says.
  const auto eos = run_moe("-p 'And God said' -n 40 --temp 0 --ignore-eos --json");
  REQUIRE(eos.exit_code == 0);
  CHECK(nlohmann::json::parse(eos.out)["generated_tokens"] == 40);
}

TEST_CASE("habits: llama.cpp flags we do not support are refused by name") {
  struct Bad {
    const char* args;
    const char* in_err;
  };
  for (const Bad& b : {Bad{"-hf unsloth/DeepSeek-R1-GGUF", "-hf is not supported: downloads"},
                       Bad{"--hf-repo x", "--hf-repo is not supported"}, Bad{"-md draft.gguf", "draft models"},
                       Bad{"--lora x.gguf", "adapters"}, Bad{"--grammar root", "grammar"},
                       Bad{"-sm row", "multi-GPU"}, Bad{"--jinja", "chat templates are built in"},
                       Bad{"-ctk q4_0", "-ctk q4_0: the latent cache can be f32, f16, bf16 or q8_0"},
                       Bad{"-ctk bf16 -ctv f32", "-ctv f32: MLA keeps one latent cache"}, Bad{"-fa maybe", "-fa 'maybe'"},
                       Bad{"--frobnicate", "--frobnicate"}, Bad{"-np 2 -p Hi", "for --batch mode"},
                       Bad{"-cnv -no-cnv", ""}, Bad{"-no-cnv", "-no-cnv needs a prompt"}}) {
    CAPTURE(b.args);
    const auto r = run_moe(b.args);
    CHECK(r.exit_code == 1);
    CHECK(r.signal == 0);
    CHECK(has(r.err, b.in_err));
  }
}

TEST_CASE("habits: moe-bench takes llama-bench's flags") {
  const auto r = test::run_command({bin("moe-bench"), "-m", kModel, "-p", "8,16", "-n", "4", "-pg", "8,4", "-d", "0,8",
                                    "-r", "1", "-t", "1", "-o", "jsonl", "-ngl", "0", "-fa", "1", "-mmp", "0"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  std::vector<std::string> names;
  size_t begin = 0;
  while (begin < r.out.size()) {
    const size_t end = r.out.find('\n', begin);
    names.push_back(nlohmann::json::parse(r.out.substr(begin, end - begin))["test"]);
    begin = end + 1;
  }
  CHECK(names == std::vector<std::string>{"pp8", "pp16", "tg4", "pp8+tg4", "pp8 @ d8", "pp16 @ d8", "tg4 @ d8",
                                          "pp8+tg4 @ d8"});
  const auto csv = test::run_command({bin("moe-bench"), "-m", kModel, "-p", "8", "-n", "0", "-r", "1", "-o", "csv"});
  CHECK(csv.exit_code == 0);
  CHECK(csv.out.rfind("model,size_bytes,backend,threads,n_prompt,n_gen,n_depth,test,avg_ts,stddev_ts\n", 0) == 0);
  const auto bad = test::run_command({bin("moe-bench"), "-m", kModel, "-sm", "row"});
  CHECK(bad.exit_code == 1);
  CHECK(has(bad.err, "multi-GPU"));
  // --depth-fill random: the depth is imported random rows (the rows say so).
  const auto rnd = test::run_command({bin("moe-bench"), "-m", kModel, "-p", "0", "-n", "4", "-d", "64", "-r", "1", "-t",
                                      "1", "-o", "jsonl", "--depth-fill", "random"});
  REQUIRE_MESSAGE(rnd.exit_code == 0, rnd.err);
  const nlohmann::json row = nlohmann::json::parse(rnd.out.substr(0, rnd.out.find('\n')));
  CHECK(row["test"] == "tg4 @ d64 (random rows)");
  CHECK(row["avg_ts"].get<double>() > 0);
  const auto bad_fill = test::run_command({bin("moe-bench"), "-m", kModel, "--depth-fill", "zeros"});
  CHECK(bad_fill.exit_code != 0);
  CHECK(has(bad_fill.err, "--depth-fill"));
}

TEST_CASE("habits: -c above the model's context is allowed, with a warning") {
  const auto r = run_moe("-p 'And God said' -n 4 -c 600");
  CHECK_MESSAGE(r.exit_code == 0, r.err);
  CHECK(has(r.err, "-c 600 is more than the model was trained for (256 tokens)"));
  const auto quiet = run_moe("-p 'And God said' -n 4");  // the default -c is cut to the model's without a word
  CHECK_FALSE(has(quiet.err, "warning"));
}

TEST_CASE("habits: a failed write is an error, and a batch stops") {
  const auto plain = run_moe("-p 'And God said' -n 8", "< /dev/null > /dev/full");
  CHECK(plain.exit_code == 1);
  CHECK(has(plain.err, "cannot write to standard output"));
  const auto json = run_moe("-p 'And God said' -n 8 --json", "< /dev/null > /dev/full");
  CHECK(json.exit_code == 1);
  CHECK(has(json.err, "cannot write to standard output"));
  const std::string dir = test::temp_dir(), lines = dir + "/lines.txt";
  const std::string text = "And God said\nIn the beginning\nAnd the LORD\n";
  test::write_file(lines, text.data(), text.size());
  const auto batch = run_moe("-n 4 --batch " + test::shell_quote(lines), "> /dev/full");
  CHECK(batch.exit_code == 1);
  CHECK(has(batch.err, "cannot write to standard output"));
  CHECK_FALSE(has(batch.err, "answered"));
}

TEST_CASE("habits: the small surprises of a first session") {
  const std::string dir = test::temp_dir();
  // --batch on a directory, -p "" and bad numbers: errors, exit 1, no chat waiting for input.
  struct Bad {
    std::string args;
    const char* in_err;
  };
  for (const Bad& b : {Bad{"--batch " + test::shell_quote(dir), "is a directory"}, Bad{"-p ''", "prompt (-p) is empty"},
                       Bad{"-p Hi -s 99999999999999999999999", "the seed must be -1"},
                       Bad{"-p Hi -s -2", "the seed must be -1"}, Bad{"-p Hi -n -5", "-n"},
                       Bad{"-p Hi -c -1", "-c"}}) {
    CAPTURE(b.args);
    const auto r = run_moe(b.args);
    CHECK(r.exit_code == 1);
    CHECK(has(r.err, b.in_err));
  }
  CHECK(run_moe("-p Hi -s -1 -n 2").exit_code == 0);
  CHECK(run_moe("-p Hi -n -2 -c 24 -q").exit_code == 0);

  // A full context is reported as such.
  const auto ctx = run_moe("-p 'And God said' -n -1 -c 24 --ignore-eos --json");
  REQUIRE_MESSAGE(ctx.exit_code == 0, ctx.err);
  CHECK(nlohmann::json::parse(ctx.out)["finish_reason"] == "context");

  // A prompt exactly the size of the context is not "longer" than it.
  auto model = Deepseek2Model::load(kModel);
  const size_t n = Tokenizer::from_gguf(model->file()).encode("And God said unto Moses", true, true).size();
  const auto fills = run_moe("-p 'And God said unto Moses' -c " + std::to_string(n));
  CHECK(fills.exit_code == 1);
  CHECK(has(fills.err, "fills the context of " + std::to_string(n) + " tokens"));

  // Unknown JSONL keys: one warning per key.
  const std::string jsonl = dir + "/q.jsonl";
  const std::string lines = "{\"prompt\": \"And God\", \"n_predict\": 2, \"max_tokens\": 9}\n"
                            "{\"prompt\": \"In the\", \"n_predict\": 2, \"max_tokens\": 9}\n";
  test::write_file(jsonl, lines.data(), lines.size());
  const auto b = run_moe("--batch " + test::shell_quote(jsonl));
  CHECK(b.exit_code == 0);
  CHECK(count(b.err, "unknown key \"max_tokens\"") == 1);
}

TEST_CASE("habits: chat modes from a script: -st, -cnv -p, Ollama's /clear and /bye") {
  // -st -p: one answer, then exit, without reading stdin.
  const auto st = run_moe("-st -p 'And God said' -n 6 --temp 0", "< /dev/null");
  CHECK_MESSAGE(st.exit_code == 0, st.err);
  CHECK(count(st.err, "[prompt ") == 1);
  // -i -p: the -p text is the first message, then the chat goes on from stdin.
  const auto cnv = run_moe("-i -p 'And God said' -n 6 --temp 0", "<<'EOF'\nIn the beginning\n/clear\nAnd the LORD\n/bye\nnever read\nEOF");
  CHECK_MESSAGE(cnv.exit_code == 0, cnv.err);
  CHECK(count(cnv.err, "[prompt ") == 3);
  CHECK(has(cnv.out, "[conversation cleared]"));
}

TEST_CASE("habits: the default thread count is the physical cores this process may use") {
  const int n = default_thread_count();
  CHECK(n >= 1);
  CHECK(n <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}
