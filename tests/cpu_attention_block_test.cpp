// The chunked MLA attention kernels (cpu/attention_block.h) against their
// scalar reference, mla_attend_heads run per token: causal rows, chunks of
// keys cut anywhere, row tiles with fewer than 8 rows, widths that are not
// multiples of 16, and generation's parts merged in any number.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/attention.h"
#include "core/fp16.h"
#include "cpu/attention_block.h"
#include "cpu/latent_rows.h"
#include "test_util.h"

using namespace moe;

namespace {

struct Shape {
  int64_t n_tok, n_heads, n_kv0, dim_qk, dim_v;
};

// Inputs with padding between rows, the reference output, and args for the
// kernels writing into `got`.
struct Case {
  std::vector<float> kv, q, want, got;
  std::vector<uint16_t> kv_bf16;
  MlaAttendBlockArgs args;
  // bf16: the cache rows and queries are rounded to bf16 first (the kernels
  // read such rows and round queries so), the reference sums the rounded values.
  // v_offset: the values after the keys in each row (the decompressed form).
  Case(const Shape& sh, std::mt19937& rng, float spread, bool bf16 = false, int64_t v_offset = 0) {
    std::normal_distribution<float> normal(0.0f, spread);
    const int64_t n_kv = sh.n_kv0 + sh.n_tok - 1, kv_stride = std::max(sh.dim_qk, v_offset + sh.dim_v) + 3;
    const int64_t q_head = sh.dim_qk + 1, q_tok = q_head * sh.n_heads + 5;
    const int64_t o_head = sh.dim_v + 2, o_tok = o_head * sh.n_heads + 1;
    kv.resize(static_cast<size_t>(n_kv * kv_stride));
    q.resize(static_cast<size_t>(sh.n_tok * q_tok));
    for (float& v : kv) v = normal(rng);
    for (float& v : q) v = normal(rng);
    if (bf16) {
      for (float& v : kv) v = bf16_to_fp32(fp32_to_bf16(v));
      for (float& v : q) v = bf16_to_fp32(fp32_to_bf16(v));
      for (const float v : kv) kv_bf16.push_back(fp32_to_bf16(v));
    }
    const float scale = 1.0f / std::sqrt(static_cast<float>(sh.dim_qk));
    want.assign(static_cast<size_t>(sh.n_tok * o_tok), 0.0f);
    got = want;
    std::vector<float> scores(static_cast<size_t>(sh.n_heads * n_kv));
    for (int64_t t = 0; t < sh.n_tok; ++t) {
      MlaAttendArgs a;
      a.q = q.data() + t * q_tok, a.n_heads = sh.n_heads, a.q_stride = q_head;
      a.kv = kv.data(), a.kv_stride = kv_stride, a.n_kv = sh.n_kv0 + t;
      a.dim_qk = sh.dim_qk, a.dim_v = sh.dim_v, a.v_offset = v_offset, a.scale = scale, a.scores = scores.data();
      a.out = want.data() + t * o_tok, a.out_stride = o_head;
      mla_attend_heads(a);
    }
    MlaAttendBlockArgs& b = args;
    b.q = q.data(), b.n_tok = sh.n_tok, b.n_heads = sh.n_heads, b.q_tok_stride = q_tok, b.q_head_stride = q_head;
    b.kv = bf16 ? static_cast<const void*>(kv_bf16.data()) : kv.data(), b.kv_stride = kv_stride, b.n_kv0 = sh.n_kv0, b.dim_qk = sh.dim_qk, b.dim_v = sh.dim_v;
    b.v_offset = v_offset, b.scale = scale, b.scratch = nullptr;
    b.out = got.data(), b.out_tok_stride = o_tok, b.out_head_stride = o_head;
  }
  // The sums run in another order and products are fused, so the scores
  // differ by a few roundings of their size: outputs of unit-scale inputs
  // agree to 1.5e-5 (measured up to 8e-6); inputs 4x as large make scores
  // 16x as large, and their roundings with them (measured up to 3.3e-5).
  double check(float tol) const {
    double worst = 0.0;
    for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
    CHECK(worst < tol);
    // Padding between rows untouched (the kernel writes only dim_v per row).
    CHECK(got[static_cast<size_t>(args.dim_v)] == 0.0f);
    return worst;
  }
};

const Shape kShapes[] = {{8, 16, 1, 576, 512}, {5, 3, 33, 40, 33}, {1, 1, 70, 17, 16}, {8, 16, 100, 72, 64},
                         {3, 7, 31, 64, 48},   {8, 2, 2, 24, 16},  {2, 16, 300, 576, 512}, {1, 4, 129, 33, 20}};

}  // namespace

