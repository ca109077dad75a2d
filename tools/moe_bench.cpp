// moe-bench: prompt-processing and generation speed, as llama-bench measures
// them and with its flags, so the two tables can be read side by side and
// scripts written for one run the other.
//
//   moe-bench -m model.gguf [-p 512[,1024]] [-n 128] [-pg 512,128] [-d 0[,8192]]
//             [-t N[,N]] [-r 3] [-o md|json|jsonl|csv] [--json]
//
// ppN: N random tokens evaluated as one batch. tgN: N tokens evaluated one at
// a time. ppN+tgM: both, counted together. With -d D every test starts from a
// cache already holding D tokens (filled untimed before each repetition),
// "@ dD" in the test name. Each test runs once untimed (warm-up: page cache,
// thread pool), then -r timed repetitions; the table shows mean ± sample
// standard deviation.
//
// Speculative decoding with the model's MTP module:
//   moe-bench -m model.gguf -p 0 -n 128 --spec-type draft-mtp [--spec-draft-n-max 1[,2]] [--spec-accept A[,A]]
// adds "tgN mtpK" beside every tgN: N tokens generated greedily, K drafts per
// step verified in one pass, the drafts kept while they equal the model's
// choice (the acceptance column of json/jsonl/csv, and in the md test name).
// --spec-accept A instead keeps each draft with probability A (a file with
// random weights drafts nothing useful; this measures what verification
// costs at its shape, and where acceptance breaks even); -1: the model's own.
//
// Batched mode, as llama-batched-bench measures it (its flags):
//   moe-bench -m model.gguf -npl 1,4,8,16 [-npp 128] [-ntg 128] [-t N] [-r 3]
// For each B: B sequences each read a prompt of npp tokens (each prompt in
// chunks of its own, as `moe --batch -np` evaluates them), then generate
// ntg tokens together, one token of every sequence per step. The table
// gives the aggregate prompt and generation tokens/s (S_PP, S_TG).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cmath>
#include <cstdio>
#include <random>

#include "cli/command_line.h"
#include "cli/run_flags.h"
#include "cli/tool_model.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/thread_pool.h"
#include "cpu/latent_rows.h"
#include "cpu/matmul.h"
#include "cpu/qdot.h"
#include "model/deepseek2.h"
#include "model/deepseek4.h"
#include "runtime/backend_registry.h"

using namespace moe;

namespace {

struct Test {
  int64_t n_prompt = 0, n_gen = 0, n_depth = 0;
  int threads = 1;
  std::vector<double> tok_per_s;
  int spec_draft_n = 0;       // > 0: generation with MTP drafts
  double spec_accept = -1;    // simulated acceptance; -1: the model's greedy agreement
  int64_t drafted = 0, accepted = 0;
  bool random_depth = false;  // --depth-fill random: the depth is random cache rows
  std::string name() const {
    std::string s = n_prompt > 0 && n_gen > 0 ? strfmt("pp%lld+tg%lld", static_cast<long long>(n_prompt),
                                                       static_cast<long long>(n_gen))
                    : n_prompt > 0 ? strfmt("pp%lld", static_cast<long long>(n_prompt))
                                   : strfmt("tg%lld", static_cast<long long>(n_gen));
    if (spec_draft_n > 0) {
      s += strfmt(" mtp%d", spec_draft_n);
      s += spec_accept >= 0 ? strfmt(" a=%.2f", spec_accept) : strfmt(" a:%.2f", acceptance());
    }
    if (n_depth > 0) s += strfmt(" @ d%lld%s", static_cast<long long>(n_depth), random_depth ? " (random rows)" : "");
    return s;
  }
  double acceptance() const { return drafted > 0 ? static_cast<double>(accepted) / static_cast<double>(drafted) : 0; }
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

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    out.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return out;
}

std::vector<int> parse_list(const std::string& flag, const std::string& text, int min) {
  std::vector<int> out;
  for (const std::string& item : split_commas(text)) {
    char* e = nullptr;
    const long v = std::strtol(item.c_str(), &e, 10);
    if (item.empty() || *e != '\0' || v < min || v > (1 << 24))
      throw_error("%s '%s': expected whole numbers from %d, separated by commas", flag.c_str(), text.c_str(), min);
    out.push_back(static_cast<int>(v));
  }
  return out;
}

// --spec-accept: probabilities in [0, 1], or -1.
std::vector<double> parse_accept(const std::string& text) {
  std::vector<double> out;
  for (const std::string& item : split_commas(text)) {
    char* e = nullptr;
    const double v = std::strtod(item.c_str(), &e);
    if (item.empty() || *e != '\0' || !(v == -1.0 || (v >= 0.0 && v <= 1.0)))
      throw_error("--spec-accept '%s': expected probabilities from 0 to 1 (or -1), separated by commas", text.c_str());
    out.push_back(v);
  }
  return out;
}

std::vector<int32_t> random_tokens(int64_t n, std::mt19937& rng, int64_t n_vocab) {
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(n_vocab - 1));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = tok(rng);
  return v;
}

