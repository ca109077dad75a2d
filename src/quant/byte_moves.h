// Four bytes at a time at any alignment: the interleaved repacks
// (quant/q4k_r4.cpp, quant/q32_r4.cpp) move four values per step.
#pragma once

#include <cstdint>
#include <cstring>

namespace moe {

inline uint32_t load4(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline void store4(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void or4(uint8_t* p, uint32_t v) { store4(p, load4(p) | v); }

}  // namespace moe
