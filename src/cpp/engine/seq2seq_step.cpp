// The Seq2Seq decoder step (seq2seq_step.h); the model's equations are those of docs/model.md.
#include "engine/seq2seq_step.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "kernels/kernels.h"
#include "ops/attention.h"
#include "ops/dense.h"
#include "ops/lstm.h"

namespace s2s {
namespace {

// Rows [0, B) of rows [B*times, row] repeated in place `times` each: row b becomes rows
// b*times .. b*times + times-1 (back to front, so that no row is overwritten before it is copied).
template <class T>
void repeat_rows_in_place(T* rows, int64_t B, int64_t row, int64_t times) {
  for (int64_t b = B - 1; b >= 0; --b)
    for (int64_t j = times - 1; j >= 0; --j)
      if (b * times + j != b) std::memcpy(rows + (b * times + j) * row, rows + b * row, sizeof(T) * row);
}

}  // namespace

Seq2SeqStep::Seq2SeqStep(const EngineWeights& w, const int64_t* src, const int64_t* lengths, int64_t B, int64_t S,
                         int64_t beams)
    : w_(w), B_(B), K_(beams), R_(B * beams), S_(S), H_(w.cfg.hidden), lengths_(lengths, lengths + B) {
  encode(src, lengths, B, S);
  const int64_t R = R_, H = H_;
  // The beams of an input start from its state (the source stays once per input): the first
  // step runs on the B inputs and repeats its results (step), the states hold R rows from here.
  for (auto* states : {&h_, &c_})
    for (auto& s : *states) s.resize(static_cast<size_t>(R * H));
  if (w.cfg.input_feeding) feed_.assign(static_cast<size_t>(R * H), 0.0f);
  const size_t RH = static_cast<size_t>(R * H);
  context_.resize(RH);
  weights_.resize(static_cast<size_t>(R * S));
  gates_.resize(4 * RH);
  x_emb_.resize(static_cast<size_t>(R * w.cfg.embed));
  h_new_.resize(RH);
  c_new_.resize(RH);
  combined_.resize(2 * RH);
  attentional_.resize(RH);
  query_proj_.resize(RH);
  zero_bias_.assign(static_cast<size_t>(4 * H), 0.0f);
}

void Seq2SeqStep::encode(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S) {
  const ModelConfig& cfg = w_.cfg;
  // the encoder LSTMs' size: the decoder's H, or half of it per direction with bridge "concat"
  const int64_t H = cfg.encoder_hidden(), E = cfg.embed, D = cfg.bidirectional ? 2 : 1;
  Buffer<float> x(static_cast<size_t>(B * S * E));
  for (int64_t i = 0; i < B * S; ++i) std::memcpy(x.data() + i * E, w_.src_embed.data() + src[i] * E, sizeof(float) * E);
  int64_t in_size = E;
  Buffer<float> hs(static_cast<size_t>(B * S * H)), hs_rev(static_cast<size_t>(cfg.bidirectional ? B * S * H : 0)), x_rev;
  std::vector<Buffer<float>> final_h, final_c;  // per layer [B, D*H]
  // each sequence reversed within its length (padding stays in place)
  auto rev = [&](int64_t b, int64_t t) { return t < lengths[b] ? lengths[b] - 1 - t : t; };
  for (int64_t l = 0; l < cfg.layers; ++l) {
    Buffer<float> hT(static_cast<size_t>(B * H)), cT(static_cast<size_t>(B * H));
    const auto& fw = w_.enc_fwd[l];
    lstm_sequence_inference(hs.data(), hT.data(), cT.data(), x.data(), fw.w_ih, fw.w_hh, fw.b.data(), lengths, B, S,
                            in_size, H);
    if (!cfg.bidirectional) {  // the outputs are the next layer's input as they are
      final_h.push_back(std::move(hT));
      final_c.push_back(std::move(cT));
      x.swap(hs);
      hs.resize(static_cast<size_t>(B * S * H));
      in_size = H;
      continue;
    }
    Buffer<float> next(static_cast<size_t>(B * S * D * H));
    Buffer<float> fh(static_cast<size_t>(B * D * H)), fc(static_cast<size_t>(B * D * H));
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(fh.data() + b * D * H, hT.data() + b * H, sizeof(float) * H);
      std::memcpy(fc.data() + b * D * H, cT.data() + b * H, sizeof(float) * H);
      for (int64_t t = 0; t < S; ++t)
        std::memcpy(next.data() + (b * S + t) * D * H, hs.data() + (b * S + t) * H, sizeof(float) * H);
    }
    if (cfg.bidirectional) {  // the reversed sequences run forward, their outputs reversed back
      x_rev.resize(x.size());
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < S; ++t)
          std::memcpy(x_rev.data() + (b * S + t) * in_size, x.data() + (b * S + rev(b, t)) * in_size,
                      sizeof(float) * in_size);
      const auto& bw = w_.enc_bwd[l];
      lstm_sequence_inference(hs_rev.data(), hT.data(), cT.data(), x_rev.data(), bw.w_ih, bw.w_hh, bw.b.data(),
                              lengths, B, S, in_size, H);
      for (int64_t b = 0; b < B; ++b) {
        std::memcpy(fh.data() + b * D * H + H, hT.data() + b * H, sizeof(float) * H);
        std::memcpy(fc.data() + b * D * H + H, cT.data() + b * H, sizeof(float) * H);
        for (int64_t t = 0; t < S; ++t)
          std::memcpy(next.data() + (b * S + t) * D * H + H, hs_rev.data() + (b * S + rev(b, t)) * H,
                      sizeof(float) * H);
      }
    }
    final_h.push_back(std::move(fh));
    final_c.push_back(std::move(fc));
    x = std::move(next);
    in_size = D * H;
  }
  const int64_t Hd = H_;  // the decoder's size
  for (int64_t l = 0; l < cfg.layers; ++l) {
    if (cfg.bidirectional && !cfg.bridge_concat) {  // h0 = bridge.h([h_fwd; h_bwd]), c0 likewise
      Buffer<float> h0(static_cast<size_t>(B * Hd)), c0(static_cast<size_t>(B * Hd));
      linear_forward<float>(h0.data(), final_h[l].data(), w_.bridge_h_w.data(), w_.bridge_h_b.data(), B, 2 * Hd, Hd,
                            Activation::none);
      linear_forward<float>(c0.data(), final_c[l].data(), w_.bridge_c_w.data(), w_.bridge_c_b.data(), B, 2 * Hd, Hd,
                            Activation::none);
      h_.push_back(std::move(h0));
      c_.push_back(std::move(c0));
    } else {
      h_.push_back(std::move(final_h[l]));
      c_.push_back(std::move(final_c[l]));
    }
  }
  if (!cfg.has_attention()) return;
  if (cfg.bidirectional && !cfg.bridge_concat) {
    memory_.resize(static_cast<size_t>(B * S * Hd));
    linear_forward<float>(memory_.data(), x.data(), w_.bridge_m_w.data(), nullptr, B * S, 2 * Hd, Hd,
                          Activation::none);
  } else {
    memory_ = std::move(x);  // [B, S, D*H]: the decoder's H (bridge "concat": D*H = H)
  }
  keys_.resize(static_cast<size_t>(attention_keys_size(w_.score_kind, B, S, Hd, Hd)));
  attention_keys_inference(keys_.data(), memory_.data(), w_.score_kind, w_.attention_params, B, S, Hd, Hd);
}

