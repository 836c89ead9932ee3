// The fused kernels for the portable instruction set (flags in CMakeLists.txt).
#define S2S_TARGET portable
#include "kernels/kernels_impl.h"
