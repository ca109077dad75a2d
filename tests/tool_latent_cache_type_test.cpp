// -ctk bf16 (src/runtime/backend.h LatentType): what it costs on the trained
// default model against the f32 cache, and its refusal where no kernel can
// read it.
#include <doctest/doctest.h>

#include <regex>
#include <string>

#include "cpu/attention_block.h"
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
// f32 cache's. Measured on kjv-ruth.txt at -c 512: PPL ratio 1.0002, mean
// KL 0.0034, same top token 98.1%.
TEST_CASE("-ctk bf16: the trained model's perplexity and KL stay near the f32 cache's") {
  if (!mla_attend_block_kernel_bf16()) return test::skip("this CPU or build has no AVX512-BF16");
  const std::string moe_ppl = test::bin_dir() + "/moe-perplexity";
  const std::string base = test::temp_dir() + "/f32-cache.kld";
  auto r = test::run_command({moe_ppl, "-m", kModel, "-f", test::local_fixture("kjv-ruth.txt"), "-c", "512", "-t", "2",
                              "--kl-divergence-base", base});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  r = test::run_command({moe_ppl, "-m", kModel, "-t", "2", "-ctk", "bf16", "--kl-divergence-base", base,
                         "--kl-divergence"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  CAPTURE(r.out);
  const double ratio = stat(r.out, R"(Mean PPL\(Q\)/PPL\(base\))");
  CHECK(ratio > 0.995);
  CHECK(ratio < 1.005);
  CHECK(stat(r.out, "Mean    KLD") < 0.006);
  CHECK(stat(r.out, "Same top p") > 96.0);
}

TEST_CASE("-ctk bf16 is refused before any work where no kernel reads a bf16 cache") {
  // MOE_CPU_ISA=avx2 takes away the AVX-512 kernels, bf16's with them.
  const auto r = test::run_shell("MOE_CPU_ISA=avx2 " + test::shell_quote(test::bin_dir() + "/moe") + " -m " +
                                 test::shell_quote(kModel) + " -p Hi -n 4 -ctk bf16");
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("-ctk bf16:") != std::string::npos);
  CHECK(r.err.find("AVX512-BF16") != std::string::npos);
}