TEST_CASE("attention blocks: agree with the per-token reference") {
  const MlaAttendBlockFn block = mla_attend_block_kernel();
  if (!block) return test::skip("this CPU or build has no AVX-512");
  std::mt19937 rng(5);
  for (const float spread : {1.0f, 4.0f}) {  // 4: scores far apart, the running maximum moves
    for (const Shape& sh : kShapes) {
      INFO("n_tok=" << sh.n_tok << " heads=" << sh.n_heads << " n_kv0=" << sh.n_kv0 << " qk=" << sh.dim_qk
                    << " v=" << sh.dim_v << " spread=" << spread);
      Case c(sh, rng, spread);
      std::vector<float> scratch(mla_attend_block_scratch_floats(sh.n_tok, sh.n_heads, sh.dim_qk, sh.dim_v), NAN);
      c.args.scratch = scratch.data();
      block(c.args);
      c.check(spread == 1.0f ? 1.5e-5f : 1e-4f);
    }
  }
}

// The decompressed form's rows [k_nope | k_rope | v]: one head per call,
// many tokens, values after the keys.
TEST_CASE("attention blocks with values after the keys: agree with the per-token reference") {
  const MlaAttendBlockFn block = mla_attend_block_kernel();
  if (!block) return test::skip("this CPU or build has no AVX-512");
  std::mt19937 rng(17);
  const Shape shapes[] = {{128, 1, 1, 192, 128}, {37, 1, 100, 40, 24}, {5, 2, 3, 24, 16}, {128, 1, 200, 192, 128}};
  for (const Shape& sh : shapes) {
    INFO("n_tok=" << sh.n_tok << " heads=" << sh.n_heads << " n_kv0=" << sh.n_kv0 << " qk=" << sh.dim_qk);
    Case c(sh, rng, 1.0f, false, sh.dim_qk);
    std::vector<float> scratch(mla_attend_block_scratch_floats(sh.n_tok, sh.n_heads, sh.dim_qk, sh.dim_v), NAN);
    c.args.scratch = scratch.data();
    block(c.args);
    c.check(1.5e-5f);
  }
}

TEST_CASE("attention parts: any split of the cached rows merges to the reference") {
  const MlaAttendRangeFn range = mla_attend_range_kernel();
  if (!range) return test::skip("this CPU or build has no AVX-512");
  std::mt19937 rng(9);
  for (const Shape& sh : kShapes) {
    const int64_t n_kv = sh.n_kv0 + sh.n_tok - 1, rows = sh.n_tok * sh.n_heads;
    // One part, parts of 1 row, of 7, and cuts that leave the first
    // tokens' rows with nothing in the last parts.
    for (const int64_t part : {n_kv, int64_t{1}, int64_t{7}, (n_kv + 1) / 2}) {
      INFO("n_tok=" << sh.n_tok << " heads=" << sh.n_heads << " n_kv0=" << sh.n_kv0 << " part=" << part);
      Case c(sh, rng, 1.0f);
      const int64_t n_parts = (n_kv + part - 1) / part;
      std::vector<float> scratch(mla_attend_block_scratch_floats(sh.n_tok, sh.n_heads, sh.dim_qk, sh.dim_v), NAN);
      std::vector<float> states(mla_attend_state_floats(rows, sh.dim_v) * static_cast<size_t>(n_parts), NAN);
      std::vector<MlaAttendState> parts;
      c.args.scratch = scratch.data();
      for (int64_t j = 0; j < n_parts; ++j) {
        parts.push_back(mla_attend_state_carve(states.data() + j * mla_attend_state_floats(rows, sh.dim_v), rows));
        mla_attend_state_init(parts.back(), rows, sh.dim_v);
        range(c.args, j * part, std::min(n_kv, (j + 1) * part), parts.back());
      }
      mla_attend_merge(c.args, parts.data(), static_cast<int>(n_parts));
      c.check(1.5e-5f);
    }
  }
}