// A depth evaluated once and kept (as llama-bench keeps the state of its
// depth run): later repetitions, and other tests at that depth, load it
// instead of evaluating it again (a saved cache, InferenceSession::
// saved_cache_export). The state is the same, so is what they time.
struct DepthState {
  int64_t depth = -1;
  PromptCacheData data;
};

// The first n_depth positions of the cache before a test: an evaluated
// random prompt (kept in `keep` when given), or (random_rows, --depth-fill
// random) random cache rows imported as a saved prompt cache is. Attention
// and the V3.2 indexer cost the same over either, and the rows take no time
// to fill, so generation at 32k of context is measurable on a machine where
// the prompt would take hours.
void fill_depth(InferenceSession& s, int64_t n_depth, bool random_rows, std::mt19937& rng, int64_t n_vocab,
                std::vector<float>& logits, DepthState* keep = nullptr) {
  s.reset();
  if (n_depth <= 0) return;
  if (!random_rows) {
    if (keep && keep->depth == n_depth) return s.saved_cache_import(keep->data, n_depth);
    const std::vector<int32_t> fill = random_tokens(n_depth, rng, n_vocab);
    s.forward(fill.data(), n_depth, logits.data(), false);
    if (keep) {
      keep->data = PromptCacheData{};
      keep->data.tokens = fill;
      s.saved_cache_export(n_depth, keep->data);
      keep->depth = n_depth;
    }
    return;
  }
  // A row: the latent values in the cache's type (-ctk), then V3.2's index key in f32.
  Deepseek2Session& session = dynamic_cast<Deepseek2Session&>(s);  // main() refuses random rows for others
  const Deepseek2Config& c = session.model().config();
  const int64_t latent = c.kv_lora_rank + c.qk_rope_head_dim, W = session.cache_row_floats();
  const int64_t stored = LatentCache::storage_cols(session.cache_type(), latent);
  std::vector<float> rows(static_cast<size_t>(c.num_hidden_layers * n_depth * W)), x(static_cast<size_t>(latent));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t r = 0; r < c.num_hidden_layers * n_depth; ++r) {
    float* row = rows.data() + r * W;
    for (float& v : x) v = normal(rng);
    latent_row_encode(session.cache_type(), x.data(), latent, row);
    for (int64_t i = stored; i < W; ++i) row[i] = normal(rng);
  }
  session.cache_import(0, n_depth, rows.data(), n_depth);
}

