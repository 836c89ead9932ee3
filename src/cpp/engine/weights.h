// The engine's weights, prepared once per model from its float32 parameters.
//
// Letters: V vocabulary, E embedding size, H hidden size (He = an encoder direction's), G = 4H.
//
// The LSTM (encoder and decoder), combine and output matrices are stored in the engine's weight
// type (float32, bfloat16 or int8, runtime/matrix.h). The decoder's first-layer input weights are
// split into the embedding columns and the rest, and when it is small enough (at most 16 MiB) the
// table E_proj [V, G] = tgt_embed @ W_ih[:, :E]^T + b is kept instead, so that a step's embedding
// product is a row lookup. Attention parameters stay float32 (ops/attention.h reads them).
//
// int8: every matrix of the model (2-D parameter) takes the values of its int8 form, rows
// quantized by the one rule (runtime/quantize.h, the scale of a whole parameter row, also where
// the engine splits the columns). The matmul matrices hold int8 rows; the embedding tables
// (quantized per token row), the attention and bridge matrices and the projected table (computed
// from those values) hold the dequantized values in float32: a lookup or an attention product
// reads what an int8 copy would give, at float32's size.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ops/attention.h"
#include "runtime/matrix.h"
#include "spec/model_spec.h"

namespace s2s {

struct EngineWeights {
  ModelConfig cfg;
  WeightType type = WeightType::float32;
  Buffer<float> src_embed, tgt_embed;
  struct Lstm {
    WeightMatrix w_ih, w_hh;
    Buffer<float> b;
  };
  std::vector<Lstm> enc_fwd, enc_bwd;  // encoder layers
  std::vector<Lstm> dec;               // decoder layers; dec[0].w_ih holds only the non-embedding columns
  WeightMatrix dec0_embed_cols;        // decoder layer 0, the embedding columns [G, E]
  Buffer<float> projected_embed;       // [V, G] = tgt_embed @ dec0_embed_cols^T + b, or empty
  Buffer<float> bridge_h_w, bridge_h_b, bridge_c_w, bridge_c_b, bridge_m_w;
  ScoreKind score_kind = ScoreKind::dot;      // cfg.attention without "none"
  Buffer<float> att_w_a, att_w_q, att_w_k, att_v, att_b_q;
  AttentionParams<float> attention_params;    // pointers into the buffers above
  WeightMatrix combine;                       // [H, 2H]
  Buffer<float> combine_b;
  WeightMatrix out;                           // [V, H]
  Buffer<float> out_b;
};

// Every parameter of the configuration's table present with its shape and value count, else
// std::invalid_argument naming the first one that is not.
void check_engine_parameters(const ModelConfig& cfg, const std::map<std::string, Tensor>& params);

// The weights of a model; std::invalid_argument naming the first missing or misshapen parameter.
// The configuration must have passed check_model_config.
void prepare_engine_weights(EngineWeights& w, const ModelConfig& cfg, const std::map<std::string, Tensor>& params,
                            WeightType type);

}  // namespace s2s
