// Block formats: hand-built blocks decode to exact known values.
//
// Each test packs bytes itself, at the byte offsets and bit positions that
// ggml-common.h and llama.cpp's quantize_row_*_ref describe, with exactly
// representable scales, and computes the expected floats from the intended
// integer quants, scales and mins -- never by calling our decoders. The quant
// patterns are pseudo-random, so a swapped nibble order, a wrong scale index,
// a misplaced high bit, a wrong sign offset or a wrong field order all fail.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <ios>
#include <limits>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "core/fp16.h"
#include "core/ggml_type.h"
#include "quant/blocks.h"
#include "quant/blocks_iq.h"
#include "quant/dequantize.h"
#include "test_util.h"

namespace {

using moe::GgmlType;
using Bytes = std::vector<uint8_t>;

// Deterministic pseudo-random integers in [lo, hi].
struct Pattern {
  uint64_t state;
  explicit Pattern(uint64_t seed) : state(seed * 0x9E3779B97F4A7C15ull + 1) {}
  int next(int lo, int hi) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + static_cast<int>((state >> 33) % static_cast<uint64_t>(hi - lo + 1));
  }
};

uint16_t half_bits(float v) {
  const uint16_t h = moe::fp32_to_fp16(v);
  REQUIRE_MESSAGE(moe::fp16_to_fp32(h) == v, "test scale " << v << " is not exact in fp16");
  return h;
}

void put_u16(Bytes& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v & 0xff);
  b[off + 1] = static_cast<uint8_t>(v >> 8);
}
void put_half(Bytes& b, size_t off, float v) { put_u16(b, off, half_bits(v)); }
void put_f32(Bytes& b, size_t off, float v) {
  const uint32_t u = moe::f32_to_bits(v);
  for (int k = 0; k < 4; ++k) b[off + k] = static_cast<uint8_t>(u >> (8 * k));
}
// ORs the low `width` bits of v into byte `off` at bit `shift` (bytes start zeroed).
void put_bits(Bytes& b, size_t off, int shift, int width, unsigned v) {
  REQUIRE(v < (1u << width));
  b[off] = static_cast<uint8_t>(b[off] | (v << shift));
}

// Decodes `bytes` (aligned and misaligned) and checks every element against
// the expected value, which must itself be exact in fp32.
void check_row(GgmlType type, const Bytes& bytes, const std::vector<double>& expected) {
  const int64_t n = static_cast<int64_t>(expected.size());
  REQUIRE(bytes.size() == moe::ggml_row_size(type, n));
  std::vector<float> y(expected.size(), -12345.0f);
  moe::dequantize_row_ref(type, bytes.data(), y.data(), n);

  Bytes shifted(bytes.size() + 1);  // the reference takes any alignment
  std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
  std::vector<float> y2(expected.size(), -12345.0f);
  moe::dequantize_row_ref(type, shifted.data() + 1, y2.data(), n);

  int bad = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    const float e = static_cast<float>(expected[i]);
    REQUIRE_MESSAGE(static_cast<double>(e) == expected[i], "expected value not exact in fp32");
    if (y[i] != e || y2[i] != e) {
      if (bad < 8)
        FAIL_CHECK(moe::ggml_type_name(type) << " element " << i << ": got " << y[i]
                                             << " (misaligned " << y2[i] << "), expected " << e);
      ++bad;
    }
  }
  CHECK(bad == 0);
}

// Packs Q4_K / Q5_K scale j (0..7) and min j (6 bits each) into the 12 scale
// bytes at `off`, the way quantize_row_q4_K_ref does.
void put_k4_scale_min(Bytes& b, size_t off, int j, unsigned sc, unsigned m) {
  REQUIRE(sc < 64);
  REQUIRE(m < 64);
  if (j < 4) {
    put_bits(b, off + j, 0, 6, sc);
    put_bits(b, off + j + 4, 0, 6, m);
  } else {
    put_bits(b, off + j + 4, 0, 4, sc & 0xf);
    put_bits(b, off + j + 4, 4, 4, m & 0xf);
    put_bits(b, off + j - 4, 6, 2, sc >> 4);
    put_bits(b, off + j, 6, 2, m >> 4);
  }
}

}  // namespace

