// The fused kernels for the avx2 instruction set (flags in CMakeLists.txt).
#define S2S_TARGET avx2
#include "kernels/kernels_impl.h"
