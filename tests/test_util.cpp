#include "test_util.h"

#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>

#include "core/fp16.h"

extern char** environ;

namespace moe::test {

namespace fs = std::filesystem;

std::string shared_fixtures_dir() {
  const char* env = std::getenv("MOE_FIXTURES");
  const std::string dir = env ? env : MOE_FIXTURES_DIR;
  return fs::is_directory(dir) ? dir : std::string();
}

std::string shared_fixture(const std::string& rel) {
  const std::string dir = shared_fixtures_dir();
  if (dir.empty()) return {};
  const std::string p = dir + "/" + rel;
  return fs::exists(p) ? p : std::string();
}

std::string local_fixture(const std::string& rel) { return std::string(MOE_TEST_FIXTURES_DIR) + "/" + rel; }

std::string bin_dir() {
#ifdef MOE_BIN_DIR
  return MOE_BIN_DIR;
#else
  return ".";
#endif
}

void skip(const std::string& why) { std::cout << "MOE_SKIP: " << why << std::endl; }

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const void* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
}

namespace {
struct TempDirs {
  std::vector<std::string> dirs;
  ~TempDirs() {
    std::error_code ec;
    for (const auto& d : dirs) fs::remove_all(d, ec);
  }
};
TempDirs& temp_dirs() {
  static TempDirs t;  // test-only bookkeeping, cleaned at exit
  return t;
}
}  // namespace

std::string temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "moe-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  temp_dirs().dirs.push_back(tmpl);
  return tmpl;
}

