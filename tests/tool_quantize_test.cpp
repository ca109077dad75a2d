// moe-quantize against llama.cpp's llama-quantize.
//
// The reference is independent of our code: the llama.cpp fixture files
// (tiny-*.{Q8_0,Q4_K_M,Q6_K,Q4_0,F16}.gguf, made by llama-quantize) and
// tests/fixtures/llama-quantize-reference.json, written by
// scripts/make-quantize-reference.sh from the peer's llama-quantize: for each
// input and run, the type and FNV-1a hash of every output tensor and of the
// whole file. The plan (tensor types and order) is checked from that JSON
// alone, so it runs without the big fixtures; the tensor bytes need the
// fixture inputs and report skipped without them.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "convert/imatrix_file.h"
#include "convert/quantize_file.h"
#include "convert/quantize_plan.h"
#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "test_util.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using moe::FileType;
using moe::GgmlType;

constexpr bool kSanitized = moe::test::kAddressSanitizer;

std::string fnv1a64(const uint8_t* p, size_t n) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(moe::test::fnv1a64(p, n)));
  return buf;
}

const Json& reference() {
  static const Json j = [] {
    std::ifstream f(moe::test::local_fixture("llama-quantize-reference.json"));
    REQUIRE_MESSAGE(f.good(), "tests/fixtures/llama-quantize-reference.json is missing");
    return Json::parse(f);
  }();
  return j;
}

