// MXFP4 quantization: the quantizer on hand-computed blocks (scale choice,
// nearest value, ties, clipping, the denormal scales), llama-quantize's
// MXFP4_MOE mixture, and the llama.cpp fixture tiny-dsv4.MXFP4_MOE.gguf: its
// routed experts re-quantized from tiny-dsv4.f32.gguf byte for byte, its
// blocks within the format's error of the f32 weights, and moe-quantize
// writing the same file. The fixture is read with the GGUF reader alone
// (the file's architecture, deepseek4, is not the model loader's concern here).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "convert/quantize_plan.h"
#include "core/ggml_type.h"
#include "gguf/gguf_reader.h"
#include "quant/blocks.h"
#include "quant/dequantize.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace {

using moe::FileType;
using moe::GgmlType;

// The 17 bytes of one block: exponent, then indices idx[j] | idx[j + 16] << 4.
std::vector<uint8_t> block_bytes(uint8_t e, const int (&idx)[32]) {
  std::vector<uint8_t> b(17);
  b[0] = e;
  for (int j = 0; j < 16; ++j) b[1 + j] = static_cast<uint8_t>(idx[j] | idx[j + 16] << 4);
  return b;
}

std::vector<uint8_t> quantize_block(const float (&x)[32]) {
  std::vector<uint8_t> out(17);
  moe::quantize_row_ref(GgmlType::MXFP4, x, out.data(), 32);
  return out;
}

}  // namespace

TEST_CASE("quantize mxfp4: scale from the largest magnitude, nearest value, first index on ties") {
  // amax 1.0: e = floor(log2 1) - 2 + 127 = 125, so the half scale d is 2^-3
  // and the representable values are multiples of 0.125 by 0 1 2 3 4 6 8 12.
  float x[32] = {};
  int idx[32] = {};
  x[0] = 1.0f, idx[0] = 6;       // 8 d exactly
  x[1] = 0.3f, idx[1] = 2;       // 2.4 d -> 2
  x[2] = 0.625f, idx[2] = 4;     // 5 d: a tie of 4 and 6, the first index wins
  x[3] = -0.625f, idx[3] = 12;   // -5 d: -4 (index 12) before -6 (13)
  x[4] = -0.0f, idx[4] = 0;      // +0 (index 0), not -0 (8)
  x[5] = -0.01f, idx[5] = 0;
  x[6] = -0.07f, idx[6] = 9;     // -0.56 d -> -1
  x[7] = 0.9f, idx[7] = 6;       // 7.2 d -> 8
  x[8] = 0.87f, idx[8] = 5;      // 6.96 d -> 6
  x[16] = -0.99f, idx[16] = 14;  // -7.92 d -> -8
  x[31] = 0.2f, idx[31] = 2;     // 1.6 d -> 2
  CHECK(quantize_block(x) == block_bytes(125, idx));

  // Magnitudes up to 2x the scale's power of two: 1.9 is 15.2 d, clipped to 12.
  float c[32] = {};
  int cidx[32] = {};
  c[0] = 1.9f, cidx[0] = 7;
  c[20] = -1.9f, cidx[20] = 15;
  c[9] = 0.4f, cidx[9] = 3;  // 3.2 d -> 3
  CHECK(quantize_block(c) == block_bytes(125, cidx));

  // A power of two moves the exponent up: amax 2 gives e = 126, d = 0.25.
  float p[32] = {};
  int pidx[32] = {};
  p[5] = 2.0f, pidx[5] = 6;
  p[6] = 0.375f, pidx[6] = 1;  // 1.5 d: a tie of 1 and 2, index 1 first
  CHECK(quantize_block(p) == block_bytes(126, pidx));

  // amax 2^-125: e = 0, the denormal half scale 2^-128 of ggml's E8M0 table.
  float t[32] = {};
  int tidx[32] = {};
  t[3] = std::ldexp(1.0f, -125), tidx[3] = 6;
  t[4] = -std::ldexp(1.0f, -126), tidx[4] = 12;  // -4 d
  const std::vector<uint8_t> tq = quantize_block(t);
  CHECK(tq == block_bytes(0, tidx));
  float back[32];
  moe::dequantize_row_ref(GgmlType::MXFP4, tq.data(), back, 32);
  CHECK(back[3] == t[3]);
  CHECK(back[4] == t[4]);

  // amax below 2^-125 makes the exponent negative: ggml's float -> uint8_t
  // cast is undefined in C, and gcc on x86 converts through int32 (-8 -> 248).
  float u[32] = {};
  const int uidx[32] = {};
  u[0] = 1e-40f;
  CHECK(quantize_block(u) == block_bytes(248, uidx));

  // All zeros: e = 0 and every index 0.
  const float z[32] = {};
  const int zidx[32] = {};
  CHECK(quantize_block(z) == block_bytes(0, zidx));
}