CommandResult run_command(const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  if (pipe(out_pipe) != 0 || pipe(err_pipe) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
  posix_spawn_file_actions_addclose(&fa, out_pipe[0]);
  posix_spawn_file_actions_addclose(&fa, err_pipe[0]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (rc != 0) {
    close(out_pipe[0]);
    close(err_pipe[0]);
    throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(rc));
  }
  CommandResult r;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

CommandResult run_shell(const std::string& script) { return run_command({"/bin/sh", "-c", script}); }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<HybridSplit> hybrid_splits(const SessionOptions& device, const ExpertPlacement& all, int64_t host_layers) {
  std::vector<HybridSplit> out = {{"all on the device", device}, {"none (--cpu-moe)", device},
                                  {"half (--n-cpu-moe)", device}, {"a third (--gpu-mem)", device}};
  out[1].o.placement.cpu_moe = true;
  out[2].o.placement.n_cpu_moe = host_layers;
  out[3].o.backends.device_mem = int64_t(all.device.every_token + all.device.kv + all.device.experts / 3);
  return out;
}

void check_hybrid_split(const HybridSplit& split, const ExpertPlacement& p) {
  CAPTURE(split.name);
  CHECK(p.device_active);
  if (split.name.find("none") != std::string::npos) CHECK(p.device.n_experts == 0);
  if (split.name.find("half") != std::string::npos || split.name.find("third") != std::string::npos) {
    CHECK(p.device.n_experts > 0);
    CHECK(p.host.n_experts > 0);
  }
}

nlohmann::json tiny_dsv4_config() {
  return {{"architectures", {"DeepseekV4ForCausalLM"}}, {"hidden_size", 256}, {"num_hidden_layers", 4},
          {"num_attention_heads", 4}, {"head_dim", 64}, {"qk_rope_head_dim", 32}, {"q_lora_rank", 128},
          {"o_groups", 2}, {"o_lora_rank", 32}, {"sliding_window", 32}, {"compress_ratios", {0, 4, 128, 4}},
          {"compress_rope_theta", 160000.0}, {"index_n_heads", 4}, {"index_head_dim", 64}, {"index_topk", 8},
          {"hc_mult", 4}, {"hc_sinkhorn_iters", 3}, {"hc_eps", 1e-6}, {"n_routed_experts", 4},
          {"num_experts_per_tok", 2}, {"moe_intermediate_size", 64}, {"n_shared_experts", 1}, {"num_hash_layers", 1},
          {"routed_scaling_factor", 1.5}, {"norm_topk_prob", true}, {"swiglu_limit", 10.0}, {"rms_norm_eps", 1e-6},
          {"max_position_embeddings", 4096}};
}

void synth_from_config(const nlohmann::json& config, const std::string& dir, const std::vector<std::string>& args) {
  std::filesystem::create_directories(dir);
  const std::string dumped = config.dump();
  write_file(dir + "/config.json", dumped.data(), dumped.size());
  std::vector<std::string> argv = {bin_dir() + "/moe-synth", "--config", dir + "/config.json", "--vocab",
                                   std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf"};
  argv.insert(argv.end(), args.begin(), args.end());
  const CommandResult r = run_command(argv);
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
}

std::vector<nlohmann::json> parse_json_lines(const std::string& out) {
  std::vector<nlohmann::json> records;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    if (end > start) records.push_back(nlohmann::json::parse(out.substr(start, end - start)));
    start = end + 1;
  }
  return records;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::vector<uint8_t> random_weights(GgmlType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> w(ggml_row_size(t, n));
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  const size_t bs = ggml_type_traits(t).type_size;
  const uint16_t h = fp32_to_fp16(0.0123f);
  for (size_t o = 0; o < w.size(); o += bs) {
    switch (t) {
      case GgmlType::F16: case GgmlType::BF16: case GgmlType::F32: break;
      case GgmlType::Q2_K: std::memcpy(&w[o + bs - 4], &h, 2); std::memcpy(&w[o + bs - 2], &h, 2); break;
      case GgmlType::Q3_K: case GgmlType::Q6_K: std::memcpy(&w[o + bs - 2], &h, 2); break;
      case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K:
        std::memcpy(&w[o], &h, 2); std::memcpy(&w[o + 2], &h, 2); break;
      case GgmlType::Q8_K: { const float d = 0.01f; std::memcpy(&w[o], &d, 4); break; }
      // Exponents whose half scales 2^-12 .. 2^3 keep every value finite.
      case GgmlType::MXFP4: w[o] = static_cast<uint8_t>(116 + w[o] % 16); break;
      case GgmlType::IQ1_M:  // d's four nibbles are the top nibbles of the four scale words
        for (int k = 0; k < 4; ++k) {
          uint8_t& hi = w[o + 48 + 2 * k + 1];
          hi = static_cast<uint8_t>((hi & 0x0f) | (((h >> (4 * k)) & 0xf) << 4));
        }
        break;
      default: std::memcpy(&w[o], &h, 2); break;
    }
  }
  if (t == GgmlType::F32) {
    std::normal_distribution<float> nd;
    for (size_t i = 0; i < w.size(); i += 4) { const float v = nd(rng); std::memcpy(&w[i], &v, 4); }
  } else if (t == GgmlType::F16 || t == GgmlType::BF16) {
    std::normal_distribution<float> nd;
    for (size_t i = 0; i < w.size(); i += 2) {
      const uint16_t v = t == GgmlType::F16 ? fp32_to_fp16(nd(rng)) : fp32_to_bf16(nd(rng));
      std::memcpy(&w[i], &v, 2);
    }
  }
  return w;
}

double ruth_perplexity(const std::string& model) {
  const CommandResult r = run_command({bin_dir() + "/moe-perplexity", "-m", model, "-f", local_fixture("kjv-ruth.txt"),
                                       "-c", "128", "-t", "2"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const size_t at = r.out.find("Final estimate: PPL = ");
  REQUIRE_MESSAGE(at != std::string::npos, r.out);
  return std::stod(r.out.substr(at + 22));
}

std::string trained_model_f32(const std::string& dir) {
  const std::string out = dir + "/kjv.f32.gguf";
  if (fs::exists(out)) return out;
  const CommandResult r = run_command({bin_dir() + "/moe-quantize", "--allow-requantize",
                                       std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf", out, "F32"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  return out;
}

void write_safetensors(const std::string& path, const std::vector<SafetensorBytes>& ts) {
  std::string header = "{";
  std::vector<uint8_t> data;
  for (const SafetensorBytes& t : ts) {
    std::string shape;
    for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "," : "") + std::to_string(t.shape[i]);
    if (header.size() > 1) header += ',';
    header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
              std::to_string(data.size()) + "," + std::to_string(data.size() + t.bytes.size()) + "]}";
    data.insert(data.end(), t.bytes.begin(), t.bytes.end());
  }
  header += "}";
  while (header.size() % 8) header += ' ';
  std::vector<uint8_t> file(8);
  const uint64_t n = header.size();
  std::memcpy(file.data(), &n, 8);
  file.insert(file.end(), header.begin(), header.end());
  file.insert(file.end(), data.begin(), data.end());
  write_file(path, file);
}

int64_t argmax(const float* x, int64_t n) {
  int64_t b = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[b]) b = i;
  return b;
}

double kl_divergence(const float* p, const float* q, int64_t n) {
  double mp = -INFINITY, mq = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mp = std::max(mp, double(p[i])), mq = std::max(mq, double(q[i]));
  double sp = 0, sq = 0;
  for (int64_t i = 0; i < n; ++i) sp += std::exp(p[i] - mp), sq += std::exp(q[i] - mq);
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double lp = p[i] - mp - std::log(sp), lq = q[i] - mq - std::log(sq);
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

LogitAgreement logit_agreement(const float* ref, const float* got, int64_t rows, int64_t V) {
  LogitAgreement a;
  if (rows <= 0) return a;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = ref + r * V;
    const float* y = got + r * V;
    a.top1 += argmax(x, V) == argmax(y, V);
    a.mean_kl += kl_divergence(x, y, V);
  }
  a.top1 /= double(rows);
  a.mean_kl /= double(rows);
  return a;
}

GenerateResult answer(InferenceSession& s, const Tokenizer& tok, const SamplerParams& sp,
                      const std::vector<int32_t>& prompt, int64_t n_predict, int64_t n_draft, int64_t chunk) {
  Sampler sampler(sp, static_cast<int32_t>(s.n_vocab()));
  GenerateOptions g;
  g.n_predict = n_predict;
  g.ignore_eos = true;
  g.spec_draft_n = n_draft;
  g.prompt_chunk = chunk;
  return generate(s, tok, sampler, prompt, g, [](std::string_view) {}, [] { return false; });
}

void check_drafts_together_equal_alone(const SessionMaker& make, const std::vector<int32_t>& all,
                                       const std::vector<std::array<int64_t, 3>>& seqs, int rounds, bool ask_twice) {
  const std::unique_ptr<InferenceSession> session = make(static_cast<int64_t>(seqs.size()));
  InferenceSession& together = *session;
  std::vector<float> logits(static_cast<size_t>(together.n_vocab()));
  std::vector<std::vector<int32_t>> got(seqs.size(), std::vector<int32_t>(4, -1));
  std::vector<DraftAsk> asks;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto [first, len, n_draft] = seqs[i];
    together.forward_spans(all.data() + first, {{static_cast<int32_t>(i), len, false}}, logits.data());
    asks.push_back({static_cast<int64_t>(i), all[static_cast<size_t>(first + len)], n_draft, got[i].data(), 0});
  }
  std::vector<int32_t> dup(4, -1);
  for (int r = 0; r < rounds; ++r) {
    if (r > 0) {
      asks.resize(seqs.size());
      for (size_t i = 0; i < seqs.size(); ++i) {
        const auto [first, len, n_draft] = seqs[i];
        together.forward_spans(all.data() + first + len + r - 1, {{static_cast<int32_t>(i), 1, false}}, logits.data());
        asks[i].next = all[static_cast<size_t>(first + len + r)];
      }
    } else if (ask_twice) {
      asks.push_back(asks[0]);
      asks.back().drafts = dup.data();
    }
    together.mtp_draft_many(asks);
    if (r == 0 && ask_twice) CHECK(asks.back().n_out == 0);
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    const auto [first, len, n_draft] = seqs[i];
    CAPTURE(i);
    const std::unique_ptr<InferenceSession> one = make(1);
    InferenceSession& alone = *one;
    alone.forward(all.data() + first, len, logits.data(), false);
    std::vector<int32_t> want(4, -1);
    int64_t n_out = 0;
    for (int r = 0; r < rounds; ++r) {
      if (r > 0) alone.forward(all.data() + first + len + r - 1, 1, logits.data(), false);
      n_out = alone.mtp_draft(0, all[static_cast<size_t>(first + len + r)], n_draft, want.data());
    }
    CHECK(n_out == n_draft);
    CHECK(asks[i].n_out == n_draft);
    CHECK(got[i] == want);
  }
}


}  // namespace moe::test