TEST_CASE("f32 f16 and bf16 rows decode exactly with special values") {
  SUBCASE("f32 is a copy") {
    const std::vector<float> v = {1.5f, -0.0f, 3.0e-39f, std::numeric_limits<float>::max(),
                                  -std::numeric_limits<float>::infinity(), 0.1f};
    Bytes b(v.size() * 4);
    for (size_t i = 0; i < v.size(); ++i) put_f32(b, 4 * i, v[i]);
    std::vector<float> y(v.size());
    moe::dequantize_row_ref(GgmlType::F32, b.data(), y.data(), static_cast<int64_t>(v.size()));
    for (size_t i = 0; i < v.size(); ++i) CHECK(moe::f32_to_bits(y[i]) == moe::f32_to_bits(v[i]));
  }
  SUBCASE("f16") {
    const uint16_t h[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x8400, 0x7c00, 0xfc00,
                          0x3555, 0x0000, 0x8000, 0x4248};
    const float want[] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, 1023 * 0x1p-24f, -0x1p-14f,
                          std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(),
                          0.333251953125f, 0.0f, -0.0f, 3.140625f};
    Bytes b(sizeof h);
    for (size_t i = 0; i < std::size(h); ++i) put_u16(b, 2 * i, h[i]);
    std::vector<float> y(std::size(h));
    moe::dequantize_row_ref(GgmlType::F16, b.data(), y.data(), static_cast<int64_t>(std::size(h)));
    for (size_t i = 0; i < std::size(h); ++i)
      CHECK(moe::f32_to_bits(y[i]) == moe::f32_to_bits(want[i]));
    Bytes nan(2);
    put_u16(nan, 0, 0x7e01);
    float yn = 0;
    moe::dequantize_row_ref(GgmlType::F16, nan.data(), &yn, 1);
    CHECK(std::isnan(yn));
  }
  SUBCASE("bf16") {
    const uint16_t h[] = {0x3f80, 0xc040, 0x7f80, 0x0001, 0x4049, 0x8000, 0x7f7f};
    const float want[] = {1.0f, -3.0f, std::numeric_limits<float>::infinity(), 0x1p-133f, 3.140625f,
                          -0.0f, moe::f32_from_bits(0x7f7f0000u)};
    Bytes b(sizeof h);
    for (size_t i = 0; i < std::size(h); ++i) put_u16(b, 2 * i, h[i]);
    std::vector<float> y(std::size(h));
    moe::dequantize_row_ref(GgmlType::BF16, b.data(), y.data(), static_cast<int64_t>(std::size(h)));
    for (size_t i = 0; i < std::size(h); ++i)
      CHECK(moe::f32_to_bits(y[i]) == moe::f32_to_bits(want[i]));
  }
}

TEST_CASE("q4_0: d at byte 0 then element j in the low nibble of qs[j] and j+16 in the high one") {
  // Hand example first: byte 0x1f with d = 1 is element 0 = 15 - 8, element 16 = 1 - 8.
  Bytes one(18);
  put_half(one, 0, 1.0f);
  one[2] = 0x1f;
  std::vector<double> want(32, -8.0);
  want[0] = 7;
  want[16] = -7;
  check_row(GgmlType::Q4_0, one, want);

  const float d[] = {0.5f, -3.0f, 0.0078125f};
  Bytes b(3 * 18);
  std::vector<double> e;
  Pattern p(1);
  for (int blk = 0; blk < 3; ++blk) {
    const size_t o = 18 * blk;
    put_half(b, o, d[blk]);
    for (int i = 0; i < 32; ++i) {
      const int q = p.next(0, 15);
      put_bits(b, o + 2 + i % 16, 4 * (i / 16), 4, q);
      e.push_back((q - 8) * static_cast<double>(d[blk]));
    }
  }
  check_row(GgmlType::Q4_0, b, e);
}