// The input a reference entry was made from: the shared fixtures, or the
// copy committed in tests/fixtures; "" when neither is here. A "derived-"
// input is made here the way the script made it with llama-quantize
// (derived-STEM.BF16.gguf from STEM.f32.gguf), in `dir`.
std::string input_path(const std::string& name, const std::string& dir) {
  if (name == "derived-kjv.f32.gguf") {  // the trained model in F32, as the script makes it
    const std::string out = dir + "/" + name;
    if (fs::exists(out)) return out;
    moe::QuantizeFileOptions o;
    o.progress = false;
    o.allow_requantize = true;
    o.plan.file_type = FileType::ALL_F32;
    moe::quantize_gguf_file(std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf", out, o);
    return out;
  }
  if (name.rfind("derived-", 0) == 0) {
    const std::string stem = name.substr(8, name.find('.') - 8);
    const std::string f32 = moe::test::shared_fixture("models/" + stem + ".f32.gguf");
    if (f32.empty()) return "";
    moe::QuantizeFileOptions o;
    o.progress = false;
    o.plan.file_type = FileType::MOSTLY_BF16;
    moe::quantize_gguf_file(f32, dir + "/" + name, o);
    return dir + "/" + name;
  }
  std::string p = moe::test::shared_fixture("models/" + name);
  if (p.empty() && fs::exists(moe::test::local_fixture(name))) p = moe::test::local_fixture(name);
  return p;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

// The fixtures' importance matrix (iq/NAME), filtered as --include-weights /
// --exclude-weights say; null when the shared fixtures are absent.
const moe::ImportanceMatrix* fixture_imatrix(const std::string& name, const std::vector<std::string>& include,
                                             const std::vector<std::string>& exclude) {
  static std::map<std::string, moe::ImportanceMatrix> cache;
  const std::string path = moe::test::shared_fixture("iq/" + name);
  if (path.empty()) return nullptr;
  const std::string key = name + "|" + joined(include) + "|" + joined(exclude);
  auto it = cache.find(key);
  if (it == cache.end()) {
    moe::ImportanceMatrix im = moe::load_importance_matrix(path);
    moe::filter_importance_matrix(im, include, exclude);
    it = cache.emplace(key, std::move(im)).first;
  }
  return &it->second;
}

// llama-quantize's command line (options..., TYPE) as our options. With
// --imatrix, o.imatrix is null when the shared fixtures are absent (the plan
// still knows one was given).
moe::QuantizeFileOptions options_from_args(const std::vector<std::string>& args) {
  moe::QuantizeFileOptions o;
  o.progress = false;
  o.n_threads = 2;
  std::vector<std::string> include, exclude;
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--pure") o.plan.pure = true;
    else if (args[i] == "--allow-requantize") o.allow_requantize = true;
    else if (args[i] == "--tensor-type") o.plan.overrides.push_back(moe::parse_type_override(args.at(++i)));
    else if (args[i] == "--imatrix") o.imatrix_path = args.at(++i);  // the name the file records
    else if (args[i] == "--include-weights") include.push_back(args.at(++i));
    else if (args[i] == "--exclude-weights") exclude.push_back(args.at(++i));
    else FAIL("unexpected option in the reference: " << args[i]);
  }
  if (!o.imatrix_path.empty()) {
    o.plan.has_imatrix = true;
    o.imatrix = fixture_imatrix(o.imatrix_path, include, exclude);
  }
  const auto ft = moe::parse_file_type(args.back());
  REQUIRE(ft.has_value());
  o.plan.file_type = *ft;
  return o;
}

// Checks a file we wrote against one reference run: same size and hash as a
// whole, and per tensor (in order) the same name, type and data hash.
void check_against_run(const std::string& path, const Json& model, const Json& run) {
  const moe::GgufFile f = moe::GgufFile::open(path);
  const auto& order = model["order"];
  REQUIRE(f.tensors().size() == order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    const moe::GgufTensorInfo& t = f.tensors()[i];
    INFO("tensor " << t.name);
    CHECK(t.name == order[i].get<std::string>());
    CHECK(std::string(moe::ggml_type_name(t.type)) == run["types"][i].get<std::string>());
    CHECK(fnv1a64(t.data, t.nbytes) == run["fnv1a64"][i].get<std::string>());
  }
  CHECK(f.get_u32("general.file_type") == run["file_type"].get<uint32_t>());
  CHECK(f.file_size() == run["file_size"].get<uint64_t>());
  CHECK(fnv1a64(f.file_data(), f.file_size()) == run["file_fnv1a64"].get<std::string>());
}

std::vector<uint8_t> read_all(const std::string& path) { return moe::test::read_file(path); }

std::vector<std::string> temp_files_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

// A small deepseek2-shaped GGUF with many tensors, for tests that need no
// particular values (refusals, interruption).
void write_synthetic_model(const std::string& path, int n_layer) {
  moe::GgufWriter w(path);
  w.set("general.architecture", moe::GgufValue::string("deepseek2"));
  w.set("deepseek2.block_count", moe::GgufValue::u32(static_cast<uint32_t>(n_layer)));
  w.set("general.file_type", moe::GgufValue::u32(0));
  std::vector<float> norm(256, 1.0f), mat(256 * 64);
  for (size_t i = 0; i < mat.size(); ++i) mat[i] = static_cast<float>(static_cast<int>(i % 97) - 48) / 50.0f;
  for (int l = 0; l < n_layer; ++l) {
    w.add_tensor(moe::strfmt("blk.%d.ffn_norm.weight", l), GgmlType::F32, {256});
    w.add_tensor(moe::strfmt("blk.%d.ffn_up.weight", l), GgmlType::F32, {256, 64});
  }
  w.begin();
  for (int l = 0; l < n_layer; ++l) {
    w.write_tensor_data(norm.data(), norm.size() * sizeof(float));
    w.write_tensor_data(mat.data(), mat.size() * sizeof(float));
  }
  w.finish();
}

std::string quantize_bin() { return moe::test::bin_dir() + "/moe-quantize"; }

}  // namespace