// bf16 cache rows: on top of the order of the sums, each probability is
// rounded to bf16 (8 bits) before it weights a value row, so an output
// (a weighted mean of unit-scale values) moves by up to ~2^-9 of the values
// it averages; measured up to 2.7e-3 here (two keys of similar weight).
TEST_CASE("attention over bf16 cache rows: blocks and parts agree with the reference on the rounded rows") {
  const MlaAttendBlockFn block = mla_attend_block_kernel_bf16();
  const MlaAttendRangeFn range = mla_attend_range_kernel_bf16();
  if (!block || !range) return test::skip("this CPU or build has no AVX512-BF16");
  std::mt19937 rng(11);
  double worst = 0.0;
  for (const Shape& sh : kShapes) {
    INFO("n_tok=" << sh.n_tok << " heads=" << sh.n_heads << " n_kv0=" << sh.n_kv0 << " qk=" << sh.dim_qk
                  << " v=" << sh.dim_v);
    Case c(sh, rng, 1.0f, true);
    std::vector<float> scratch(mla_attend_block_scratch_floats(sh.n_tok, sh.n_heads, sh.dim_qk, sh.dim_v), NAN);
    c.args.scratch = scratch.data();
    block(c.args);
    worst = std::max(worst, c.check(5e-3f));

    // Generation's way: parts of 5 cached rows, merged.
    std::fill(c.got.begin(), c.got.end(), 0.0f);
    const int64_t n_kv = sh.n_kv0 + sh.n_tok - 1, rows = sh.n_tok * sh.n_heads, part = 5;
    const int64_t n_parts = (n_kv + part - 1) / part;
    const size_t per_state = mla_attend_state_floats(rows, sh.dim_v);
    std::vector<float> states(per_state * static_cast<size_t>(n_parts), NAN);
    std::vector<MlaAttendState> parts;
    for (int64_t j = 0; j < n_parts; ++j) {
      parts.push_back(mla_attend_state_carve(states.data() + j * per_state, rows));
      mla_attend_state_init(parts.back(), rows, sh.dim_v);
      range(c.args, j * part, std::min(n_kv, (j + 1) * part), parts.back());
    }
    mla_attend_merge(c.args, parts.data(), static_cast<int>(n_parts));
    worst = std::max(worst, c.check(5e-3f));
  }
  MESSAGE("bf16 attention: worst |difference| " << worst);
}

