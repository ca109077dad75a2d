// Helpers shared by the tests: fixture paths, skipping, small file I/O.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/ggml_type.h"
#include "runtime/generate.h"
#include "runtime/inference_session.h"
#include "runtime/session_options.h"

namespace moe::test {

// True in the ASan build: tests that loop over many inputs do fewer there.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

// ../shared/fixtures (big reference files), or "" when absent.
std::string shared_fixtures_dir();
// A file under ../shared/fixtures, or "" when it is absent.
std::string shared_fixture(const std::string& rel);
// tests/fixtures (small files committed with the project).
std::string local_fixture(const std::string& rel);
// Directory holding the built executables (moe-gguf, ...).
std::string bin_dir();

// Prints the marker ctest turns into "skipped". Use as: return skip("why");
void skip(const std::string& why);

std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, const void* data, size_t size);
inline void write_file(const std::string& path, const std::vector<uint8_t>& b) {
  write_file(path, b.data(), b.size());
}
// A fresh empty directory under the system temp dir, removed at exit.
std::string temp_dir();

// A safetensors file of raw tensors (dtype as the format names it: "F32",
// "BF16", "F8_E4M3", "F8_E8M0", "I8", "I64", ...), in the order given.
struct SafetensorBytes {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void write_safetensors(const std::string& path, const std::vector<SafetensorBytes>& tensors);


struct CommandResult {
  int exit_code = -1;   // -1 when killed by a signal
  int signal = 0;       // the signal, when killed
  std::string out;      // stdout
  std::string err;      // stderr
};
// Runs argv[0] with arguments, capturing stdout and stderr.
CommandResult run_command(const std::vector<std::string>& argv);

// Runs a /bin/sh script (pipes, redirections such as > /dev/full, stdin
// from printf), capturing its stdout and stderr.
CommandResult run_shell(const std::string& script);
// s in single quotes for a shell script.
// One JSON value per non-empty line (JSONL output, batch records).
std::vector<nlohmann::json> parse_json_lines(const std::string& out);

// Whether two runs' logits are the same bits.
bool same_bits(const std::vector<float>& a, const std::vector<float>& b);

// The splits the hybrid tests run on the CPU standing in for a device, from
// `device` (options on the stand-in) and the plan it gives with every expert
// there: all of them there, none (--cpu-moe), the first host_layers' on the
// host (--n-cpu-moe), and a budget for the fixed part and about a third of
// the experts (--gpu-mem).
struct HybridSplit {
  std::string name;
  SessionOptions o;
};
std::vector<HybridSplit> hybrid_splits(const SessionOptions& device, const ExpertPlacement& all, int64_t host_layers);
// The logits of every position of a session of `model` made with `o`: a
// prompt of n_prompt tokens in one call (the session's steps of o.n_batch),
// then 5 tokens one at a time. The hybrid tests compare these across splits.
template <typename Session, typename Model>
std::vector<float> prompt_then_decode_logits(const Model& model, const SessionOptions& o, int n_prompt) {
  Session s(model, o);
  const int64_t V = model.config().vocab_size;
  std::vector<int32_t> prompt;
  for (int i = 0; i < n_prompt; ++i) prompt.push_back(static_cast<int32_t>((i * 37 + 11) % V));
  std::vector<float> logits(static_cast<size_t>((n_prompt + 5) * V));
  s.forward(prompt.data(), n_prompt, logits.data(), true);
  for (int i = 0; i < 5; ++i) {
    const int32_t t = static_cast<int32_t>((i * 101 + 7) % V);
    s.forward(&t, 1, &logits[static_cast<size_t>((n_prompt + i) * V)], false);
  }
  return logits;
}
// Checks that a split's plan is what its name says (the device in use; none:
// no expert on it; half and a third: experts on both sides).
void check_hybrid_split(const HybridSplit& split, const ExpertPlacement& plan);

// A DeepseekV4ForCausalLM config.json of tiny-dsv4's shape (4 layers: window,
// CSA, HCA, CSA; a hash layer; 4 experts, 1 shared), for moe-synth.
nlohmann::json tiny_dsv4_config();
// Writes `config` to dir/config.json (dir made) and runs moe-synth on it with
// the trained model's tokenizer and `args` (-o, --type, ...); REQUIREs it succeeds.
void synth_from_config(const nlohmann::json& config, const std::string& dir, const std::vector<std::string>& args);
std::string shell_quote(const std::string& s);

// n elements of type t as random bytes (every bit pattern of packed scales,
// mins and high bits), with the blocks' f16/f32 scale fields set to a small
// finite value (MXFP4: a random exponent of modest size); F32/F16/BF16 get
// normal samples.
std::vector<uint8_t> random_weights(GgmlType t, int64_t n, std::mt19937& rng);

// moe-perplexity's final estimate for a model on tests/fixtures/kjv-ruth.txt
// (-c 128, 2 threads): the held-out text the IQ and imatrix tests score.
// Fails the test when the tool fails or prints no estimate.
double ruth_perplexity(const std::string& model);

// The trained default model dequantized to F32 (moe-quantize
// --allow-requantize), dir/kjv.f32.gguf, made once per dir: the input the
// IQ and imatrix tests quantize, as llama-quantize's references did.
std::string trained_model_f32(const std::string& dir);

// Logit rows compared: the index of a row's largest logit, KL(p || q) of
// two rows' softmaxes in nats, and over rows [rows][V] the share with the
// same top token and the mean KL(ref || got): the bug catchers' measures.
int64_t argmax(const float* x, int64_t n);
double kl_divergence(const float* p, const float* q, int64_t n);
struct LogitAgreement {
  double top1 = 0, mean_kl = 0;
};
LogitAgreement logit_agreement(const float* ref, const float* got, int64_t rows, int64_t V);

// generate() from `prompt` with end-of-generation ignored: n_predict
// tokens, n_draft MTP drafts per step, the prompt in chunks of `chunk`.
GenerateResult answer(InferenceSession& s, const Tokenizer& tok, const SamplerParams& sp,
                      const std::vector<int32_t>& prompt, int64_t n_predict, int64_t n_draft, int64_t chunk = 512);

// A session with a model's MTP module and n_seq sequences.
using SessionMaker = std::function<std::unique_ptr<InferenceSession>(int64_t n_seq)>;
// Sequences {first, length, drafts} of `all` in one session draft together
// (mtp_draft_many) for `rounds` rounds, each round after one more trunk
// token; each one's drafts equal those it gets in a session of its own.
// ask_twice: the first sequence asked twice in the first round drafts once.
void check_drafts_together_equal_alone(const SessionMaker& make, const std::vector<int32_t>& all,
                                       const std::vector<std::array<int64_t, 3>>& seqs, int rounds, bool ask_twice);

// FNV-1a 64 of n bytes, continuing from h (the offset basis by default):
// the hash the quantizer tests compare with ggml's output.
inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

}  // namespace moe::test