TEST_CASE("quantize mxfp4: rows with an importance matrix are the rows without one, as in ggml") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t n = 256, rows = 3;
  std::vector<float> x(static_cast<size_t>(n * rows)), w(static_cast<size_t>(n));
  for (float& v : x) v = normal(rng);
  for (float& v : w) v = std::fabs(normal(rng)) + 0.01f;
  const size_t bytes = moe::ggml_row_size(GgmlType::MXFP4, n) * rows;
  std::vector<uint8_t> plain(bytes), weighted(bytes), ref(bytes);
  moe::quantize_rows(GgmlType::MXFP4, x.data(), plain.data(), rows, n, nullptr);
  moe::quantize_rows(GgmlType::MXFP4, x.data(), weighted.data(), rows, n, w.data());
  moe::quantize_row_ref(GgmlType::MXFP4, x.data(), ref.data(), n * rows);
  CHECK(plain == ref);
  CHECK(weighted == ref);
  CHECK_FALSE(moe::quantize_requires_imatrix(GgmlType::MXFP4));
}

TEST_CASE("quantize plan MXFP4_MOE: expert stacks MXFP4, every other matrix Q8_0, as llama-quantize") {
  auto plan = [](const std::string& arch, std::vector<moe::PlanTensor> tensors, bool pure = false) {
    const moe::PlanModel model{arch, 4, 4, 4, 1};
    moe::PlanOptions o;
    o.file_type = FileType::MOSTLY_MXFP4_MOE;
    o.pure = pure;
    return moe::plan_tensor_types(model, tensors, o).types;
  };
  const std::vector<moe::PlanTensor> tensors = {
      {"token_embd.weight", {256, 2060}, GgmlType::F32},
      {"output.weight", {256, 2060}, GgmlType::F32},
      {"blk.0.attn_norm.weight", {256}, GgmlType::F32},
      {"blk.0.ffn_gate_inp.weight", {256, 4}, GgmlType::F32},
      {"blk.0.attn_q_a.weight", {256, 128}, GgmlType::F32},
      {"blk.0.attn_k_b.weight", {128, 512, 4}, GgmlType::F32},  // MLA's per-head projection: 3-D
      {"blk.0.ffn_up_shexp.weight", {256, 64}, GgmlType::F32},
      {"blk.1.ffn_up_exps.weight", {256, 64, 4}, GgmlType::F32},
      {"blk.1.ffn_down_exps.weight", {64, 256, 4}, GgmlType::F32},
      {"blk.2.ffn_gate_exps.weight", {256, 64, 1}, GgmlType::F32},  // one expert: not a stack
      {"blk.3.ffn_up_exps.weight", {48, 64, 4}, GgmlType::F32},     // rows of 48: no 32-blocks
  };
  const std::vector<GgmlType> want = {GgmlType::Q8_0,  GgmlType::Q8_0,  GgmlType::F32,   GgmlType::F32,
                                      GgmlType::Q8_0,  GgmlType::MXFP4, GgmlType::Q8_0,  GgmlType::MXFP4,
                                      GgmlType::MXFP4, GgmlType::Q8_0,  GgmlType::F16};
  CHECK(plan("deepseek2", tensors) == want);
  // bailingmoe3: only the FFN roles of 3-D tensors are experts.
  std::vector<GgmlType> bailing = want;
  bailing[5] = GgmlType::Q8_0;
  CHECK(plan("bailingmoe3", tensors) == bailing);
  // Tied embeddings take output.weight's rule: Q8_0 as well.
  const std::vector<moe::PlanTensor> tied = {{"token_embd.weight", {256, 2060}, GgmlType::F32}};
  CHECK(plan("deepseek2", tied) == std::vector<GgmlType>{GgmlType::Q8_0});
  // --pure: the file type's default, MXFP4, for every quantizable tensor.
  const std::vector<GgmlType> pure = plan("deepseek2", tensors, true);
  CHECK(pure[0] == GgmlType::MXFP4);
  CHECK(pure[4] == GgmlType::MXFP4);
  CHECK(pure[2] == GgmlType::F32);
  CHECK(moe::file_type_default_tensor_type(FileType::MOSTLY_MXFP4_MOE) == GgmlType::MXFP4);
}

namespace {

// Largest relative RMS error ||deq - f32|| / ||f32|| of one routed-expert
// tensor of the fixture: about 1.5x the worst measured (in the comment).
constexpr double kMxfp4RelRmsBound = 0.17;  // measured 0.116

}  // namespace