double run_once(InferenceSession& session, const Test& t, std::mt19937& rng, int64_t n_vocab, std::vector<float>& logits,
                DepthState* keep = nullptr) {
  fill_depth(session, t.n_depth, t.random_depth, rng, n_vocab, logits, keep);
  const std::vector<int32_t> prompt = random_tokens(t.n_prompt, rng, n_vocab);
  const std::vector<int32_t> gen = random_tokens(t.n_gen, rng, n_vocab);
  const auto t0 = std::chrono::steady_clock::now();
  if (t.n_prompt > 0) session.forward(prompt.data(), t.n_prompt, logits.data(), false);
  for (int64_t i = 0; i < t.n_gen; ++i) session.forward(&gen[static_cast<size_t>(i)], 1, logits.data(), false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(t.n_prompt + t.n_gen) / s;
}

// The test without its depth: the warm-up.
Test at_depth_0(const Test& t) {
  Test w = t;
  w.n_depth = 0;
  return w;
}

int32_t argmax(const float* v, int64_t n) { return static_cast<int32_t>(std::max_element(v, v + n) - v); }

// tgN with MTP drafts (t.spec_draft_n per step): greedy generation from a
// random token, each step drafting, verifying [next, drafts] in one pass and
// keeping the agreeing drafts (or, with t.spec_accept >= 0, each draft with
// that probability, the cache kept as if they agreed).
double run_once_spec(InferenceSession& session, Test& t, std::mt19937& rng, int64_t n_vocab, std::vector<float>& rows) {
  fill_depth(session, t.n_depth, t.random_depth, rng, n_vocab, rows);
  const int32_t first = random_tokens(1, rng, n_vocab)[0];
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  std::vector<int32_t> step(static_cast<size_t>(t.spec_draft_n + 1));
  const auto t0 = std::chrono::steady_clock::now();
  session.forward(&first, 1, rows.data(), false);
  int64_t produced = 1;
  int32_t next = argmax(rows.data(), n_vocab);
  while (produced < t.n_gen) {
    const int64_t want = std::min<int64_t>(t.spec_draft_n, t.n_gen - produced - 1);
    const int64_t k = want > 0 ? session.mtp_draft(0, next, want, step.data() + 1) : 0;
    if (k == 0) {
      session.forward(&next, 1, rows.data(), false);
      ++produced;
      next = argmax(rows.data(), n_vocab);
      continue;
    }
    step[0] = next;
    const int64_t p = session.n_past();
    session.forward_verify(step.data(), k + 1, rows.data());
    int64_t a = 0;
    while (a < k && (t.spec_accept >= 0 ? u01(rng) < t.spec_accept
                                        : argmax(rows.data() + a * n_vocab, n_vocab) == step[static_cast<size_t>(a + 1)]))
      ++a;
    session.truncate(p + 1 + a);
    t.drafted += k;
    t.accepted += a;
    produced += a + 1;
    next = argmax(rows.data() + a * n_vocab, n_vocab);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(produced) / s;
}

struct BatchedResult {
  int64_t b = 0;
  double t_pp = 0, t_tg = 0;  // seconds, mean over repetitions
};

// One llama-batched-bench row: B sequences, prompts of npp, ntg steps.
BatchedResult run_batched(const Deepseek2Model& model, const RunFlags& run, int64_t b, int64_t npp, int64_t ntg,
                          int64_t n_batch, int threads, int reps, std::mt19937& rng) {
  SessionOptions o = run.session(npp + ntg + 1, n_batch, threads);
  o.n_seq = b;
  Deepseek2Session s(model, o);
  const int64_t V = model.config().vocab_size;
  std::vector<float> logits(static_cast<size_t>(b * V));
  BatchedResult r{b, 0, 0};
  for (int rep = 0; rep <= reps; ++rep) {  // rep 0: warm-up
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t k = 0; k < b; ++k) prompts.push_back(random_tokens(npp, rng, V));
    s.reset();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t k = 0; k < b && npp > 0; ++k)
      for (int64_t done = 0; done < npp;) {
        const int64_t n = std::min(n_batch, npp - done);
        s.forward_spans(prompts[static_cast<size_t>(k)].data() + done, {{static_cast<int32_t>(k), n, done + n == npp}},
                        logits.data());
        done += n;
      }
    const auto t1 = std::chrono::steady_clock::now();
    std::vector<SeqSpan> spans;
    for (int64_t k = 0; k < b; ++k) spans.push_back({static_cast<int32_t>(k), 1, true});
    for (int64_t i = 0; i < ntg; ++i) {
      const std::vector<int32_t> step = random_tokens(b, rng, V);
      s.forward_spans(step.data(), spans, logits.data());
    }
    const auto t2 = std::chrono::steady_clock::now();
    if (rep == 0) continue;
    r.t_pp += std::chrono::duration<double>(t1 - t0).count() / reps;
    r.t_tg += std::chrono::duration<double>(t2 - t1).count() / reps;
  }
  return r;
}

// The results as llama-bench prints them (md, json, jsonl or csv).
// Where the weights were: mapped (llama-bench's use_mmap) or read, and how
// many tensors were repacked for the CPU's kernels.
struct WeightState {
  bool use_mmap = true;
  size_t repacked = 0;
};

