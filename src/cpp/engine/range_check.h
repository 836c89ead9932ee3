// Refusing weights that could overflow float32 while decoding.
#pragma once
#include <map>
#include <string>

#include "spec/model_spec.h"

namespace s2s {

// The rule of s2sext.decoding.check_float32_range (the numpy side; tests hold the two to the same
// verdict and message): every input of a product is bounded (an embedding row, |h| <= 1, the
// attentional state, a context, the bridge's outputs), so |W| @ bound(x) + |b| bounds every
// pre-activation, score and logit, and each partial sum of it in any order. Past float32's range a
// sum would be inf or NaN depending on its order and fusion, which differ between implementations,
// so such a model is refused: std::invalid_argument naming the parameters. Bounds are summed in
// double from the float32 values as given (bfloat16 storage is covered by halving the limit, and
// so is int8: a weight's int8 value is at most twice its size, rounding moving it by at most half
// a quantum and zeroing what is smaller; an activation's is at most its row's largest, the bound;
// and the int8 sums are exact, scaled once).
// The parameters' presence and shapes must have been checked.
void check_float32_range(const ModelConfig& cfg, const std::map<std::string, Tensor>& params);

}  // namespace s2s