TEST_CASE("q4_1: d then m then nibbles with x = q * d + m") {
  const float d[] = {0.25f, 2.0f};
  const float m[] = {-1.5f, 3.75f};
  Bytes b(2 * 20);
  std::vector<double> e;
  Pattern p(2);
  for (int blk = 0; blk < 2; ++blk) {
    const size_t o = 20 * blk;
    put_half(b, o, d[blk]);
    put_half(b, o + 2, m[blk]);
    for (int i = 0; i < 32; ++i) {
      const int q = p.next(0, 15);
      put_bits(b, o + 4 + i % 16, 4 * (i / 16), 4, q);
      e.push_back(q * static_cast<double>(d[blk]) + m[blk]);
    }
  }
  check_row(GgmlType::Q4_1, b, e);
}

TEST_CASE("q5_0: d then qh (bit i = fifth bit of element i) then nibbles with x = (q - 16) * d") {
  const float d[] = {0.5f, -0.125f};
  Bytes b(2 * 22);
  std::vector<double> e;
  Pattern p(3);
  for (int blk = 0; blk < 2; ++blk) {
    const size_t o = 22 * blk;
    put_half(b, o, d[blk]);
    for (int i = 0; i < 32; ++i) {
      const int q = p.next(0, 31);
      put_bits(b, o + 2 + i / 8, i % 8, 1, q >> 4);
      put_bits(b, o + 6 + i % 16, 4 * (i / 16), 4, q & 0xf);
      e.push_back((q - 16) * static_cast<double>(d[blk]));
    }
  }
  check_row(GgmlType::Q5_0, b, e);
}

TEST_CASE("q5_1: d then m then qh then nibbles with x = q * d + m") {
  const float d[] = {0.0625f, 1.5f};
  const float m[] = {-2.0f, 0.375f};
  Bytes b(2 * 24);
  std::vector<double> e;
  Pattern p(4);
  for (int blk = 0; blk < 2; ++blk) {
    const size_t o = 24 * blk;
    put_half(b, o, d[blk]);
    put_half(b, o + 2, m[blk]);
    for (int i = 0; i < 32; ++i) {
      const int q = p.next(0, 31);
      put_bits(b, o + 4 + i / 8, i % 8, 1, q >> 4);
      put_bits(b, o + 8 + i % 16, 4 * (i / 16), 4, q & 0xf);
      e.push_back(q * static_cast<double>(d[blk]) + m[blk]);
    }
  }
  check_row(GgmlType::Q5_1, b, e);
}

