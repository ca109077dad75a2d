// -ctk f16, bf16 and q8_0 (src/runtime/backend.h LatentType): what they
// cost on the trained default model against the f32 cache, and the scalar
// path that reads any of them where no kernel does.
#include <doctest/doctest.h>

#include <regex>
#include <string>

#include "test_util.h"

using namespace moe;

namespace {

const std::string kModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";

double stat(const std::string& out, const std::string& label) {
  std::smatch m;
  REQUIRE_MESSAGE(std::regex_search(out, m, std::regex(label + R"(\s*: +(\S+))")), out);
  return std::stod(m[1]);
}

}  // namespace

// Issue 23's bar for a quantized latent cache: perplexity within 0.5% of the
// f32 cache's. Measured on kjv-ruth.txt at the model's trained context
// (-c 256), PPL ratio / mean KL / same top token: f16 0.9992 / 0.00048 /
// 99.3%, bf16 0.9994 / 0.00060 / 99.1%, q8_0 1.0005 / 0.0013 / 99.0%. (At
// -c 512, twice the trained context, one token whose attention flips
// dominates every type, llama.cpp's f16 cache alike: KL 7 there, ratio 0.993.)
TEST_CASE("-ctk f16, bf16 and q8_0: the trained model's perplexity and KL stay near the f32 cache's") {
  const std::string moe_ppl = test::bin_dir() + "/moe-perplexity";
  const std::string base = test::temp_dir() + "/f32-cache.kld";
  auto r = test::run_command({moe_ppl, "-m", kModel, "-f", test::local_fixture("kjv-ruth.txt"), "-c", "256", "-t", "2",
                              "--kl-divergence-base", base});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  for (const char* type : {"f16", "bf16", "q8_0"}) {
    CAPTURE(type);
    r = test::run_command({moe_ppl, "-m", kModel, "-t", "2", "-ctk", type, "--kl-divergence-base", base,
                           "--kl-divergence"});
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    CAPTURE(r.out);
    const double ratio = stat(r.out, R"(Mean PPL\(Q\)/PPL\(base\))");
    CHECK(ratio > 0.995);
    CHECK(ratio < 1.005);
    CHECK(stat(r.out, "Mean    KLD") < 0.003);
    CHECK(stat(r.out, "Same top p") > 98.0);
  }
}

// MOE_CPU_ISA=avx2 takes the AVX-512 kernels away: attention then reads the
// rows decoded to f32 (the scalar path), and greedy text matches the
// kernels' (they read the same values, in another order of sums).
TEST_CASE("-ctk bf16 and q8_0 without AVX-512: the scalar path writes the kernels' greedy text") {
  for (const char* type : {"bf16", "q8_0"}) {
    CAPTURE(type);
    const std::string cmd = test::shell_quote(test::bin_dir() + "/moe") + " -m " + test::shell_quote(kModel) +
                            " -p 'And Ruth said' -n 40 --temp 0 -ctk " + type;
    const auto fast = test::run_shell(cmd), scalar = test::run_shell("MOE_CPU_ISA=avx2 " + cmd);
    REQUIRE_MESSAGE(fast.exit_code == 0, fast.err);
    REQUIRE_MESSAGE(scalar.exit_code == 0, scalar.err);
    CHECK(fast.out.size() > 60);
    CHECK(scalar.out == fast.out);
  }
}
