#include "quant/blocks_iq.h"

#include "core/error.h"

namespace moe {

namespace {

inline uint32_t u32_at(const uint8_t* p) {
  uint32_t x;
  std::memcpy(&x, p, 4);
  return x;
}
inline uint8_t grid_byte(uint64_t g, int j) { return static_cast<uint8_t>(g >> (8 * j)); }
inline uint8_t grid_byte(uint32_t g, int j) { return static_cast<uint8_t>(g >> (8 * j)); }
inline int sign_of(uint8_t signs, int j) { return (signs >> j & 1) ? -1 : 1; }

// The pieces each format stores per group, shared by the integer decoding
// and the float dequantization below: for element j of the group, its
// magnitude, its sign and which scale (of two per group) it takes.
struct GroupParts {
  uint8_t mag[32];   // grid byte (IQ2, IQ3)
  int8_t sign[32];   // +-1
  int scale_code[2]; // the stored scale field of each half
};

void parts_iq2_xxs(const BlockIQ2_XXS& b, int g, GroupParts& p) {
  const IqGrids& G = iq_grids();
  uint8_t q[8];
  std::memcpy(q, &b.qs[4 * g], 8);
  const uint32_t aux1 = u32_at(q + 4);
  for (int l = 0; l < 4; ++l) {
    const uint64_t grid = G.iq2xxs[q[l]];
    const uint8_t signs = G.ksigns[(aux1 >> (7 * l)) & 127];
    for (int j = 0; j < 8; ++j) p.mag[8 * l + j] = grid_byte(grid, j), p.sign[8 * l + j] = static_cast<int8_t>(sign_of(signs, j));
  }
  p.scale_code[0] = p.scale_code[1] = static_cast<int>(aux1 >> 28);
}

void parts_iq2_xs(const BlockIQ2_XS& b, int g, GroupParts& p) {
  const IqGrids& G = iq_grids();
  for (int l = 0; l < 4; ++l) {
    const uint16_t q = b.qs[4 * g + l];
    const uint64_t grid = G.iq2xs[q & 511];
    const uint8_t signs = G.ksigns[q >> 9];
    for (int j = 0; j < 8; ++j) p.mag[8 * l + j] = grid_byte(grid, j), p.sign[8 * l + j] = static_cast<int8_t>(sign_of(signs, j));
  }
  p.scale_code[0] = b.scales[g] & 0xf;
  p.scale_code[1] = b.scales[g] >> 4;
}

void parts_iq2_s(const BlockIQ2_S& b, int g, GroupParts& p) {
  const IqGrids& G = iq_grids();
  for (int l = 0; l < 4; ++l) {
    const int idx = b.qs[4 * g + l] | ((b.qh[g] << (8 - 2 * l)) & 0x300);
    const uint64_t grid = G.iq2s[static_cast<size_t>(idx)];
    const uint8_t signs = b.qs[32 + 4 * g + l];
    for (int j = 0; j < 8; ++j) p.mag[8 * l + j] = grid_byte(grid, j), p.sign[8 * l + j] = static_cast<int8_t>(sign_of(signs, j));
  }
  p.scale_code[0] = b.scales[g] & 0xf;
  p.scale_code[1] = b.scales[g] >> 4;
}

void parts_iq3_xxs(const BlockIQ3_XXS& b, int g, GroupParts& p) {
  const IqGrids& G = iq_grids();
  const uint32_t aux = u32_at(b.qs + 64 + 4 * g);
  const uint8_t* qs = b.qs + 8 * g;
  for (int l = 0; l < 4; ++l) {
    const uint8_t signs = G.ksigns[(aux >> (7 * l)) & 127];
    const uint32_t g1 = G.iq3xxs[qs[2 * l]], g2 = G.iq3xxs[qs[2 * l + 1]];
    for (int j = 0; j < 4; ++j) {
      p.mag[8 * l + j] = grid_byte(g1, j), p.sign[8 * l + j] = static_cast<int8_t>(sign_of(signs, j));
      p.mag[8 * l + 4 + j] = grid_byte(g2, j), p.sign[8 * l + 4 + j] = static_cast<int8_t>(sign_of(signs, j + 4));
    }
  }
  p.scale_code[0] = p.scale_code[1] = static_cast<int>(aux >> 28);
}

void parts_iq3_s(const BlockIQ3_S& b, int g, GroupParts& p) {
  const IqGrids& G = iq_grids();
  const uint8_t* qs = b.qs + 8 * g;
  const int qh = b.qh[g];
  for (int l = 0; l < 4; ++l) {
    const uint32_t g1 = G.iq3s[static_cast<size_t>(qs[2 * l] | ((qh << (8 - 2 * l)) & 256))];
    const uint32_t g2 = G.iq3s[static_cast<size_t>(qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256))];
    const uint8_t signs = b.signs[4 * g + l];
    for (int j = 0; j < 4; ++j) {
      p.mag[8 * l + j] = grid_byte(g1, j), p.sign[8 * l + j] = static_cast<int8_t>(sign_of(signs, j));
      p.mag[8 * l + 4 + j] = grid_byte(g2, j), p.sign[8 * l + 4 + j] = static_cast<int8_t>(sign_of(signs, j + 4));
    }
  }
  const int nib = g % 2 == 0 ? (b.scales[g / 2] & 0xf) : (b.scales[g / 2] >> 4);
  p.scale_code[0] = p.scale_code[1] = nib;
}

// IQ1: grid values in {-1, 0, +1} and the sign of each 8 elements' delta.
struct Iq1Parts {
  int8_t grid[32];
  int8_t delta_sign[4];  // per 8 elements
  int scale_code[2];     // per 16 elements
};

void parts_iq1_s(const BlockIQ1_S& b, int g, Iq1Parts& p) {
  const IqGrids& G = iq_grids();
  const uint16_t qh = b.qh[g];
  for (int l = 0; l < 4; ++l) {
    const uint64_t grid = G.iq1s[static_cast<size_t>(b.qs[4 * g + l] | (((qh >> (3 * l)) & 7) << 8))];
    for (int j = 0; j < 8; ++j) p.grid[8 * l + j] = static_cast<int8_t>(grid_byte(grid, j));
    p.delta_sign[l] = (qh & 0x8000) ? -1 : 1;
  }
  p.scale_code[0] = p.scale_code[1] = (qh >> 12) & 7;
}

void parts_iq1_m(const BlockIQ1_M& b, int g, Iq1Parts& p) {
  const IqGrids& G = iq_grids();
  uint16_t sc[4];
  std::memcpy(sc, b.scales, 8);
  const uint8_t* qs = b.qs + 4 * g;
  const uint8_t* qh = b.qh + 2 * g;
  const int idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700), qs[2] | ((qh[1] << 8) & 0x700),
                      qs[3] | ((qh[1] << 4) & 0x700)};
  const bool neg[4] = {(qh[0] & 0x08) != 0, (qh[0] & 0x80) != 0, (qh[1] & 0x08) != 0, (qh[1] & 0x80) != 0};
  for (int l = 0; l < 4; ++l) {
    const uint64_t grid = G.iq1s[static_cast<size_t>(idx[l])];
    for (int j = 0; j < 8; ++j) p.grid[8 * l + j] = static_cast<int8_t>(grid_byte(grid, j));
    p.delta_sign[l] = neg[l] ? -1 : 1;
  }
  p.scale_code[0] = (sc[g / 2] >> (6 * (g % 2))) & 7;
  p.scale_code[1] = (sc[g / 2] >> (6 * (g % 2) + 3)) & 7;
}