void Seq2SeqStep::attend(const float* query, float* a, float* context, int64_t K) {
  attention_step_inference(a, context, query_proj_.data(), memory_.data(), keys_.data(), query, w_.score_kind,
                           w_.attention_params, lengths_.data(), B_, K, S_, H_, H_);
}

void Seq2SeqStep::step(const int64_t* tokens, float* logits, float* attention) {
  const bool first_step = steps_++ == 0;
  bool copies = first_step && K_ > 1;  // the K rows of each input: one state, and one token?
  for (int64_t r = 0; copies && r < R_; ++r) copies = tokens[r] == tokens[r / K_ * K_];
  if (first_step && K_ > 1 && !copies)
    for (auto* states : {&h_, &c_})
      for (auto& s : *states) repeat_rows_in_place(s.data(), B_, H_, K_);
  if (!copies) {
    step_rows(tokens, logits, attention, K_);
    return;
  }
  // The first step of a beam search: the K beams of an input are copies, so the step runs once
  // per input and its results are repeated (they are greedy decoding's first step).
  std::vector<int64_t> first(static_cast<size_t>(B_));
  for (int64_t b = 0; b < B_; ++b) first[b] = tokens[b * K_];
  step_rows(first.data(), logits, attention, 1);
  repeat_rows_in_place(logits, B_, w_.cfg.tgt_vocab, K_);
  if (attention) repeat_rows_in_place(attention, B_, S_, K_);
  for (auto* states : {&h_, &c_})
    for (auto& s : *states) repeat_rows_in_place(s.data(), B_, H_, K_);
  if (!feed_.empty()) repeat_rows_in_place(feed_.data(), B_, H_, K_);
}