TEST_CASE("q8_0 and q8_1: signed bytes times d and q8_1's sum field is ignored") {
  for (const GgmlType type : {GgmlType::Q8_0, GgmlType::Q8_1}) {
    CAPTURE(moe::ggml_type_name(type));
    const size_t bs = type == GgmlType::Q8_0 ? 34 : 36;
    const size_t qs = type == GgmlType::Q8_0 ? 2 : 4;
    const float d[] = {0.5f, -7.0f, 0.001953125f};
    Bytes b(3 * bs);
    std::vector<double> e;
    Pattern p(5);
    for (int blk = 0; blk < 3; ++blk) {
      const size_t o = bs * blk;
      put_half(b, o, d[blk]);
      if (type == GgmlType::Q8_1) put_half(b, o + 2, 1000.0f);  // s: not used to decode
      for (int i = 0; i < 32; ++i) {
        const int q = i == 0 ? -128 : p.next(-128, 127);
        b[o + qs + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
        e.push_back(q * static_cast<double>(d[blk]));
      }
    }
    check_row(type, b, e);
  }
}

TEST_CASE("mxfp4: E8M0 exponent e then nibbles as q4_0's, x = E2M1(q) * 2^(e - 127)") {
  // E2M1 from the OCP MX spec: sign, 2 exponent bits (bias 1), 1 mantissa bit;
  // exponent 0 is subnormal (0 or 0.5).
  auto e2m1 = [](int q) {
    const int sign = q >> 3, exp = (q >> 1) & 3, mant = q & 1;
    const double mag = exp == 0 ? 0.5 * mant : std::ldexp(1.0 + 0.5 * mant, exp - 1);
    return sign ? -mag : mag;
  };
  // Hand example: e = 127 (scale 1), byte 0xf7 is element 0 = 6 and element 16 = -6.
  Bytes one(17);
  one[0] = 127;
  one[1] = 0xf7;
  std::vector<double> want(32, 0.0);
  want[0] = 6;
  want[16] = -6;
  check_row(GgmlType::MXFP4, one, want);

  // e = 0 and 1: ggml's denormal half scales (the block scale 2^-127 and 2^-126).
  const int exps[] = {0, 1, 2, 100, 127, 128, 150, 252};  // 252: 6 * 2^125 is still finite
  Bytes b(17 * std::size(exps));
  std::vector<double> e;
  Pattern p(6);
  for (size_t blk = 0; blk < std::size(exps); ++blk) {
    const size_t o = 17 * blk;
    b[o] = static_cast<uint8_t>(exps[blk]);
    for (int i = 0; i < 32; ++i) {
      const int q = i < 16 ? i : p.next(0, 15);  // every code once, then at random
      put_bits(b, o + 1 + i % 16, 4 * (i / 16), 4, static_cast<unsigned>(q));
      e.push_back(std::ldexp(e2m1(q), exps[blk] - 127));
    }
  }
  check_row(GgmlType::MXFP4, b, e);
}

TEST_CASE("q2_K: 4-bit scales and mins then 2-bit planes then d and dmin") {
  // Element i: qs byte 32 * (i / 128) + i % 32 at bits 2 * ((i % 128) / 32);
  // sub-block i / 16 takes scale byte i / 16.
  const float d[] = {0.5f, 0.25f};
  const float dmin[] = {0.125f, -1.0f};
  Bytes b(2 * 84);
  std::vector<double> e;
  Pattern p(6);
  for (int blk = 0; blk < 2; ++blk) {
    const size_t o = 84 * blk;
    int sc[16], mn[16];
    for (int j = 0; j < 16; ++j) {
      sc[j] = p.next(0, 15);
      mn[j] = p.next(0, 15);
      put_bits(b, o + j, 0, 4, sc[j]);
      put_bits(b, o + j, 4, 4, mn[j]);
    }
    put_half(b, o + 80, d[blk]);
    put_half(b, o + 82, dmin[blk]);
    for (int i = 0; i < 256; ++i) {
      const int q = p.next(0, 3);
      put_bits(b, o + 16 + 32 * (i / 128) + i % 32, 2 * ((i % 128) / 32), 2, q);
      e.push_back(static_cast<double>(d[blk]) * sc[i / 16] * q -
                  static_cast<double>(dmin[blk]) * mn[i / 16]);
    }
  }
  check_row(GgmlType::Q2_K, b, e);
}

TEST_CASE("q3_K: hmask then 2-bit planes then sixteen packed 6-bit scales then d") {
  // Element i: low 2 bits as q2_K; high bit = bit i / 32 of hmask byte i % 32,
  // set means q = low, clear means q = low - 4. Scale j (stored j + 32): low 4
  // bits in byte j (j < 8) or the high nibble of byte j - 8, high 2 bits in
  // byte 8 + j % 4 at bit 2 * (j / 4) -- as quantize_row_q3_K_ref packs them.
  const float d[] = {0.25f, -0.5f};
  Bytes b(2 * 110);
  std::vector<double> e;
  Pattern p(7);
  for (int blk = 0; blk < 2; ++blk) {
    const size_t o = 110 * blk;
    int sc[16];
    for (int j = 0; j < 16; ++j) {
      sc[j] = j == 0 ? -32 : p.next(-32, 31);
      const unsigned stored = static_cast<unsigned>(sc[j] + 32);
      if (j < 8) put_bits(b, o + 96 + j, 0, 4, stored & 0xf);
      else put_bits(b, o + 96 + j - 8, 4, 4, stored & 0xf);
      put_bits(b, o + 96 + 8 + j % 4, 2 * (j / 4), 2, stored >> 4);
    }
    put_half(b, o + 108, d[blk]);
    for (int i = 0; i < 256; ++i) {
      const int q = p.next(-4, 3);
      const bool high = q >= 0;
      put_bits(b, o + i % 32, i / 32, 1, high ? 1 : 0);
      put_bits(b, o + 32 + 32 * (i / 128) + i % 32, 2 * ((i % 128) / 32), 2, high ? q : q + 4);
      e.push_back(static_cast<double>(d[blk]) * sc[i / 16] * q);
    }
  }
  check_row(GgmlType::Q3_K, b, e);
}

TEST_CASE("q4_K: d and dmin then 6-bit scales and mins then nibbles in 32-byte groups") {
  // Element i: qs byte 32 * (i / 64) + i % 32, low nibble when (i % 64) < 32;
  // sub-block i / 32 uses scale and min i / 32.
  const float d[] = {0.0625f, 0.5f, -0.25f};
  const float dmin[] = {0.125f, 0.0078125f, 2.0f};
  Bytes b(3 * 144);
  std::vector<double> e;
  Pattern p(8);
  for (int blk = 0; blk < 3; ++blk) {
    const size_t o = 144 * blk;
    put_half(b, o, d[blk]);
    put_half(b, o + 2, dmin[blk]);
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = p.next(0, 63);
      mn[j] = p.next(0, 63);
      if (blk == 0 && j == 5) sc[j] = 63, mn[j] = 48;  // high bits set for an upper sub-block
      put_k4_scale_min(b, o + 4, j, sc[j], mn[j]);
    }
    for (int i = 0; i < 256; ++i) {
      const int q = p.next(0, 15);
      put_bits(b, o + 16 + 32 * (i / 64) + i % 32, 4 * ((i % 64) / 32), 4, q);
      e.push_back(static_cast<double>(d[blk]) * sc[i / 32] * q -
                  static_cast<double>(dmin[blk]) * mn[i / 32]);
    }
  }
  check_row(GgmlType::Q4_K, b, e);
}