int iq4_xs_scale(const BlockIQ4_XS& b, int g) {
  return (((b.scales_l[g / 2] >> (4 * (g % 2))) & 0xf) | (((b.scales_h >> (2 * g)) & 3) << 4)) - 32;
}

template <typename B>
B load_block(const uint8_t* p) {
  B b;
  std::memcpy(&b, p, sizeof(B));
  return b;
}

void from_parts(const GroupParts& p, int scale0, int scale1, IqGroup& out) {
  for (int j = 0; j < 32; ++j) out.v[j] = static_cast<int8_t>(p.sign[j] * static_cast<int>(p.mag[j]));
  out.scale[0] = scale0;
  out.scale[1] = scale1;
}

void from_iq1(const Iq1Parts& p, IqGroup& out) {
  for (int j = 0; j < 32; ++j) out.v[j] = static_cast<int8_t>(8 * p.grid[j] + p.delta_sign[j / 8]);
  out.scale[0] = 2 * p.scale_code[0] + 1;
  out.scale[1] = 2 * p.scale_code[1] + 1;
}

void from_iq4(const uint8_t* qs, int scale, IqGroup& out) {
  for (int j = 0; j < 16; ++j) {
    out.v[j] = kIq4nlValues[qs[j] & 0xf];
    out.v[j + 16] = kIq4nlValues[qs[j] >> 4];
  }
  out.scale[0] = out.scale[1] = scale;
}

}  // namespace

void iq_decode_group(GgmlType t, const uint8_t* block, int g, IqGroup& out) {
  GroupParts p;
  Iq1Parts p1;
  switch (t) {
    case GgmlType::IQ2_XXS:
      parts_iq2_xxs(load_block<BlockIQ2_XXS>(block), g, p);
      return from_parts(p, 2 * p.scale_code[0] + 1, 2 * p.scale_code[1] + 1, out);
    case GgmlType::IQ2_XS:
      parts_iq2_xs(load_block<BlockIQ2_XS>(block), g, p);
      return from_parts(p, 2 * p.scale_code[0] + 1, 2 * p.scale_code[1] + 1, out);
    case GgmlType::IQ2_S:
      parts_iq2_s(load_block<BlockIQ2_S>(block), g, p);
      return from_parts(p, 2 * p.scale_code[0] + 1, 2 * p.scale_code[1] + 1, out);
    case GgmlType::IQ3_XXS:
      parts_iq3_xxs(load_block<BlockIQ3_XXS>(block), g, p);
      return from_parts(p, 2 * p.scale_code[0] + 1, 2 * p.scale_code[1] + 1, out);
    case GgmlType::IQ3_S:
      parts_iq3_s(load_block<BlockIQ3_S>(block), g, p);
      return from_parts(p, 2 * p.scale_code[0] + 1, 2 * p.scale_code[1] + 1, out);
    case GgmlType::IQ1_S:
      parts_iq1_s(load_block<BlockIQ1_S>(block), g, p1);
      return from_iq1(p1, out);
    case GgmlType::IQ1_M:
      parts_iq1_m(load_block<BlockIQ1_M>(block), g, p1);
      return from_iq1(p1, out);
    case GgmlType::IQ4_NL: {
      const auto b = load_block<BlockIQ4_NL>(block);
      return from_iq4(b.qs, 1, out);
    }
    case GgmlType::IQ4_XS: {
      const auto b = load_block<BlockIQ4_XS>(block);
      return from_iq4(b.qs + 16 * g, iq4_xs_scale(b, g), out);
    }
    default:
      throw_error("iq_decode_group: %s is not an IQ type", ggml_type_name(t));
  }
}

