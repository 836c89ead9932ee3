// The fused kernels for the avx512_bf16 instruction set (avx512 + VNNI + AVX512_BF16; flags in CMakeLists.txt).
#define S2S_TARGET avx512_bf16
#include "kernels/kernels_impl.h"