TEST_CASE("q5_K: d and dmin then 6-bit scales and mins then qh then nibbles") {
  // Element i: fifth bit = bit i / 32 of qh byte i % 32, low 4 bits as in q4_K.
  const float d[] = {0.125f, -1.0f};
  const float dmin[] = {0.5f, 0.03125f};
  Bytes b(2 * 176);
  std::vector<double> e;
  Pattern p(9);
  for (int blk = 0; blk < 2; ++blk) {
    const size_t o = 176 * blk;
    put_half(b, o, d[blk]);
    put_half(b, o + 2, dmin[blk]);
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) {
      sc[j] = p.next(0, 63);
      mn[j] = p.next(0, 63);
      put_k4_scale_min(b, o + 4, j, sc[j], mn[j]);
    }
    for (int i = 0; i < 256; ++i) {
      const int q = p.next(0, 31);
      put_bits(b, o + 16 + i % 32, i / 32, 1, q >> 4);
      put_bits(b, o + 48 + 32 * (i / 64) + i % 32, 4 * ((i % 64) / 32), 4, q & 0xf);
      e.push_back(static_cast<double>(d[blk]) * sc[i / 32] * q -
                  static_cast<double>(dmin[blk]) * mn[i / 32]);
    }
  }
  check_row(GgmlType::Q5_K, b, e);
}