void print_tests(const std::vector<Test>& tests, const std::string& path, uint64_t size_bytes, const std::string& backend,
                 const std::string& backends, const nlohmann::json& placement, const std::string& output,
                 WeightState weights) {
  const double size_gib = static_cast<double>(size_bytes) / (1024.0 * 1024.0 * 1024.0);
  const std::string name = path.substr(path.find_last_of('/') + 1);
  auto record = [&](const Test& t) {
    return nlohmann::json{{"model", path}, {"size_bytes", size_bytes}, {"backend", backend},
                          {"threads", t.threads}, {"n_prompt", t.n_prompt}, {"n_gen", t.n_gen},
                          {"n_depth", t.n_depth}, {"test", t.name()}, {"avg_ts", t.mean()},
                          {"stddev_ts", t.stddev()}, {"samples_ts", t.tok_per_s},
                          {"spec_draft_n", t.spec_draft_n}, {"spec_accept", t.spec_accept},
                          {"spec_acceptance", t.acceptance()},
                          {"backends", backends}, {"placement", placement}, {"use_mmap", weights.use_mmap},
                          {"repacked_tensors", weights.repacked}};
  };
  if (output == "json") {
    nlohmann::json out = nlohmann::json::array();
    for (const Test& t : tests) out.push_back(record(t));
    std::printf("%s\n", out.dump(2).c_str());
  } else if (output == "jsonl") {
    for (const Test& t : tests) std::printf("%s\n", record(t).dump().c_str());
  } else if (output == "csv") {
    std::printf("model,size_bytes,backend,threads,n_prompt,n_gen,n_depth,test,avg_ts,stddev_ts\n");
    for (const Test& t : tests)
      std::printf("\"%s\",%llu,\"%s\",%d,%lld,%lld,%lld,\"%s\",%.6f,%.6f\n", path.c_str(),
                  static_cast<unsigned long long>(size_bytes), backend.c_str(), t.threads,
                  static_cast<long long>(t.n_prompt), static_cast<long long>(t.n_gen),
                  static_cast<long long>(t.n_depth), t.name().c_str(), t.mean(), t.stddev());
  } else {
    std::printf("| %-40s | %10s | %-16s | %7s | %14s | %20s |\n", "model", "size", "backend", "threads", "test", "t/s");
    std::printf("| %.40s | %.10s | %.16s | %.7s | %.14s | %.20s |\n", "----------------------------------------",
                "----------", "----------------", "-------", "--------------", "--------------------");
    for (const Test& t : tests)
      std::printf("| %-40.40s | %6.2f GiB | %-16s | %7d | %14s | %11.2f ± %6.2f |\n", name.c_str(), size_gib,
                  backend.c_str(), t.threads, t.name().c_str(), t.mean(), t.stddev());
  }
  if (std::fflush(stdout) != 0) throw_error("cannot write to standard output");
}

// llama-bench's backend column: "CPU AVX512-VNNI", or "CPU-device+CPU" when split.
std::string backend_column(const ExpertPlacement& plan) {
  return plan.device_active ? plan.device_name + "+" + plan.host_name
                            : std::string("CPU ") + cpu_isa_name(cpu_isa_active());
}

// Every test on sessions of `model` made from the run flags, one per
// thread count (on_session(session, threads, first) when one starts; the
// last is returned, for its placement and statistics). Tests with drafts
// run on a session with the MTP module (which follows every position), the
// others on one without.
template <typename Session, typename Model>
std::unique_ptr<Session> run_tests(const Model& model, int64_t n_vocab, std::vector<Test>& tests, const RunFlags& run,
                                   int n_batch, int reps, bool progress,
                                   const std::function<void(const Session&, int, bool)>& on_session) {
  int64_t n_ctx = 1;
  int max_spec = 0;
  for (const Test& t : tests) {
    n_ctx = std::max(n_ctx, t.n_depth + t.n_prompt + t.n_gen + 1);
    max_spec = std::max(max_spec, t.spec_draft_n);
  }
  std::vector<float> logits(static_cast<size_t>(n_vocab * (max_spec + 1)));
  std::mt19937 rng(42);
  std::unique_ptr<Session> session, spec_session;
  int session_threads = 0;
  DepthState depth;
  for (Test& t : tests) {
    if (!session || session_threads != t.threads) {
      session.reset();
      spec_session.reset();
      session = std::make_unique<Session>(model, run.session(n_ctx, n_batch, t.threads));
      on_session(*session, t.threads, session_threads == 0);
      session_threads = t.threads;
    }
    if (t.spec_draft_n > 0 && !spec_session) {
      SessionOptions so = run.session(n_ctx, n_batch, t.threads);
      so.mtp = true;
      spec_session = std::make_unique<Session>(model, so);
    }
    if (progress) std::fprintf(stderr, "moe-bench: %s, %d threads\n", t.name().c_str(), t.threads);
    if (t.spec_draft_n > 0) {
      run_once_spec(*spec_session, t, rng, n_vocab, logits);  // warm-up
      t.drafted = t.accepted = 0;
      for (int r = 0; r < reps; ++r) t.tok_per_s.push_back(run_once_spec(*spec_session, t, rng, n_vocab, logits));
      continue;
    }
    run_once(*session, at_depth_0(t), rng, n_vocab, logits);  // warm-up (as llama-bench: without the depth)
    for (int r = 0; r < reps; ++r)
      t.tok_per_s.push_back(run_once(*session, t, rng, n_vocab, logits, t.random_depth ? nullptr : &depth));
  }
  return session;
}