TEST_CASE("quantize mxfp4: the fixture's routed experts, re-quantized from f32, are llama-quantize's bytes") {
  const std::string quant_path = moe::test::shared_fixture("models/tiny-dsv4.MXFP4_MOE.gguf");
  const std::string f32_path = moe::test::shared_fixture("models/tiny-dsv4.f32.gguf");
  if (quant_path.empty() || f32_path.empty())
    return moe::test::skip("tiny-dsv4.MXFP4_MOE.gguf or tiny-dsv4.f32.gguf absent from ../shared/fixtures/models");
  const moe::GgufFile quant = moe::GgufFile::open(quant_path);
  const moe::GgufFile ref = moe::GgufFile::open(f32_path);
  int n_mxfp4 = 0, identical = 0;
  double worst_rel = 0;
  for (const moe::GgufTensorInfo& t : quant.tensors()) {
    if (t.type != GgmlType::MXFP4) continue;
    CAPTURE(t.name);
    ++n_mxfp4;
    // llama-quantize's MXFP4_MOE gives MXFP4 to the expert stacks only.
    CHECK(t.name.find("_exps.weight") != std::string::npos);
    const moe::GgufTensorInfo* src = ref.find_tensor(t.name);
    REQUIRE(src != nullptr);
    REQUIRE(src->type == GgmlType::F32);
    REQUIRE(src->shape == t.shape);
    const int64_t row = t.ne(0), rows = t.n_rows();
    const auto* x = reinterpret_cast<const float*>(src->data);

    std::vector<uint8_t> ours(t.nbytes);
    moe::quantize_rows(GgmlType::MXFP4, x, ours.data(), rows, row, nullptr);
    if (std::memcmp(ours.data(), t.data, t.nbytes) == 0) {
      ++identical;
    } else {
      int64_t blocks = 0, first = -1;
      for (size_t b = 0; b < t.nbytes / 17; ++b)
        if (std::memcmp(&ours[17 * b], t.data + 17 * b, 17) != 0) first = first < 0 ? int64_t(b) : first, ++blocks;
      FAIL_CHECK(blocks << " of " << t.nbytes / 17 << " blocks differ, the first is block " << first << " (e "
                        << int(ours[size_t(17 * first)]) << " here, " << int(t.data[17 * first]) << " in the file)");
    }

    // The fixture's blocks against the f32 weights: each element within the
    // largest rounding step of its block's grid (values 8 and 12, 4 d apart,
    // or the clip from under 16 d to 12 d: 4 d either way).
    const std::vector<float> deq = moe::dequantize_tensor_ref(GgmlType::MXFP4, t.data, t.n_elements);
    double err2 = 0, ref2 = 0;
    int64_t outside = 0;
    for (int64_t i = 0; i < t.n_elements; ++i) {
      const double d = moe::e8m0_to_fp32_half(t.data[17 * (i / 32)]);
      const double err = std::fabs(double(deq[size_t(i)]) - x[i]);
      if (err > 4 * d) ++outside;
      err2 += err * err;
      ref2 += double(x[i]) * x[i];
    }
    CHECK(outside == 0);
    REQUIRE(ref2 > 0);
    const double rel = std::sqrt(err2 / ref2);
    worst_rel = std::max(worst_rel, rel);
    CHECK(rel <= kMxfp4RelRmsBound);
  }
  MESSAGE(identical << " / " << n_mxfp4 << " MXFP4 tensors identical; worst relative RMS error " << worst_rel);
  // tiny-dsv4: four layers, each with ffn_{gate,up,down}_exps.
  CHECK(n_mxfp4 == 12);
  CHECK(identical == n_mxfp4);
}

TEST_CASE("moe-quantize MXFP4_MOE: tiny-dsv4.f32 gives the llama.cpp fixture, tensor for tensor and byte for byte") {
  const std::string in = moe::test::shared_fixture("models/tiny-dsv4.f32.gguf");
  const std::string fixture = moe::test::shared_fixture("models/tiny-dsv4.MXFP4_MOE.gguf");
  if (in.empty() || fixture.empty())
    return moe::test::skip("tiny-dsv4.f32.gguf or tiny-dsv4.MXFP4_MOE.gguf absent from ../shared/fixtures/models");
  const std::string out = moe::test::temp_dir() + "/tiny-dsv4.MXFP4_MOE.gguf";
  const auto r = moe::test::run_command({moe::test::bin_dir() + "/moe-quantize", in, out, "MXFP4_MOE", "-t", "2"});
  REQUIRE_MESSAGE(r.exit_code == 0, r.err);
  const moe::GgufFile ours = moe::GgufFile::open(out);
  const moe::GgufFile want = moe::GgufFile::open(fixture);
  CHECK(ours.get_u32("general.file_type") == 38);
  REQUIRE(ours.tensors().size() == want.tensors().size());
  int n_mxfp4 = 0;
  for (size_t i = 0; i < want.tensors().size(); ++i) {
    const moe::GgufTensorInfo& a = ours.tensors()[i];
    const moe::GgufTensorInfo& b = want.tensors()[i];
    CAPTURE(b.name);
    CHECK(a.name == b.name);  // llama-quantize's order
    CHECK(moe::ggml_type_name(a.type) == std::string(moe::ggml_type_name(b.type)));
    CHECK(a.shape == b.shape);
    CHECK((a.nbytes == b.nbytes && std::memcmp(a.data, b.data, a.nbytes) == 0));
    n_mxfp4 += b.type == GgmlType::MXFP4;
  }
  CHECK(n_mxfp4 == 12);
  // And the metadata too: the whole file is llama-quantize's.
  CHECK(moe::test::read_file(out) == moe::test::read_file(fixture));
}