TEST_CASE("quantize plan: file type names and ids are parsed like llama-quantize") {
  // Ids from llama.cpp's include/llama.h (LLAMA_FTYPE_MOSTLY_*).
  CHECK(moe::parse_file_type("Q4_K_M") == FileType::MOSTLY_Q4_K_M);
  CHECK(static_cast<int>(*moe::parse_file_type("q4_k_m")) == 15);
  CHECK(static_cast<int>(*moe::parse_file_type("Q4_K")) == 15);  // alias
  CHECK(static_cast<int>(*moe::parse_file_type("q5_k")) == 17);
  CHECK(static_cast<int>(*moe::parse_file_type("Q3_K")) == 12);
  CHECK(static_cast<int>(*moe::parse_file_type("q8_0")) == 7);
  CHECK(static_cast<int>(*moe::parse_file_type("bf16")) == 32);
  CHECK(static_cast<int>(*moe::parse_file_type("F16")) == 1);
  CHECK(moe::parse_file_type("15") == FileType::MOSTLY_Q4_K_M);
  CHECK(moe::parse_file_type("7") == FileType::MOSTLY_Q8_0);
  CHECK(moe::parse_file_type("18") == FileType::MOSTLY_Q6_K);
  CHECK_FALSE(moe::parse_file_type("4").has_value());  // Q4_1_SOME_F16, removed
  CHECK_FALSE(moe::parse_file_type("Q4_K_X").has_value());
  CHECK_FALSE(moe::parse_file_type("").has_value());
  CHECK(std::string(moe::file_type_name(FileType::MOSTLY_Q4_K_M)) == "Q4_K_M");
  CHECK(moe::file_type_default_tensor_type(FileType::MOSTLY_Q3_K_L) == GgmlType::Q3_K);
  // Every IQ file type has its quantizers (some need --imatrix), and so does
  // MXFP4_MOE; the ternary and Q1_0/Q2_0 types do not.
  for (FileType ft : {FileType::MOSTLY_IQ1_S, FileType::MOSTLY_IQ1_M, FileType::MOSTLY_IQ2_XXS, FileType::MOSTLY_IQ2_XS,
                      FileType::MOSTLY_IQ2_S, FileType::MOSTLY_IQ2_M, FileType::MOSTLY_IQ3_XXS, FileType::MOSTLY_IQ3_XS,
                      FileType::MOSTLY_IQ3_S, FileType::MOSTLY_IQ3_M, FileType::MOSTLY_IQ4_NL, FileType::MOSTLY_IQ4_XS,
                      FileType::MOSTLY_Q2_K_S, FileType::MOSTLY_Q5_K_S, FileType::MOSTLY_MXFP4_MOE})
    CHECK_MESSAGE(moe::file_type_supported(ft), moe::file_type_name(ft));
  CHECK(static_cast<int>(*moe::parse_file_type("mxfp4_moe")) == 38);
  CHECK_FALSE(moe::file_type_supported(FileType::MOSTLY_TQ1_0));
  CHECK_FALSE(moe::file_type_supported(FileType::MOSTLY_Q1_0));
}

TEST_CASE("quantize plan: order and types match llama-quantize's for every reference run") {
  // Needs no tensor data: names, shapes, types and hyper-parameters only.
  int n_runs = 0;
  for (const auto& [input, model] : reference()["models"].items()) {
    moe::PlanModel pm;
    pm.arch = model["model"]["arch"].get<std::string>();
    pm.n_layer = model["model"]["n_layer"].get<uint32_t>();
    pm.n_expert = model["model"]["n_expert"].get<uint32_t>();
    pm.n_head = model["model"]["n_head"].get<uint32_t>();
    pm.n_head_kv = model["model"]["n_head_kv"].get<uint32_t>();
    std::vector<moe::PlanTensor> tensors;
    std::vector<std::string> names;
    for (const auto& t : model["tensors"]) {
      const auto type = moe::ggml_type_from_name(t[2].get<std::string>());
      REQUIRE(type.has_value());
      tensors.push_back({t[0].get<std::string>(), t[1].get<std::vector<int64_t>>(), *type});
      names.push_back(tensors.back().name);
    }
    std::vector<std::string> ordered;
    for (size_t i : moe::llama_tensor_order(names)) ordered.push_back(names[i]);
    CHECK(ordered == model["order"].get<std::vector<std::string>>());

    std::map<std::string, size_t> index;
    for (size_t i = 0; i < names.size(); ++i) index[names[i]] = i;
    for (const auto& run : model["runs"]) {
      const auto args = run["args"].get<std::vector<std::string>>();
      INFO(input << ": " << joined(args));
      const moe::QuantPlan plan = moe::plan_tensor_types(pm, tensors, options_from_args(args).plan);
      const auto& order = model["order"];
      for (size_t k = 0; k < order.size(); ++k) {
        const std::string name = order[k].get<std::string>();
        INFO("tensor " << name);
        CHECK(std::string(moe::ggml_type_name(plan.types.at(index.at(name)))) == run["types"][k].get<std::string>());
      }
      ++n_runs;
    }
  }
  CHECK(n_runs >= 60);
}

