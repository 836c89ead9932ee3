// The fused kernels for the avx512 instruction set (flags in CMakeLists.txt).
#define S2S_TARGET avx512
#include "kernels/kernels_impl.h"
