// The Seq2Seq model's decoder step for the search (search.h): the encoder runs once at
// construction, then each step feeds tokens through the decoder LSTM, attention and output layer.
//
// Letters: B inputs, K beams per input (1 for greedy), R = B*K rows, S source positions, H hidden size, E embedding
// size, V target vocabulary, G = 4H, A attention size (= H).
//
// The recurrence and the attention are the training ops' inference entries (ops/lstm.h,
// ops/attention.h); this file only wires them as docs/model.md describes.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/search.h"
#include "engine/weights.h"
#include "runtime/matrix.h"

namespace s2s {

class Seq2SeqStep : public DecoderStep {
 public:
  // Encodes src [B,S] (rows sorted by length, longest first; lengths [B] in 1..S); each input's
  // state is row b*beams + j of every beam j (the first step, fed the same token on all of them,
  // runs once per input); the attention's source stays once per input.
  Seq2SeqStep(const EngineWeights& w, const int64_t* src, const int64_t* lengths, int64_t B, int64_t S,
              int64_t beams);

  int64_t rows() const override { return R_; }
  int64_t vocabulary() const override { return w_.cfg.tgt_vocab; }
  int64_t source_length() const override { return S_; }
  int64_t source_length_of(int64_t row) const override { return lengths_[static_cast<size_t>(row / K_)]; }
  void step(const int64_t* tokens, float* logits, float* attention) override;
  void reorder(const int64_t* parents) override;

 private:
  // memory [B,S,H], h and c per layer [B,H]: the encoder's outputs and the decoder's first state
  void encode(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S);
  // context [B*K,H] and weights a [B*K,S] of queries [B*K,H] (the K rows of input b: b*K .. b*K+K-1)
  void attend(const float* query, float* a, float* context, int64_t K);
  // step() over B*K rows, K rows per input (K_, or 1 at the first step)
  void step_rows(const int64_t* tokens, float* logits, float* attention, int64_t K);

  const EngineWeights& w_;
  const int64_t B_, K_, R_, S_, H_;  // inputs, beams per input, rows = B*K
  int64_t steps_ = 0;              // steps taken
  std::vector<int64_t> lengths_;   // [B]
  Buffer<float> memory_;           // [B,S,H] the attention's source states
  Buffer<float> keys_;             // ops/attention.h attention_keys_inference, [B,S,H] or empty
  std::vector<Buffer<float>> h_, c_;  // per layer [R,H]: the decoder's state
  Buffer<float> feed_;             // Luong input feeding: the previous attentional state [R,H]
  // scratch of the steps, allocated once (no allocation inside the step loop)
  Buffer<float> context_, weights_, gates_, x_emb_, h_new_, c_new_, combined_, attentional_, query_proj_,
      zero_bias_;
};

}  // namespace s2s