TEST_CASE("quantize plan: rows that do not fit a type fall back as llama-quantize's table says") {
  // tensor_type_fallback in llama-quant.cpp: Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0,
  // Q5_K -> Q5_1, Q6_K -> Q8_0, and F16 when 32-blocks do not fit either.
  const moe::PlanModel model{"deepseek2", 1, 0, 1, 1};
  auto type_of = [&](FileType ft, int64_t ncols) {
    moe::PlanOptions o;
    o.file_type = ft;
    o.pure = true;
    const auto plan = moe::plan_tensor_types(model, {{"blk.0.ffn_up.weight", {ncols, 8}, GgmlType::F32}}, o);
    return plan.types.at(0);
  };
  CHECK(type_of(FileType::MOSTLY_Q2_K, 96) == GgmlType::Q4_0);
  CHECK(type_of(FileType::MOSTLY_Q3_K_S, 96) == GgmlType::Q4_0);
  CHECK(type_of(FileType::MOSTLY_Q4_K_M, 96) == GgmlType::Q5_0);
  CHECK(type_of(FileType::MOSTLY_Q5_K_S, 96) == GgmlType::Q5_1);
  CHECK(type_of(FileType::MOSTLY_Q6_K, 96) == GgmlType::Q8_0);
  CHECK(type_of(FileType::MOSTLY_Q6_K, 48) == GgmlType::F16);
  CHECK(type_of(FileType::MOSTLY_Q8_0, 48) == GgmlType::F16);
  CHECK(type_of(FileType::MOSTLY_Q4_K_M, 512) == GgmlType::Q4_K);
  // Never quantized: 1-D tensors, biases, norms, the router.
  CHECK_FALSE(moe::tensor_allows_quantization("blk.1.exp_probs_b.bias", {16}));
  CHECK_FALSE(moe::tensor_allows_quantization("blk.1.ffn_gate_inp.weight", {256, 16}));
  CHECK_FALSE(moe::tensor_allows_quantization("blk.0.attn_kv_a_norm.weight", {128}));
  CHECK_FALSE(moe::tensor_allows_quantization("blk.0.ffn_up.weight", {256, 1}));  // 1-D once trimmed
  CHECK(moe::tensor_allows_quantization("blk.1.ffn_up_exps.weight", {256, 256, 16}));
}

TEST_CASE("moe-quantize: tensor data matches llama-quantize's reference hashes") {
  int n_checked = 0;
  std::vector<std::string> missing;
  const std::string dir = moe::test::temp_dir();
  for (const auto& [input, model] : reference()["models"].items()) {
    // The synthetic inputs (random data, made by the script to reach more
    // rules) are not kept: their plans are checked above, not their bytes.
    if (input.rfind("synthetic-", 0) == 0) continue;
    const std::string in = input_path(input, dir);
    if (in.empty()) {
      missing.push_back(input);
      continue;
    }
    size_t k = 0;
    for (const auto& run : model["runs"]) {
      // Under a sanitizer a quarter of the runs keeps this in seconds.
      if (kSanitized && k++ % 4 != 0) continue;
      const auto args = run["args"].get<std::vector<std::string>>();
      INFO(input << ": " << joined(args));
      const std::string out = dir + "/out.gguf";
      const moe::QuantizeFileOptions o = options_from_args(args);
      if (!o.imatrix_path.empty() && !o.imatrix) {
        missing.push_back("iq/" + o.imatrix_path);
        continue;
      }
      moe::quantize_gguf_file(in, out, o);
      check_against_run(out, model, run);
      ++n_checked;
    }
  }
  if (n_checked == 0) return moe::test::skip("no reference input found (shared fixtures absent)");
  if (!missing.empty()) MESSAGE("inputs absent, their runs not checked: " << joined(missing));
  CHECK(n_checked > 0);
}

