// The grids (codebooks) of llama.cpp's IQ formats, in the byte layout blocks
// index into: grid point i of IQ2_XXS is the 8 bytes of iq2xxs[i], element 0
// in the lowest byte, and so on. Built once at first use from the compact
// codes in iq_grids.cpp; immutable afterwards.
#pragma once

#include <array>
#include <cstdint>

namespace moe {

struct IqGrids {
  std::array<uint64_t, 256> iq2xxs;   // bytes 8, 25, 43
  std::array<uint64_t, 512> iq2xs;
  std::array<uint64_t, 1024> iq2s;
  std::array<uint32_t, 256> iq3xxs;   // bytes 4 .. 62
  std::array<uint32_t, 512> iq3s;     // bytes 1 .. 15
  std::array<uint64_t, 2048> iq1s;    // int8 -1, 0, +1
  std::array<uint64_t, 2048> iq1s_x8; // the same times 8: int8 -8, 0, +8 (IQ1 values are 8 grid +- 1)
  // The 7 stored sign bits of 8 elements, completed to even parity, as a
  // mask byte and as 8 bytes of 0x00 / 0xff (0xff: negative).
  std::array<uint8_t, 128> ksigns;
  std::array<uint64_t, 128> ksigns64;
  std::array<uint64_t, 128> ksigns_pm1;  // the same as +-1 bytes (0x01, 0xff)
};

const IqGrids& iq_grids();

// IQ4_NL's and IQ4_XS's 16 non-linear levels.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// IQ1_S and IQ1_M: every element is grid + delta, delta = +-1/8.
inline constexpr float kIq1Delta = 0.125f;

}  // namespace moe