// DeepSeek-V4 files: the same tests on Deepseek4Sessions. With -md (the MTP
// companion), tests with drafts run on a session with the module.
int bench_deepseek4(const std::string& path, const std::string& mtp_path, WeightMemory memory,
                    std::vector<Test>& tests, int n_batch, int reps, const RunFlags& run, const std::string& output,
                    bool progress) {
  auto model = Deepseek4Model::load(path, memory);
  if (!mtp_path.empty()) model->attach_mtp(mtp_path);
  const std::unique_ptr<Deepseek4Session> session = run_tests<Deepseek4Session>(
      *model, model->config().vocab_size, tests, run, n_batch, reps, progress,
      [](const Deepseek4Session& s, int, bool first) {
        if (first) print_placement(s, "moe-bench");
      });
  const ExpertPlacement& plan = session ? session->placement() : ExpertPlacement{};
  print_tests(tests, path, model->file().total_size(), backend_column(plan),
              session ? session->backends_description() : "", plan.to_json(), output,
              WeightState{model->file().mappings().front()->mapped(), 0});
  if (session) write_expert_stats(run, *session, "moe-bench");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"moe-bench: prompt and generation tokens/s of a GGUF model (llama-bench's flags)"};
  std::string path, prompts = "512", gens = "128", threads_arg = std::to_string(default_thread_count()), depths = "0";
  std::vector<std::string> pgs;
  std::string output = "md";
  int reps = 3, n_batch = 2048, n_ubatch = 512, mmap = -1, repack = 1;
  bool json = false, expert_load = false, verbose = false, progress = false;
  RunFlags run;
  std::string npl;
  int npp = 128, ntg = 128;
  std::string spec_type = "none", spec_n = "1", spec_accept = "-1";
  std::string depth_fill = "eval", model_draft;
  app.add_option("-m,--model", path, "GGUF model file")->required();
  app.add_option("--model-draft", model_draft,
                 "-md: deepseek4: the model's MTP companion GGUF, for --spec-type draft-mtp");
  app.add_option("--npl", npl, "-npl B[,B]: batched mode, B sequences at once (llama-batched-bench)");
  app.add_option("--npp", npp, "-npp: batched mode, prompt tokens per sequence")->check(CLI::Range(0, 1 << 20));
  app.add_option("--ntg", ntg, "-ntg: batched mode, generated tokens per sequence")->check(CLI::Range(0, 1 << 20));
  app.add_option("-p,--n-prompt", prompts, "prompt tokens, comma-separated (0: no prompt test)");
  app.add_option("-n,--n-gen", gens, "generated tokens, comma-separated (0: no generation test)");
  app.add_option("--n-gen-prompt", pgs, "-pg PP,TG: a prompt of PP tokens then TG generated, counted together")
      ->allow_extra_args(false);
  app.add_option("--n-depth", depths, "-d: tokens already in the cache when each test starts, comma-separated");
  app.add_option("--depth-fill", depth_fill,
                 "eval: -d evaluates a random prompt; random: it imports random cache rows instead (no prompt time, "
                 "the same attention cost: long depths on slow machines)")
      ->check(CLI::IsMember({"eval", "random"}));
  app.add_option("-b,--batch-size", n_batch, "batch size")->check(CLI::Range(1, 1 << 16));
  app.add_option("--ubatch-size", n_ubatch, "-ub: tokens per step (the smaller of -b and -ub is used)")
      ->check(CLI::Range(1, 1 << 16));
  app.add_option("-t,--threads", threads_arg, "threads, comma-separated");
  app.add_option("-r,--repetitions", reps, "timed repetitions per test")->check(CLI::Range(1, 1000));
  app.add_option("-o,--output", output, "output format: md, json, jsonl or csv")
      ->check(CLI::IsMember({"md", "json", "jsonl", "csv"}));
  app.add_flag("--json", json, "the same as -o json");
  app.add_option("--mmap", mmap,
                 "-mmp 0|1: map the model (1) or read it into memory (0); default: as moe does (read it when twice "
                 "its size fits in the available memory)")
      ->check(CLI::Range(0, 1));
  app.add_option("--repack", repack,
                 "0|1: with the model read into memory, repack its Q4_K/Q5_0/Q8_0 experts and layer products for this CPU's kernels (1, "
                 "the default, as moe does where the CPU has them) or keep the file's layout (0)")
      ->check(CLI::Range(0, 1));
  app.add_option("--spec-type", spec_type, "none, or draft-mtp: add tgN with drafts from the model's MTP module")
      ->check(CLI::IsMember({"none", "draft-mtp"}));
  app.add_option("--spec-draft-n-max", spec_n, "with --spec-type draft-mtp: drafts per step, comma-separated");
  app.add_option("--spec-accept", spec_accept,
                 "with --spec-type draft-mtp: keep each draft with this probability (comma-separated; -1: when it "
                 "equals the model's greedy choice)");
  app.add_flag("-v,--verbose", verbose, "the backends and placement on stderr");
  app.add_flag("--progress", progress, "a line on stderr as each test starts");
  app.add_flag("--expert-load", expert_load, "print per-layer routed-expert load (max / mean choices) to stderr");
  add_run_flags(app, run);
  FlagTable flags = llama_common_flags();
  take_model_draft_flag(flags);  // a V4 model's MTP companion
  flags.aliases.insert({{"-pg", "--n-gen-prompt"}, {"-d", "--n-depth"}, {"-mmp", "--mmap"}, {"-npl", "--npl"},
                        {"-npp", "--npp"}, {"-ntg", "--ntg"}});
  if (const int rc = parse_command_line(app, argc, argv, "moe-bench", flags); rc >= 0) return rc;
  if (json) output = "json";
  try {
    check_run_flags(run, "moe-bench");
    if (!npl.empty()) {
      if (output != "md" && output != "jsonl") throw_error("-npl: batched mode prints md or jsonl");
      const std::vector<int> threads = parse_list("-t", threads_arg, 1);
      const std::vector<int> bs = parse_list("-npl", npl, 1);
      auto model = Deepseek2Model::load(path, mmap < 0 ? WeightMemory::kAuto : mmap ? WeightMemory::kMap : WeightMemory::kRead,
                                        repack && host_reads_repacked_weights());
      std::mt19937 rng(42);
      if (output == "md") {
        std::printf("| %6s | %6s | %4s | %7s | %8s | %9s | %8s | %9s |\n", "PP", "TG", "B", "threads", "T_PP s",
                    "S_PP t/s", "T_TG s", "S_TG t/s");
        std::printf("|--------|--------|------|---------|----------|-----------|----------|-----------|\n");
      }
      for (int th : threads)
        for (int b : bs) {
          if (progress) std::fprintf(stderr, "moe-bench: B = %d, %d threads\n", b, th);
          const BatchedResult r = run_batched(*model, run, b, npp, ntg, std::min(n_batch, n_ubatch), th, reps, rng);
          const double s_pp = r.t_pp > 0 ? static_cast<double>(b) * npp / r.t_pp : 0;
          const double s_tg = r.t_tg > 0 ? static_cast<double>(b) * ntg / r.t_tg : 0;
          if (output == "md")
            std::printf("| %6d | %6d | %4d | %7d | %8.3f | %9.2f | %8.3f | %9.2f |\n", npp, ntg, b, th, r.t_pp, s_pp,
                        r.t_tg, s_tg);
          else
            std::printf("%s\n", nlohmann::json{{"model", path}, {"n_prompt", npp}, {"n_gen", ntg}, {"n_seq", b},
                                                {"threads", th}, {"t_pp", r.t_pp}, {"speed_pp", s_pp}, {"t_tg", r.t_tg},
                                                {"speed_tg", s_tg}}.dump().c_str());
          std::fflush(stdout);
        }
      return 0;
    }
    std::vector<Test> tests;
    for (int th : parse_list("-t", threads_arg, 1))
      for (int d : parse_list("-d", depths, 0)) {
        for (int p : parse_list("-p", prompts, 0))
          if (p > 0) tests.push_back({p, 0, d, th, {}});
        for (int n : parse_list("-n", gens, 0)) {
          if (n <= 0) continue;
          tests.push_back({0, n, d, th, {}});
          if (spec_type == "draft-mtp")
            for (int k : parse_list("--spec-draft-n-max", spec_n, 1))
              for (const double a : parse_accept(spec_accept)) {
                Test s{0, n, d, th, {}};
                s.spec_draft_n = k;
                s.spec_accept = a;
                tests.push_back(s);
              }
        }
        for (const std::string& pg : pgs) {
          const std::vector<int> v = parse_list("-pg", pg, 0);
          if (v.size() != 2) throw_error("-pg '%s': expected PP,TG", pg.c_str());
          tests.push_back({v[0], v[1], d, th, {}});
        }
      }
    for (Test& t : tests) t.random_depth = depth_fill == "random";
    const WeightMemory memory = mmap < 0 ? WeightMemory::kAuto : mmap ? WeightMemory::kMap : WeightMemory::kRead;
    if (is_deepseek4_file(path)) {
      if (depth_fill == "random" || expert_load)
        throw_error("%s: --depth-fill random and --expert-load are not supported for deepseek4 models yet",
                    path.c_str());
      if (spec_type != "none" && model_draft.empty())
        throw_error("%s: --spec-type draft-mtp: deepseek4 keeps its MTP module in a companion GGUF; give it with -md "
                    "FILE", path.c_str());
      return bench_deepseek4(path, model_draft, memory, tests, std::min(n_batch, n_ubatch), reps, run, output,
                             progress);
    }
    if (!model_draft.empty())
      throw_error("-md %s: only deepseek4 models take an MTP companion file", model_draft.c_str());
    auto model = Deepseek2Model::load(path, memory, repack && host_reads_repacked_weights());
    if (verbose)
      std::fprintf(stderr, "moe-bench: %zu tensors repacked for the CPU (%.2f GiB)\n",
                   model->repacked().count(), static_cast<double>(model->repacked().bytes()) / (1 << 30));
    const Deepseek2Config& c = model->config();
    const int first_threads = parse_list("-t", threads_arg, 1).front();
    const std::unique_ptr<Deepseek2Session> session = run_tests<Deepseek2Session>(
        *model, c.vocab_size, tests, run, std::min(n_batch, n_ubatch), reps, progress,
        [&](const Deepseek2Session& s, int threads, bool) {
          if (verbose || threads == first_threads) print_placement(s, "moe-bench");
          if (verbose) std::fprintf(stderr, "moe-bench: %s\n", s.backends_description().c_str());
        });
    if (session) write_expert_stats(run, *session, "moe-bench");
    if (expert_load && c.n_routed_experts > 0 && session) {
      const auto& cnt = session->expert_counts();
      const int64_t E = c.n_routed_experts;
      for (int64_t il = c.first_k_dense_replace; il < c.num_hidden_layers; ++il) {
        uint64_t mx = 0, total = 0;
        for (int64_t e = 0; e < E; ++e) mx = std::max(mx, cnt[static_cast<size_t>(il * E + e)]), total += cnt[static_cast<size_t>(il * E + e)];
        std::fprintf(stderr, "expert load: layer %3lld: max/mean %.2f (%llu choices)\n", static_cast<long long>(il),
                     total ? static_cast<double>(mx) * static_cast<double>(E) / static_cast<double>(total) : 0.0,
                     static_cast<unsigned long long>(total));
      }
    }
    const ExpertPlacement& plan = session ? session->placement() : ExpertPlacement{};
    print_tests(tests, path, model->file().total_size(), backend_column(plan), session ? session->backends_description() : "",
                plan.to_json(), output, WeightState{!model->weights_read(), model->repacked().count()});
    if (std::fflush(stdout) != 0) throw_error("cannot write to standard output");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moe-bench: error: %s\n", e.what());
    return 1;
  }
}