TEST_CASE("moe-quantize: the command line reproduces the llama.cpp fixture files byte for byte") {
  const std::pair<const char*, const char*> cases[] = {
      {"tiny-dsv3.f32.gguf", "Q8_0"},   {"tiny-dsv3.f32.gguf", "Q4_K_M"},     {"tiny-dsv3.f32.gguf", "Q6_K"},
      {"tiny-dsv3.f32.gguf", "Q4_0"},   {"tiny-dsv2lite.f32.gguf", "Q8_0"}, {"tiny-dsv2lite.f32.gguf", "Q4_K_M"},
      {"tiny-dsv2lite.f32.gguf", "F16"},
  };
  const std::string dir = moe::test::temp_dir();
  int n = 0;
  for (const auto& [input, type] : cases) {
    const std::string in = moe::test::shared_fixture(std::string("models/") + input);
    std::string stem = input;
    stem = stem.substr(0, stem.find('.'));
    const std::string expected = moe::test::shared_fixture("models/" + stem + "." + type + ".gguf");
    if (in.empty() || expected.empty()) continue;
    INFO(input << " " << type);
    const std::string out = dir + "/" + stem + "." + type + ".gguf";
    const auto r = moe::test::run_command({quantize_bin(), in, out, type, "-t", "2"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    CHECK(r.out.find("quant size") != std::string::npos);  // the summary
    CHECK(read_all(out) == read_all(expected));
    ++n;
  }
  if (n == 0) return moe::test::skip("shared fixtures absent");
  CHECK(n == 7);
}

TEST_CASE("moe-quantize: --pure, --tensor-type and -v on the command line") {
  const Json& model = reference()["models"]["tiny-dsv3.f32.gguf"];
  const std::string dir = moe::test::temp_dir();
  const std::string in = input_path("tiny-dsv3.f32.gguf", dir);
  if (in.empty()) return moe::test::skip("shared fixtures absent (tiny-dsv3.f32.gguf)");
  int n = 0;
  for (const auto& run : model["runs"]) {
    const auto args = run["args"].get<std::vector<std::string>>();
    if (args.size() < 2) continue;  // plain runs are covered in-process
    INFO(joined(args));
    std::vector<std::string> argv = {quantize_bin(), in, dir + "/out.gguf", args.back(), "-t", "2", "-v"};
    argv.insert(argv.end(), args.begin(), args.end() - 1);
    const auto r = moe::test::run_command(argv);
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    // -v: one line per tensor, as llama-quantize prints them.
    CHECK(r.out.find("blk.1.ffn_gate_inp.weight") != std::string::npos);
    check_against_run(dir + "/out.gguf", model, run);
    ++n;
  }
  CHECK(n >= 4);
}

TEST_CASE("moe-quantize: refuses bad input with a clear error and writes nothing") {
  const std::string dir = moe::test::temp_dir();
  const std::string in = dir + "/synthetic.gguf";
  write_synthetic_model(in, 2);
  const std::string out = dir + "/out.gguf";

  SUBCASE("unknown type name") {
    const auto r = moe::test::run_command({quantize_bin(), in, out, "Q4_K_X"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("unknown quantization type 'Q4_K_X'") != std::string::npos);
    CHECK(r.err.find("Q4_K_M") != std::string::npos);  // lists what is accepted
  }
  SUBCASE("type without a quantizer") {
    const auto r = moe::test::run_command({quantize_bin(), in, out, "TQ1_0"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("not supported") != std::string::npos);
  }
  SUBCASE("bad --tensor-type") {
    const auto r = moe::test::run_command({quantize_bin(), in, out, "Q8_0", "--tensor-type", "ffn_up=q9_9"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("unknown type 'q9_9'") != std::string::npos);
  }
  SUBCASE("missing input file") {
    const auto r = moe::test::run_command({quantize_bin(), dir + "/nope.gguf", out, "Q8_0"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("nope.gguf") != std::string::npos);
  }
  SUBCASE("already quantized input without --allow-requantize") {
    const std::string q = moe::test::local_fixture("tiny-dsv3.Q4_K_M.gguf");
    REQUIRE(fs::exists(q));
    const auto r = moe::test::run_command({quantize_bin(), q, out, "Q4_0"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("already quantized") != std::string::npos);
    CHECK(r.err.find("--allow-requantize") != std::string::npos);
  }
  CHECK_FALSE(fs::exists(out));
  CHECK(temp_files_in(dir).empty());
}

TEST_CASE("moe-quantize: SIGTERM halfway leaves the previous output untouched and no temporary file") {
  const std::string dir = moe::test::temp_dir();
  const std::string in = dir + "/synthetic.gguf";
  write_synthetic_model(in, 24);  // 48 tensors, 50 ms each with the test hook
  const std::string out = dir + "/out.gguf";
  const std::vector<uint8_t> previous = {'o', 'l', 'd', '\n'};
  moe::test::write_file(out, previous);

  std::vector<std::string> args = {quantize_bin(), in, out, "Q8_0", "-t", "1"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string slow = "MOE_TEST_SLOW_MS=50";
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) envp.push_back(*e);
  envp.push_back(slow.data());
  envp.push_back(nullptr);

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  // Wait until the temporary output exists (the header is written and the
  // tensors are being converted), then a little more, then interrupt.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (temp_files_in(dir).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const bool started = !temp_files_in(dir).empty();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);

  CHECK(started);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 128 + SIGTERM);
  CHECK(read_all(out) == previous);
  CHECK(temp_files_in(dir).empty());

  // Without the interruption the same command completes.
  const auto r = moe::test::run_command(args);
  CHECK(r.exit_code == 0);
  CHECK(moe::GgufFile::open(out).tensors().size() == 48);
}
