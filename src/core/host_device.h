// MOE_HD marks small functions that compile for both the host and CUDA
// devices (block decoders, half-precision conversions), so the CUDA kernels
// run exactly the arithmetic of the scalar references.
#pragma once

#if defined(__CUDACC__)
#define MOE_HD __host__ __device__ __forceinline__
#else
#define MOE_HD inline
#endif
