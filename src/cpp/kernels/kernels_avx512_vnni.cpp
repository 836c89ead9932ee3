// The fused kernels for the avx512_vnni instruction set (avx512 + AVX-512 VNNI; flags in CMakeLists.txt).
#define S2S_TARGET avx512_vnni
#include "kernels/kernels_impl.h"