float iq_block_d(GgmlType t, const uint8_t* block) {
  if (t == GgmlType::IQ1_M) return iq1m_d(load_block<BlockIQ1_M>(block));
  uint16_t d;
  std::memcpy(&d, block, 2);  // every other IQ block starts with its f16 d
  return fp16_to_fp32(d);
}

// The float arithmetic of ggml's dequantize_row_iq* (ggml-quants.c), so that
// dequantized rows are llama.cpp's to the bit.
void iq_dequantize_block(GgmlType t, const uint8_t* block, float* y) {
  const float d = iq_block_d(t, block);
  GroupParts p;
  Iq1Parts p1;
  switch (t) {
    case GgmlType::IQ2_XXS:
    case GgmlType::IQ2_XS:
    case GgmlType::IQ2_S:
    case GgmlType::IQ3_XXS:
      for (int g = 0; g < 8; ++g, y += 32) {
        if (t == GgmlType::IQ2_XXS) parts_iq2_xxs(load_block<BlockIQ2_XXS>(block), g, p);
        else if (t == GgmlType::IQ2_XS) parts_iq2_xs(load_block<BlockIQ2_XS>(block), g, p);
        else if (t == GgmlType::IQ2_S) parts_iq2_s(load_block<BlockIQ2_S>(block), g, p);
        else parts_iq3_xxs(load_block<BlockIQ3_XXS>(block), g, p);
        const float k = t == GgmlType::IQ3_XXS ? 0.5f : 0.25f;
        const float db[2] = {d * (0.5f + static_cast<float>(p.scale_code[0])) * k,
                             d * (0.5f + static_cast<float>(p.scale_code[1])) * k};
        for (int j = 0; j < 32; ++j) y[j] = db[j / 16] * static_cast<float>(p.mag[j]) * (p.sign[j] < 0 ? -1.f : 1.f);
      }
      return;
    case GgmlType::IQ3_S:
      for (int g = 0; g < 8; ++g, y += 32) {
        parts_iq3_s(load_block<BlockIQ3_S>(block), g, p);
        const float db = d * static_cast<float>(1 + 2 * p.scale_code[0]);
        for (int j = 0; j < 32; ++j) y[j] = db * static_cast<float>(p.mag[j]) * (p.sign[j] < 0 ? -1.f : 1.f);
      }
      return;
    case GgmlType::IQ1_S:
    case GgmlType::IQ1_M:
      for (int g = 0; g < 8; ++g, y += 32) {
        if (t == GgmlType::IQ1_S) parts_iq1_s(load_block<BlockIQ1_S>(block), g, p1);
        else parts_iq1_m(load_block<BlockIQ1_M>(block), g, p1);
        const float dl[2] = {d * static_cast<float>(2 * p1.scale_code[0] + 1),
                             d * static_cast<float>(2 * p1.scale_code[1] + 1)};
        for (int j = 0; j < 32; ++j)
          y[j] = dl[j / 16] * (static_cast<float>(p1.grid[j]) + (p1.delta_sign[j / 8] < 0 ? -kIq1Delta : kIq1Delta));
      }
      return;
    case GgmlType::IQ4_NL: {
      const auto b = load_block<BlockIQ4_NL>(block);
      for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(kIq4nlValues[b.qs[j] & 0xf]);
        y[j + 16] = d * static_cast<float>(kIq4nlValues[b.qs[j] >> 4]);
      }
      return;
    }
    case GgmlType::IQ4_XS: {
      const auto b = load_block<BlockIQ4_XS>(block);
      for (int g = 0; g < 8; ++g, y += 32) {
        const float dl = d * static_cast<float>(iq4_xs_scale(b, g));
        for (int j = 0; j < 16; ++j) {
          y[j] = dl * static_cast<float>(kIq4nlValues[b.qs[16 * g + j] & 0xf]);
          y[j + 16] = dl * static_cast<float>(kIq4nlValues[b.qs[16 * g + j] >> 4]);
        }
      }
      return;
    }
    default:
      throw_error("iq_dequantize_block: %s is not an IQ type", ggml_type_name(t));
  }
}

}  // namespace moe