// f16, bf16 (without AVX512-BF16) and q8_0 cache rows are decoded a chunk
// at a time and attended by the f32 kernel, so over the same rows decoded
// (dequantize_row_ref's values) they must give the f32 kernels' outputs
// exactly, prompts' blocks and generation's parts alike.
TEST_CASE("attention over f16, bf16 and q8_0 cache rows decoded: exactly the f32 kernels' over the decoded rows") {
  if (!mla_attend_block_kernel()) return test::skip("this CPU or build has no AVX-512");
  for (const LatentType type : {LatentType::kF32, LatentType::kF16, LatentType::kBf16, LatentType::kQ8_0}) {
    const MlaAttendKernels k = mla_attend_kernels(latent_ggml_type(type));
    CHECK_MESSAGE((k.block && k.range), latent_type_name(type));  // every type has kernels with AVX-512
  }
  std::mt19937 rng(13);
  for (const LatentType type : {LatentType::kF16, LatentType::kBf16, LatentType::kQ8_0}) {
    const MlaAttendKernels k = {mla_attend_block_kernel_decoded(latent_ggml_type(type)),
                                mla_attend_range_kernel_decoded(latent_ggml_type(type))};
    REQUIRE((k.block && k.range));
    for (const Shape& sh : kShapes) {
      INFO(latent_type_name(type) << " n_tok=" << sh.n_tok << " heads=" << sh.n_heads << " n_kv0=" << sh.n_kv0
                                  << " qk=" << sh.dim_qk << " v=" << sh.dim_v);
      Case c(sh, rng, 1.0f);
      // The rows stored in `type`, a float of padding after each; the f32
      // rows replaced by their decoded values.
      const int64_t n_kv = sh.n_kv0 + sh.n_tok - 1, f32_stride = c.args.kv_stride;
      const int64_t cols = LatentCache::storage_cols(type, sh.dim_qk) + 1;
      std::vector<float> stored(static_cast<size_t>(n_kv * cols), NAN);
      for (int64_t s = 0; s < n_kv; ++s) {
        latent_row_encode(type, c.kv.data() + s * f32_stride, sh.dim_qk, stored.data() + s * cols);
        latent_row_decode(type, stored.data() + s * cols, sh.dim_qk, c.kv.data() + s * f32_stride);
      }
      std::vector<float> scratch(mla_attend_block_scratch_floats(sh.n_tok, sh.n_heads, sh.dim_qk, sh.dim_v), NAN);
      c.args.scratch = scratch.data();
      mla_attend_block_kernel()(c.args);
      const std::vector<float> want = c.got;
      MlaAttendBlockArgs a = c.args;
      a.kv = stored.data();
      a.kv_stride = cols * (type == LatentType::kQ8_0 ? 4 : 2);  // bytes for q8_0, values for f16 and bf16
      std::fill(c.got.begin(), c.got.end(), 0.0f);
      k.block(a);
      CHECK(c.got == want);

      // Generation's way, both: parts of 5 cached rows, merged.
      const int64_t rows = sh.n_tok * sh.n_heads, part = 5, n_parts = (n_kv + part - 1) / part;
      const size_t per_state = mla_attend_state_floats(rows, sh.dim_v);
      std::vector<float> states(per_state * static_cast<size_t>(n_parts), NAN);
      const auto parts_of = [&](MlaAttendRangeFn range, const MlaAttendBlockArgs& args) {
        std::vector<MlaAttendState> parts;
        std::fill(c.got.begin(), c.got.end(), 0.0f);
        for (int64_t j = 0; j < n_parts; ++j) {
          parts.push_back(mla_attend_state_carve(states.data() + j * per_state, rows));
          mla_attend_state_init(parts.back(), rows, sh.dim_v);
          range(args, j * part, std::min(n_kv, (j + 1) * part), parts.back());
        }
        mla_attend_merge(args, parts.data(), static_cast<int>(n_parts));
        return c.got;
      };
      CHECK(parts_of(k.range, a) == parts_of(mla_attend_range_kernel(), c.args));
    }
  }
}

// The vector decoders of typed cache rows give the reference's values, bit
// for bit, for every type and row length (a q8_0 row that ends inside a
// block takes the reference; rows with infinities and zeros included).
TEST_CASE("latent rows: the vector decoders equal latent_row_decode_ref for every type and length") {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  int fast_kinds = 0;
  for (const LatentType type : {LatentType::kF16, LatentType::kBf16, LatentType::kQ8_0}) {
    for (const int64_t dim : {1, 15, 16, 17, 32, 40, 64, 96, 128, 512, 576}) {
      CAPTURE(std::string(latent_type_name(type)));
      CAPTURE(dim);
      fast_kinds += latent_row_decode_kernel(type, dim) != nullptr;
      std::vector<float> x(static_cast<size_t>(dim));
      for (float& v : x) v = normal(rng);
      x[0] = 0.0f;
      if (dim > 2 && type != LatentType::kQ8_0) x[1] = INFINITY, x[2] = -1e-7f;
      std::vector<float> stored(static_cast<size_t>(LatentCache::storage_cols(type, dim)));
      latent_row_encode(type, x.data(), dim, stored.data());
      std::vector<float> want(x.size() + 32, 7.0f), got(x.size() + 32, 7.0f);
      latent_row_decode_ref(type, stored.data(), dim, want.data());
      latent_row_decode(type, stored.data(), dim, got.data());
      REQUIRE(std::memcmp(want.data(), got.data(), x.size() * sizeof(float)) == 0);
      // Nothing written past the row's dim values.
      for (size_t i = x.size(); i < got.size(); ++i) REQUIRE(got[i] == 7.0f);
    }
  }
  if (fast_kinds == 0) MESSAGE("no vector decoders on this CPU: the reference decoded both sides");
}