TEST_CASE("q6_K: ql then qh then signed 8-bit scales then d with x = d * sc * (q - 32)") {
  // Per 128 elements (h = i / 128), with r = i % 128, plane = r / 32, l = r % 32:
  // low 4 bits in ql[64 h + l + 32 (plane % 2)] nibble plane / 2, high 2 bits
  // in qh[32 h + l] at bit 2 plane -- as quantize_row_q6_K_ref packs them.
  const float d[] = {0.25f, -0.0625f};
  Bytes b(2 * 210);
  std::vector<double> e;
  Pattern p(10);
  for (int blk = 0; blk < 2; ++blk) {
    const size_t o = 210 * blk;
    int sc[16];
    for (int j = 0; j < 16; ++j) {
      sc[j] = j == 3 ? -128 : p.next(-128, 127);
      b[o + 192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc[j]));
    }
    put_half(b, o + 208, d[blk]);
    for (int i = 0; i < 256; ++i) {
      const int q = i == 7 ? -32 : p.next(-32, 31);
      const unsigned stored = static_cast<unsigned>(q + 32);
      const int h = i / 128, plane = (i % 128) / 32, l = i % 32;
      put_bits(b, o + 64 * h + l + 32 * (plane % 2), 4 * (plane / 2), 4, stored & 0xf);
      put_bits(b, o + 128 + 32 * h + l, 2 * plane, 2, stored >> 4);
      e.push_back(static_cast<double>(d[blk]) * sc[i / 16] * q);
    }
  }
  check_row(GgmlType::Q6_K, b, e);
}