void Seq2SeqStep::step_rows(const int64_t* tokens, float* logits, float* attention, int64_t K) {
  const ModelConfig& cfg = w_.cfg;
  const KernelTable<float>& k = kernels<float>();
  const int64_t R = B_ * K, H = H_, G = 4 * H, E = cfg.embed, V = cfg.tgt_vocab;
  const bool has_attention = cfg.has_attention();
  // Bahdanau: attend from the previous top-layer state; the context joins the LSTM input.
  if (has_attention && cfg.bahdanau) attend(h_.back().data(), weights_.data(), context_.data(), K);
  const float* extra = cfg.bahdanau ? context_.data() : (cfg.input_feeding ? feed_.data() : nullptr);
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const auto& lw = w_.dec[l];
    const float* bias = lw.b.data();
    if (l == 0) {
      // gates = tgt_embed[token] @ W_e^T + extra @ W_x^T (+ h @ W_hh^T + b in the LSTM step)
      if (!w_.projected_embed.empty()) {
        for (int64_t r = 0; r < R; ++r)
          std::memcpy(gates_.data() + r * G, w_.projected_embed.data() + tokens[r] * G, sizeof(float) * G);
        bias = zero_bias_.data();  // the table holds b already
      } else {
        for (int64_t r = 0; r < R; ++r)
          std::memcpy(x_emb_.data() + r * E, w_.tgt_embed.data() + tokens[r] * E, sizeof(float) * E);
        matmul(w_.dec0_embed_cols, x_emb_.data(), R, gates_.data(), false);
      }
      if (extra) matmul(lw.w_ih, extra, R, gates_.data(), true);
    } else {
      matmul(lw.w_ih, h_[l - 1].data(), R, gates_.data(), false);
    }
    lstm_step_inference(h_new_.data(), c_new_.data(), gates_.data(), h_[l].data(), c_[l].data(), lw.w_hh, bias, R, H);
    std::swap(h_[l], h_new_);
    std::swap(c_[l], c_new_);
  }
  const float* h_top = h_.back().data();
  const float* o = h_top;
  if (has_attention) {
    if (!cfg.bahdanau) attend(h_top, weights_.data(), context_.data(), K);
    // o = tanh([c; h] @ W_c^T + b_c), or without the tanh (combine_activation "none")
    for (int64_t r = 0; r < R; ++r) {
      std::memcpy(combined_.data() + r * 2 * H, context_.data() + r * H, sizeof(float) * H);
      std::memcpy(combined_.data() + r * 2 * H + H, h_top + r * H, sizeof(float) * H);
    }
    matmul(w_.combine, combined_.data(), R, attentional_.data(), false);
    for (int64_t r = 0; r < R; ++r)
      k.bias_activation(attentional_.data() + r * H, w_.combine_b.data(), H, cfg.combine_tanh);
    o = attentional_.data();
    if (cfg.input_feeding) std::memcpy(feed_.data(), o, sizeof(float) * R * H);
  }
  matmul(w_.out, o, R, logits, false);
  for (int64_t r = 0; r < R; ++r) k.bias_activation(logits + r * V, w_.out_b.data(), V, false);
  if (attention) {
    if (has_attention) std::memcpy(attention, weights_.data(), sizeof(float) * R * S_);
    else std::fill(attention, attention + R * S_, 0.0f);
  }
}

void Seq2SeqStep::reorder(const int64_t* parents) {
  // into the spare step buffers, then swap: no allocation per step
  auto gather = [&](Buffer<float>& rows, Buffer<float>& spare) {
    for (int64_t r = 0; r < R_; ++r)
      std::memcpy(spare.data() + r * H_, rows.data() + parents[r] * H_, sizeof(float) * H_);
    std::swap(rows, spare);
  };
  for (size_t l = 0; l < h_.size(); ++l) {
    gather(h_[l], h_new_);
    gather(c_[l], c_new_);
  }
  if (!feed_.empty()) gather(feed_, attentional_);
}

}  // namespace s2s
