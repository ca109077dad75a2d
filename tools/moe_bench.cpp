// moe-bench: prompt-processing and generation speed, as llama-bench measures
// them, so the two tables can be read side by side.
//
//   moe-bench -m model.gguf [-p 512] [-n 128] [-t N] [-r 3] [--json]
//
// ppN: N random tokens evaluated as one batch into an empty cache.
// tgN: N tokens evaluated one at a time into an empty cache.
// Each test runs once untimed (warm-up: page cache, thread pool), then -r
// timed repetitions; the table shows mean ± sample standard deviation.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <thread>

#include "cli/run_flags.h"
#include "core/error.h"
#include "cpu/matmul.h"
#include "cpu/qdot.h"
#include "model/deepseek2.h"

using namespace moe;

namespace {

struct Test {
  std::string name;
  int64_t n_prompt = 0;
  int64_t n_gen = 0;
  std::vector<double> tok_per_s;
  double mean() const {
    double s = 0;
    for (double v : tok_per_s) s += v;
    return tok_per_s.empty() ? 0 : s / static_cast<double>(tok_per_s.size());
  }
  double stddev() const {
    if (tok_per_s.size() < 2) return 0;
    const double m = mean();
    double s = 0;
    for (double v : tok_per_s) s += (v - m) * (v - m);
    return std::sqrt(s / static_cast<double>(tok_per_s.size() - 1));
  }
};

double run_once(Deepseek2Session& session, const Test& t, std::mt19937& rng, int64_t n_vocab, std::vector<float>& logits) {
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(n_vocab - 1));
  session.reset();
  const auto t0 = std::chrono::steady_clock::now();
  if (t.n_prompt > 0) {
    std::vector<int32_t> prompt(static_cast<size_t>(t.n_prompt));
    for (int32_t& x : prompt) x = tok(rng);
    session.forward(prompt.data(), t.n_prompt, logits.data(), false);
  }
  for (int64_t i = 0; i < t.n_gen; ++i) {
    const int32_t x = tok(rng);
    session.forward(&x, 1, logits.data(), false);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(t.n_prompt + t.n_gen) / s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-bench: prompt and generation tokens/s of a GGUF model"};
  std::string path;
  int n_prompt = 512, n_gen = 128, reps = 3, n_batch = 512;
  int n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool json = false, expert_load = false;
  app.add_option("-m,--model", path, "GGUF model file")->required();
  app.add_option("-p,--n-prompt", n_prompt, "prompt tokens (0: no prompt test)")->check(CLI::Range(0, 1 << 20));
  app.add_option("-n,--n-gen", n_gen, "generated tokens (0: no generation test)")->check(CLI::Range(0, 1 << 20));
  app.add_option("-b,--batch-size", n_batch, "batch size")->check(CLI::Range(1, 1 << 16));
  app.add_option("-t,--threads", n_threads, "threads")->check(CLI::Range(1, 1024));
  app.add_option("-r,--repetitions", reps, "timed repetitions per test")->check(CLI::Range(1, 1000));
  app.add_flag("--json", json, "print the results as JSON");
  app.add_flag("--expert-load", expert_load, "print per-layer routed-expert load (max / mean choices) to stderr");
  RunFlags run;
  add_run_flags(app, run);
  LlamaFlagArgs args(argc, argv);
  CLI11_PARSE(app, args.argc(), args.argv());
  try {
    auto model = Deepseek2Model::load(path);
    const Deepseek2Config& c = model->config();
    std::vector<Test> tests;
    if (n_prompt > 0) tests.push_back({"pp" + std::to_string(n_prompt), n_prompt, 0, {}});
    if (n_gen > 0) tests.push_back({"tg" + std::to_string(n_gen), 0, n_gen, {}});
    const int64_t n_ctx = std::max<int64_t>(n_prompt, n_gen) + 1;
    Deepseek2Session session(*model, run.session(n_ctx, n_batch, n_threads));
    print_placement(session, "moe-bench");
    std::vector<float> logits(static_cast<size_t>(c.vocab_size));
    std::mt19937 rng(42);
    for (Test& t : tests) {
      run_once(session, t, rng, c.vocab_size, logits);  // warm-up
      for (int r = 0; r < reps; ++r) t.tok_per_s.push_back(run_once(session, t, rng, c.vocab_size, logits));
    }
    if (expert_load && c.n_routed_experts > 0) {
      const auto& counts = session.expert_counts();
      const int64_t E = c.n_routed_experts;
      for (int64_t il = c.first_k_dense_replace; il < c.num_hidden_layers; ++il) {
        uint64_t mx = 0, total = 0;
        for (int64_t e = 0; e < E; ++e) mx = std::max(mx, counts[static_cast<size_t>(il * E + e)]), total += counts[static_cast<size_t>(il * E + e)];
        std::fprintf(stderr, "expert load: layer %3lld: max/mean %.2f (%llu choices)\n", static_cast<long long>(il),
                     total ? static_cast<double>(mx) * static_cast<double>(E) / static_cast<double>(total) : 0.0,
                     static_cast<unsigned long long>(total));
      }
    }
    write_expert_stats(run, session, "moe-bench");
    const double size_gib = static_cast<double>(model->file().file_size()) / (1024.0 * 1024.0 * 1024.0);
    const char* isa = cpu_isa_name(cpu_isa_active());
    // llama-bench's backend column: "CPU AVX512-VNNI", or "CPU-device+CPU" when split.
    const ExpertPlacement& plan = session.placement();
    const std::string backend =
        plan.device_active ? plan.device_name + "+" + plan.host_name : std::string("CPU ") + isa;
    if (json) {
      nlohmann::json out = nlohmann::json::array();
      for (const Test& t : tests)
        out.push_back({{"model", path}, {"size_bytes", model->file().file_size()}, {"backend", backend},
                       {"threads", n_threads}, {"n_prompt", t.n_prompt}, {"n_gen", t.n_gen}, {"test", t.name},
                       {"avg_ts", t.mean()}, {"stddev_ts", t.stddev()}, {"samples_ts", t.tok_per_s},
                        {"backends", session.backends_description()}, {"placement", session.placement().to_json()}});
      std::printf("%s\n", out.dump(2).c_str());
      return 0;
    }
    std::printf("| %-40s | %10s | %-16s | %7s | %8s | %20s |\n", "model", "size", "backend", "threads", "test", "t/s");
    std::printf("| %.40s | %.10s | %.16s | %.7s | %.8s | %.20s |\n", "----------------------------------------",
                "----------", "----------------", "-------", "--------", "--------------------");
    std::string name = path.substr(path.find_last_of('/') + 1);
    for (const Test& t : tests)
      std::printf("| %-40.40s | %6.2f GiB | %-16s | %7d | %8s | %11.2f ± %6.2f |\n", name.c_str(), size_gib, backend.c_str(),
                  n_threads, t.name.c_str(), t.mean(), t.stddev());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-bench: error: %s\n", e.what());
    return 1;
  }
}