TEST_CASE("q8_K: fp32 d then signed bytes then bsums (ignored)") {
  const float d[] = {0.1f, -3.0e-5f};
  Bytes b(2 * 292);
  std::vector<double> e;
  Pattern p(11);
  for (int blk = 0; blk < 2; ++blk) {
    const size_t o = 292 * blk;
    put_f32(b, o, d[blk]);
    for (int i = 0; i < 256; ++i) {
      const int q = p.next(-128, 127);
      b[o + 4 + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
      // d * q is exact in double, so rounding it once to float is fp32 d * q.
      e.push_back(static_cast<double>(static_cast<float>(static_cast<double>(d[blk]) * q)));
    }
    for (int j = 0; j < 32; ++j) b[o + 260 + j] = static_cast<uint8_t>(p.next(0, 255));  // bsums
  }
  check_row(GgmlType::Q8_K, b, e);
}

TEST_CASE("block structs match the type table") {
  for (uint32_t id = 0; id < static_cast<uint32_t>(moe::kGgmlTypeIdLimit); ++id) {
    const moe::GgmlTypeTraits* t = moe::ggml_type_traits(id);
    if (t == nullptr) continue;
    CAPTURE(t->name);
    const bool has_decoder = moe::visit_block_format(static_cast<GgmlType>(id), [&]<GgmlType T>() {
      using Format = moe::BlockFormat<T>;
      CHECK(sizeof(typename Format::Block) == t->type_size);
      CHECK(Format::kElements == t->block_size);
    });
    CHECK((has_decoder || moe::is_iq_type(static_cast<GgmlType>(id))) == t->can_dequantize);
  }
}

TEST_CASE("dequantize_row_ref rejects bad sizes and unsupported types") {
  Bytes b(4096);
  std::vector<float> y(4096);
  CHECK_THROWS_AS(moe::dequantize_row_ref(GgmlType::Q4_0, b.data(), y.data(), 33), moe::Error);
  CHECK_THROWS_AS(moe::dequantize_row_ref(GgmlType::Q4_K, b.data(), y.data(), 255), moe::Error);
  CHECK_THROWS_AS(moe::dequantize_row_ref(GgmlType::Q8_0, b.data(), y.data(), -32), moe::Error);
  CHECK_NOTHROW(moe::dequantize_row_ref(GgmlType::Q4_K, nullptr, nullptr, 0));
  try {
    moe::dequantize_row_ref(GgmlType::Q6_K, b.data(), y.data(), 300);
    FAIL("no error");
  } catch (const moe::Error& err) {
    CHECK(std::string(err.what()).find("q6_K") != std::string::npos);
  }
  for (uint32_t id = 0; id < static_cast<uint32_t>(moe::kGgmlTypeIdLimit); ++id) {
    const moe::GgmlTypeTraits* t = moe::ggml_type_traits(id);
    if (t == nullptr || t->can_dequantize) continue;
    CAPTURE(t->name);
    try {
      moe::dequantize_row_ref(static_cast<GgmlType>(id), b.data(), y.data(), t->block_size);
      FAIL("no error");
    } catch (const moe::Error& err) {
      CHECK(std::string(err.what()).find(t->name) != std::string::npos);
    }
  }
  try {
    moe::dequantize_row_ref(GgmlType::TQ2_0, b.data(), y.data(), 256);
    FAIL("no error");
  } catch (const moe::Error& err) {
    CHECK(std::string(err.what()).find("tq2_0") != std::string::npos);
  }
  CHECK(moe::dequantize_tensor_ref(GgmlType::Q8_0, b.data(), 64).size() == 64);
}

// ---- fp16 / bf16 conversions -----------------------------------------------------

TEST_CASE("fp32_to_fp16 rounds to nearest even at the edges") {
  const auto f = [](float x) { return moe::fp32_to_fp16(x); };
  CHECK(f(1.0f) == 0x3c00);
  CHECK(f(1.0f + 0x1p-11f) == 0x3c00);              // tie, keeps the even 1.0
  CHECK(f(1.0f + 3 * 0x1p-11f) == 0x3c02);          // tie, rounds up to even
  CHECK(f(1.0f + 0x1p-11f + 0x1p-23f) == 0x3c01);   // just above the tie
  CHECK(f(-2.0f) == 0xc000);
  CHECK(f(65504.0f) == 0x7bff);                     // max half
  CHECK(f(65519.996f) == 0x7bff);                   // just below the tie with 65536
  CHECK(f(65520.0f) == 0x7c00);                     // tie, rounds to even: infinity
  CHECK(f(1e10f) == 0x7c00);
  CHECK(f(-1e10f) == 0xfc00);
  CHECK(f(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK(f(-std::numeric_limits<float>::infinity()) == 0xfc00);
  CHECK(f(0x1p-14f) == 0x0400);                     // min normal
  CHECK(f(0x1p-24f) == 0x0001);                     // min subnormal
  CHECK(f(0x1p-25f) == 0x0000);                     // tie with zero, to even
  CHECK(f(std::nextafter(0x1p-25f, 1.0f)) == 0x0001);
  CHECK(f(3 * 0x1p-25f) == 0x0002);                 // tie between 1 and 2 ulps, to even
  CHECK(f(5 * 0x1p-25f) == 0x0002);                 // tie between 2 and 3 ulps, to even
  CHECK(f(0x1p-14f - 0x1p-25f) == 0x0400);          // tie between max subnormal and min normal
  CHECK(f(1023 * 0x1p-24f) == 0x03ff);              // max subnormal
  CHECK(f(-0x1p-24f) == 0x8001);
  CHECK(f(1e-10f) == 0x0000);
  CHECK(f(-1e-10f) == 0x8000);
  CHECK(f(-0.0f) == 0x8000);
  const uint16_t nan = f(std::numeric_limits<float>::quiet_NaN());
  CHECK((nan & 0x7c00) == 0x7c00);
  CHECK((nan & 0x03ff) != 0);
  // A signalling nan whose payload sits only in the bits the conversion drops.
  CHECK(std::isnan(moe::fp16_to_fp32(f(moe::f32_from_bits(0x7f800001u)))));
}

TEST_CASE("fp16 -> fp32 -> fp16 round-trips all 65536 halves") {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float x = moe::fp16_to_fp32(static_cast<uint16_t>(h));
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x03ff) != 0;
    if (is_nan) {
      if (!std::isnan(x) || !std::isnan(moe::fp16_to_fp32(moe::fp32_to_fp16(x)))) ++bad;
    } else if (moe::fp32_to_fp16(x) != h) {
      ++bad;
    }
  }
  CHECK(bad == 0);
}

#if defined(__x86_64__) && defined(__GNUC__)
namespace {
__attribute__((target("f16c"))) uint16_t f16c_from_f32(float x) {
  return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float f16c_to_f32(uint16_t h) { return _cvtsh_ss(h); }
}  // namespace

TEST_CASE("fp16 conversions agree with the F16C instructions") {
  if (!__builtin_cpu_supports("f16c")) return moe::test::skip("this CPU has no F16C");
  int bad = 0;
  const auto same = [&](float x) {
    const uint16_t want = f16c_from_f32(x);
    if (moe::fp32_to_fp16(x) != want && bad++ < 8)
      FAIL_CHECK("fp32_to_fp16(" << x << " = 0x" << std::hex << moe::f32_to_bits(x) << ") = 0x"
                                 << moe::fp32_to_fp16(x) << ", F16C gives 0x" << want << std::dec);
  };
  for (uint32_t h = 0; h < 65536; ++h) {
    const float x = moe::fp16_to_fp32(static_cast<uint16_t>(h));
    const float want = f16c_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      CHECK(std::isnan(x));
      continue;
    }
    if (moe::f32_to_bits(x) != moe::f32_to_bits(want) && bad++ < 8)
      FAIL_CHECK("fp16_to_fp32(0x" << std::hex << h << std::dec << ") = " << x << ", F16C gives "
                                   << want);
    // The midpoint to the next half up (a tie) and its neighbours.
    if ((h & 0x7fff) < 0x7c00) {
      const float next = moe::fp16_to_fp32(static_cast<uint16_t>(h + 1));
      if (std::isinf(next)) continue;
      const float mid = (x + next) / 2;  // exact: one more bit than the half has
      same(mid);
      same(std::nextafter(mid, 0.0f));
      same(std::nextafter(mid, 2 * mid));
      same(x);
    }
  }
  for (uint64_t u = 0; u < (1ull << 32); u += 251)  // a sample of all floats
    same(moe::f32_from_bits(static_cast<uint32_t>(u)));
  CHECK(bad == 0);
}
#endif

TEST_CASE("fp32_to_bf16 rounds to nearest even and keeps nan a nan") {
  const auto f = [](float x) { return moe::fp32_to_bf16(x); };
  CHECK(f(1.0f) == 0x3f80);
  CHECK(f(1.0f + 0x1p-8f) == 0x3f80);              // tie, to even
  CHECK(f(1.0f + 3 * 0x1p-8f) == 0x3f82);          // tie, up to even
  CHECK(f(1.0f + 0x1p-8f + 0x1p-23f) == 0x3f81);
  CHECK(f(-3.0f) == 0xc040);
  CHECK(f(std::numeric_limits<float>::max()) == 0x7f80);  // rounds up to infinity
  CHECK(f(moe::f32_from_bits(0x7f7f7fffu)) == 0x7f7f);
  CHECK(f(std::numeric_limits<float>::infinity()) == 0x7f80);
  CHECK(f(-std::numeric_limits<float>::infinity()) == 0xff80);
  CHECK(f(moe::f32_from_bits(0x00010000u)) == 0x0001);   // subnormals round too
  CHECK(f(moe::f32_from_bits(0x00008000u)) == 0x0000);   // tie, to even
  CHECK(f(moe::f32_from_bits(0x00018000u)) == 0x0002);   // tie, to even
  CHECK(f(-0.0f) == 0x8000);
  const uint16_t nan = f(moe::f32_from_bits(0x7f800001u));  // payload only in the dropped bits
  CHECK(std::isnan(moe::bf16_to_fp32(nan)));
  for (uint32_t h = 0; h < 65536; ++h) {  // every bf16 survives the round trip
    const float x = moe::bf16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(x)) continue;
    if (moe::fp32_to_bf16(x) != h) {
      FAIL_CHECK("bf16 " << h << " does not round-trip");
      break;
    }
  }
}
