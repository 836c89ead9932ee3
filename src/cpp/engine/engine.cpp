// The inference engine (engine.h): encoder and greedy/beam decoding of a Seq2Seq in C++.
// The model's equations are those of docs/model.md; this file follows them for inference only.
#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <utility>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "runtime/blas.h"
#include "ops/dense.h"
#include "kernels/kernels.h"
#include "ops/lstm.h"
#include "runtime/parallel.h"

namespace s2s {

bool engine_attention_from_name(const std::string& name, EngineAttention* kind) {
  static const std::pair<const char*, EngineAttention> kinds[] = {
      {"none", EngineAttention::none},       {"dot", EngineAttention::dot},
      {"scaled_dot", EngineAttention::scaled_dot}, {"general", EngineAttention::general},
      {"concat", EngineAttention::concat},   {"location", EngineAttention::location}};
  for (const auto& k : kinds)
    if (name == k.first) {
      *kind = k.second;
      return true;
    }
  return false;
}

namespace {

constexpr int64_t kPad = kPadId, kSos = kSosId, kEos = kEosId;
constexpr size_t kProjectedTableMaxBytes = size_t(16) << 20;

template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) {
    if (n > (std::numeric_limits<size_t>::max() >> 2) / sizeof(T)) throw std::bad_alloc();
    void* p = std::aligned_alloc(64, ((n * sizeof(T) + 63) / 64) * 64 + 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <class U>
  bool operator==(const AlignedAllocator<U>&) const { return true; }
  template <class U>
  bool operator!=(const AlignedAllocator<U>&) const { return false; }
};
template <class T>
using Buffer = std::vector<T, AlignedAllocator<T>>;

// A weight matrix [rows, cols] in the engine's storage type.
struct Matrix {
  int64_t rows = 0, cols = 0;
  Buffer<float> f32;
  Buffer<uint16_t> bf16;  // bfloat16 bits (round to nearest even), when the engine stores bf16
};

uint16_t to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) == 0x7f800000u) return static_cast<uint16_t>(bits >> 16 | ((bits & 0xffff) ? 0x40 : 0));
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

}  // namespace

struct EngineWeights {
  EngineConfig cfg;
  WeightType type = WeightType::float32;
  int64_t G = 0;
  Buffer<float> src_embed, tgt_embed;
  struct Lstm {
    Matrix w_ih, w_hh;
    Buffer<float> b;
  };
  std::vector<Lstm> enc_fwd, enc_bwd;  // encoder layers
  std::vector<Lstm> dec;               // decoder layers; dec[0].w_ih holds only the non-embedding columns
  Matrix dec0_embed_cols;              // decoder layer 0, the embedding columns [G, E]
  Buffer<float> projected_embed;       // [V, G] = tgt_embed @ dec0_embed_cols^T + b, or empty
  Buffer<float> bridge_h_w, bridge_h_b, bridge_c_w, bridge_c_b, bridge_m_w;
  Buffer<float> att_w_a, att_w_q, att_w_k, att_v, att_b_q;  // attention parameters (fp32; b_q may be empty)
  Matrix combine;                                  // [H, 2H]
  Buffer<float> combine_b;
  Matrix out;  // [V, H]
  Buffer<float> out_b;
};

namespace {

const Tensor& need(const std::map<std::string, Tensor>& params, const std::string& name,
                   std::vector<int64_t> shape) {
  auto it = params.find(name);
  if (it == params.end()) throw std::invalid_argument("parameter '" + name + "' is missing");
  if (it->second.shape != shape) {
    std::string want, got;
    for (int64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
    for (int64_t d : it->second.shape) got += (got.empty() ? "" : ", ") + std::to_string(d);
    throw std::invalid_argument("parameter '" + name + "' has shape (" + got + "); expected (" + want + ")");
  }
  size_t count = 1;
  for (int64_t d : shape) count *= static_cast<size_t>(d);
  if (it->second.values.size() != count)
    throw std::invalid_argument("parameter '" + name + "' holds " + std::to_string(it->second.values.size()) +
                                " values for its shape's " + std::to_string(count));
  return it->second;
}

Buffer<float> copy_of(const Tensor& t) { return Buffer<float>(t.values.begin(), t.values.end()); }

// Columns [c0, c1) of a row-major [rows, cols] tensor as a matrix.
Matrix matrix_of(const float* data, int64_t rows, int64_t cols, int64_t c0, int64_t c1, WeightType type) {
  Matrix m;
  m.rows = rows;
  m.cols = c1 - c0;
  m.f32.resize(static_cast<size_t>(rows * m.cols));
  if (m.cols > 0)  // (an empty matrix: the first decoder layer without extra inputs)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(m.f32.data() + r * m.cols, data + r * cols + c0, sizeof(float) * m.cols);
  if (type == WeightType::bfloat16) {
    m.bf16.resize(m.f32.size());
    for (size_t i = 0; i < m.f32.size(); ++i) m.bf16[i] = to_bf16(m.f32[i]);
    Buffer<float>().swap(m.f32);  // bf16 only: half the memory, half the bytes per step
  }
  return m;
}

// y [M, W.rows] = x [M, W.cols] @ W^T (+ y when accumulate).
void matmul(const Matrix& W, const float* x, int64_t M, float* y, bool accumulate) {
  if (W.cols == 0) {
    if (!accumulate) std::fill(y, y + M * W.rows, 0.0f);
    return;
  }
  if (!W.bf16.empty()) {
    // threads take blocks of 8 weight rows; inputs go 8 at a time, each weight row widened once
    const KernelTable<float>& k = kernels<float>();
    parallel_ranges((W.rows + 7) / 8, 8192 / (W.cols + 1) + 1, [&](int64_t blk0, int64_t blk1) {
      const int64_t r0 = blk0 * 8, r1 = std::min(W.rows, blk1 * 8);
      for (int64_t m0 = 0; m0 < M; m0 += 8)
        k.gemm_bf16(W.bf16.data() + r0 * W.cols, W.cols, x + m0 * W.cols, W.cols, y + m0 * W.rows + r0, W.rows,
                    r1 - r0, W.cols, std::min<int64_t>(8, M - m0), accumulate ? 1.0f : 0.0f);
    });
    return;
  }
  gemm<float>(Trans::no, Trans::yes, M, W.rows, W.cols, 1.0f, x, W.cols, W.f32.data(), W.cols,
              accumulate ? 1.0f : 0.0f, y, W.rows);
}

// What one call keeps per input row while decoding.
struct Encoded {
  int64_t B = 0, S = 0;
  Buffer<float> memory;     // [B, S, H]
  Buffer<float> keys;       // general: [B, S, H] = memory @ W_a^T; concat: memory @ W_k^T (+ b_q)
  std::vector<int64_t> lengths;
  std::vector<Buffer<float>> h, c;  // per layer [B, H]: the decoder's initial state
};

// The decoder's state between steps, per row.
struct State {
  std::vector<Buffer<float>> h, c;  // per layer [B, H]
  Buffer<float> feed;               // Luong input feeding: previous attentional state [B, H]
};

// Scratch of one call's steps, allocated once per call (no allocation inside the step loop).
struct StepBuffers {
  StepBuffers(int64_t B, int64_t S, int64_t H, int64_t E)
      : context(size_t(B * H)), gates(size_t(B * 4 * H)), x_emb(size_t(B * E)), h_new(size_t(B * H)),
        c_new(size_t(B * H)), combined(size_t(B * 2 * H)), attentional(size_t(B * H)), scores(size_t(S)),
        query_proj(size_t(H)), zero_bias(size_t(4 * H), 0.0f) {}
  Buffer<float> context, gates, x_emb, h_new, c_new, combined, attentional, scores, query_proj, zero_bias;
};

// Denormal results and inputs flushed to zero while a decode runs (a decoder's states decay
// towards zero; denormal arithmetic is up to 100x slower on x86). The caller's mode is restored.
class FlushDenormals {
 public:
#if defined(__SSE__) || defined(__x86_64__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned int saved_;
#endif
};

class Runner {
 public:
  explicit Runner(const EngineWeights& w) : w_(w), k_(kernels<float>()), H_(w.cfg.hidden) {}

  Encoded encode(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S) const;
  // Rows of `e` repeated `times` each (beam search).
  static Encoded repeat(const Encoded& e, int64_t times, int64_t H, int64_t layers);
  State initial_state(const Encoded& e) const;
  // One decoder step for tokens [B]: logits [B, V]; the state is advanced in place.
  void step(const Encoded& e, const int64_t* tokens, State& state, float* logits, StepBuffers& buf) const;

 private:
  void attend(const Encoded& e, const float* query, float* context, StepBuffers& buf) const;

  const EngineWeights& w_;
  const KernelTable<float>& k_;
  const int64_t H_;
};

// One encoder LSTM over a padded batch with rows sorted by length (longest first), for weights in
// the engine's storage type (bf16 included): hs [B,S,H] (0 past a length), hT, cT [B,H] the state
// after each row's last step. The same equations as lstm_forward, whose fp32 version is used otherwise.
void lstm_layer(const EngineWeights::Lstm& w, const float* x, const int64_t* lengths, int64_t B, int64_t S,
                int64_t I, int64_t H, float* hs, float* hT, float* cT) {
  const KernelTable<float>& k = kernels<float>();
  const int64_t G = 4 * H;
  Buffer<float> x_proj(static_cast<size_t>(B * S * G)), gates(static_cast<size_t>(B * G));
  Buffer<float> h(static_cast<size_t>(B * H), 0.0f), c(static_cast<size_t>(B * H), 0.0f);
  Buffer<float> h_new(static_cast<size_t>(B * H)), c_new(static_cast<size_t>(B * H));
  matmul(w.w_ih, x, B * S, x_proj.data(), false);  // [B*S, G]: every step's input product at once
  std::fill(hs, hs + B * S * H, 0.0f);
  for (int64_t t = 0; t < S; ++t) {
    int64_t active = 0;  // rows still running: a prefix, the rows being sorted by length
    while (active < B && lengths[active] > t) ++active;
    if (active == 0) break;
    for (int64_t b = 0; b < active; ++b)
      std::memcpy(gates.data() + b * G, x_proj.data() + (b * S + t) * G, sizeof(float) * G);
    matmul(w.w_hh, h.data(), active, gates.data(), true);
    for (int64_t b = 0; b < active; ++b) {
      k.lstm_gates_forward(gates.data() + b * G, w.b.data(), c.data() + b * H, c_new.data() + b * H,
                           h_new.data() + b * H, H, H);
      std::memcpy(hs + (b * S + t) * H, h_new.data() + b * H, sizeof(float) * H);
    }
    std::memcpy(h.data(), h_new.data(), sizeof(float) * active * H);  // finished rows keep their state
    std::memcpy(c.data(), c_new.data(), sizeof(float) * active * H);
  }
  std::memcpy(hT, h.data(), sizeof(float) * B * H);
  std::memcpy(cT, c.data(), sizeof(float) * B * H);
}

Encoded Runner::encode(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S) const {
  const EngineConfig& cfg = w_.cfg;
  // the encoder LSTMs' size H: the decoder's, or half of it per direction with bridge "concat"
  const int64_t H = cfg.bridge_concat ? H_ / 2 : H_, E = cfg.embed, G = 4 * H, D = cfg.bidirectional ? 2 : 1;
  Encoded enc;
  enc.B = B;
  enc.S = S;
  enc.lengths.assign(lengths, lengths + B);
  Buffer<float> x(static_cast<size_t>(B * S * E));
  for (int64_t i = 0; i < B * S; ++i) std::memcpy(x.data() + i * E, w_.src_embed.data() + src[i] * E, sizeof(float) * E);
  int64_t in_size = E;
  Buffer<float> zeros(static_cast<size_t>(B * H), 0.0f);
  Buffer<float> hs(static_cast<size_t>(B * S * H)), hs_rev(static_cast<size_t>(B * S * H)), x_rev;
  Buffer<float> hx_all, gates(static_cast<size_t>(S * B * G)), c_all(static_cast<size_t>((S + 1) * B * H));
  std::vector<Buffer<float>> final_h, final_c;  // per layer [B, D*H]
  for (int64_t l = 0; l < cfg.layers; ++l) {
    hx_all.resize(static_cast<size_t>((S + 1) * B * (H + in_size)));
    Buffer<float> hT(static_cast<size_t>(B * H)), cT(static_cast<size_t>(B * H));
    const auto& fw = w_.enc_fwd[l];
    if (w_.type == WeightType::bfloat16)
      lstm_layer(fw, x.data(), lengths, B, S, in_size, H, hs.data(), hT.data(), cT.data());
    else
      lstm_forward<float>(hs.data(), hT.data(), cT.data(), hx_all.data(), gates.data(), c_all.data(), x.data(),
                          zeros.data(), zeros.data(), fw.w_ih.f32.data(), fw.w_hh.f32.data(), fw.b.data(), lengths,
                          B, S, in_size, H);
    Buffer<float> next(static_cast<size_t>(B * S * D * H));
    Buffer<float> fh(static_cast<size_t>(B * D * H)), fc(static_cast<size_t>(B * D * H));
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(fh.data() + b * D * H, hT.data() + b * H, sizeof(float) * H);
      std::memcpy(fc.data() + b * D * H, cT.data() + b * H, sizeof(float) * H);
      for (int64_t t = 0; t < S; ++t)
        std::memcpy(next.data() + (b * S + t) * D * H, hs.data() + (b * S + t) * H, sizeof(float) * H);
    }
    if (cfg.bidirectional) {
      // each sequence reversed within its length (padding stays in place), run, reversed back
      x_rev.resize(x.size());
      auto rev = [&](int64_t b, int64_t t) { return t < lengths[b] ? lengths[b] - 1 - t : t; };
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < S; ++t)
          std::memcpy(x_rev.data() + (b * S + t) * in_size, x.data() + (b * S + rev(b, t)) * in_size,
                      sizeof(float) * in_size);
      const auto& bw = w_.enc_bwd[l];
      if (w_.type == WeightType::bfloat16)
        lstm_layer(bw, x_rev.data(), lengths, B, S, in_size, H, hs_rev.data(), hT.data(), cT.data());
      else
        lstm_forward<float>(hs_rev.data(), hT.data(), cT.data(), hx_all.data(), gates.data(), c_all.data(),
                            x_rev.data(), zeros.data(), zeros.data(), bw.w_ih.f32.data(), bw.w_hh.f32.data(),
                            bw.b.data(), lengths, B, S, in_size, H);
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
  for (int64_t l = 0; l < cfg.layers; ++l) {
    if (cfg.bidirectional && !cfg.bridge_concat) {
      Buffer<float> h0(static_cast<size_t>(B * H)), c0(static_cast<size_t>(B * H));
      linear_forward<float>(h0.data(), final_h[l].data(), w_.bridge_h_w.data(), w_.bridge_h_b.data(), B, 2 * H, H,
                            Activation::none);
      linear_forward<float>(c0.data(), final_c[l].data(), w_.bridge_c_w.data(), w_.bridge_c_b.data(), B, 2 * H, H,
                            Activation::none);
      enc.h.push_back(std::move(h0));
      enc.c.push_back(std::move(c0));
    } else {
      enc.h.push_back(std::move(final_h[l]));
      enc.c.push_back(std::move(final_c[l]));
    }
  }
  if (cfg.attention != EngineAttention::none) {
    if (cfg.bidirectional && !cfg.bridge_concat) {
      enc.memory.resize(static_cast<size_t>(B * S * H));
      linear_forward<float>(enc.memory.data(), x.data(), w_.bridge_m_w.data(), nullptr, B * S, 2 * H, H,
                            Activation::none);
    } else {
      enc.memory = std::move(x);  // [B, S, D*H]: the decoder's H (bridge "concat": D*H = H_)
    }
    if (cfg.attention == EngineAttention::general || cfg.attention == EngineAttention::concat) {
      const int64_t Hd = H_;
      enc.keys.resize(static_cast<size_t>(B * S * Hd));
      const bool concat = cfg.attention == EngineAttention::concat;
      const float* w = concat ? w_.att_w_k.data() : w_.att_w_a.data();
      // concat's query bias joins the keys once per input: tanh(W_q q + (W_k k + b_q))
      const float* bias = concat && !w_.att_b_q.empty() ? w_.att_b_q.data() : nullptr;
      linear_forward<float>(enc.keys.data(), enc.memory.data(), w, bias, B * S, Hd, Hd, Activation::none);
    }
  }
  return enc;
}

Encoded Runner::repeat(const Encoded& e, int64_t times, int64_t H, int64_t layers) {
  Encoded r;
  r.B = e.B * times;
  r.S = e.S;
  auto rep = [&](const Buffer<float>& src, int64_t row) {
    Buffer<float> out(src.size() * times);
    for (int64_t b = 0; b < e.B; ++b)
      for (int64_t j = 0; j < times; ++j)
        std::memcpy(out.data() + (b * times + j) * row, src.data() + b * row, sizeof(float) * row);
    return out;
  };
  if (!e.memory.empty()) r.memory = rep(e.memory, e.S * H);
  if (!e.keys.empty()) r.keys = rep(e.keys, e.S * H);
  for (int64_t b = 0; b < e.B; ++b)
    for (int64_t j = 0; j < times; ++j) r.lengths.push_back(e.lengths[b]);
  for (int64_t l = 0; l < layers; ++l) {
    r.h.push_back(rep(e.h[l], H));
    r.c.push_back(rep(e.c[l], H));
  }
  return r;
}

State Runner::initial_state(const Encoded& e) const {
  State s;
  s.h = e.h;
  s.c = e.c;
  if (w_.cfg.input_feeding) s.feed.assign(static_cast<size_t>(e.B * H_), 0.0f);
  return s;
}

// context [B, H] = sum_s a_s memory_s with a = masked softmax of the scores of `query` [B, H].
void Runner::attend(const Encoded& e, const float* query, float* context, StepBuffers& buf) const {
  const int64_t H = H_, S = e.S;
  Buffer<float>& scores = buf.scores;
  Buffer<float>& qp = buf.query_proj;
  const EngineAttention kind = w_.cfg.attention;
  for (int64_t b = 0; b < e.B; ++b) {
    const float* q = query + b * H;
    const float* mem = e.memory.data() + b * S * H;
    switch (kind) {
      case EngineAttention::dot:
        k_.gemv(mem, H, q, scores.data(), S, H, 1.0f, 0.0f);
        break;
      case EngineAttention::scaled_dot:
        k_.gemv(mem, H, q, scores.data(), S, H, static_cast<float>(1.0 / std::sqrt(double(H))), 0.0f);
        break;
      case EngineAttention::general:  // (q W_a) . k = q . (W_a k): keys hold W_a k
        k_.gemv(e.keys.data() + b * S * H, H, q, scores.data(), S, H, 1.0f, 0.0f);
        break;
      case EngineAttention::location:
        k_.gemv(w_.att_w_a.data(), H, q, scores.data(), S, H, 1.0f, 0.0f);
        break;
      case EngineAttention::concat:
        k_.gemv(w_.att_w_q.data(), H, q, qp.data(), H, H, 1.0f, 0.0f);
        k_.additive_scores(qp.data(), e.keys.data() + b * S * H, w_.att_v.data(), scores.data(), S, H);
        break;
      case EngineAttention::none:
        return;
    }
    k_.masked_softmax(scores.data(), e.lengths[b], S);
    gemm<float>(Trans::no, Trans::no, 1, H, S, 1.0f, scores.data(), S, mem, H, 0.0f, context + b * H, H);
  }
}

void Runner::step(const Encoded& e, const int64_t* tokens, State& st, float* logits, StepBuffers& buf) const {
  const EngineConfig& cfg = w_.cfg;
  const int64_t B = e.B, H = H_, G = 4 * H, E = cfg.embed, V = cfg.tgt_vocab;
  const bool attention = cfg.attention != EngineAttention::none;
  Buffer<float>& context = buf.context;
  // Bahdanau: attend from the previous top-layer state; the context joins the LSTM input.
  if (attention && cfg.bahdanau) attend(e, st.h.back().data(), context.data(), buf);
  const float* extra = cfg.bahdanau ? context.data() : (cfg.input_feeding ? st.feed.data() : nullptr);
  Buffer<float>& gates = buf.gates;
  Buffer<float>& x_emb = buf.x_emb;
  Buffer<float>& h_new = buf.h_new;
  Buffer<float>& c_new = buf.c_new;
  for (int64_t l = 0; l < cfg.layers; ++l) {
    const auto& lw = w_.dec[l];
    const float* bias_rows = nullptr;  // [B, G] per-row bias, or null for lw.b
    if (l == 0) {
      // gates = tgt_embed[token] @ W_e^T + extra @ W_x^T + h @ W_hh^T + b
      if (!w_.projected_embed.empty()) {
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(gates.data() + b * G, w_.projected_embed.data() + tokens[b] * G, sizeof(float) * G);
        bias_rows = gates.data();  // already in gates: the gate pass adds zero
      } else {
        for (int64_t b = 0; b < B; ++b)
          std::memcpy(x_emb.data() + b * E, w_.tgt_embed.data() + tokens[b] * E, sizeof(float) * E);
        matmul(w_.dec0_embed_cols, x_emb.data(), B, gates.data(), false);
      }
      if (extra) matmul(lw.w_ih, extra, B, gates.data(), true);
    } else {
      matmul(lw.w_ih, st.h[l - 1].data(), B, gates.data(), false);
    }
    matmul(lw.w_hh, st.h[l].data(), B, gates.data(), true);
    const float* bias = bias_rows ? buf.zero_bias.data() : lw.b.data();
    for (int64_t b = 0; b < B; ++b)
      k_.lstm_gates_forward(gates.data() + b * G, bias, st.c[l].data() + b * H, c_new.data() + b * H,
                            h_new.data() + b * H, H, H);
    std::swap(st.h[l], h_new);
    std::swap(st.c[l], c_new);
  }
  const float* h_top = st.h.back().data();
  const float* o = h_top;
  Buffer<float>& combined = buf.combined;
  Buffer<float>& attentional = buf.attentional;
  if (attention) {
    if (!cfg.bahdanau) attend(e, h_top, context.data(), buf);
    // o = tanh([c; h] @ W_c^T + b_c), or without the tanh (combine_activation "none")
    for (int64_t b = 0; b < B; ++b) {
      std::memcpy(combined.data() + b * 2 * H, context.data() + b * H, sizeof(float) * H);
      std::memcpy(combined.data() + b * 2 * H + H, h_top + b * H, sizeof(float) * H);
    }
    matmul(w_.combine, combined.data(), B, attentional.data(), false);
    for (int64_t b = 0; b < B; ++b)
      k_.bias_activation(attentional.data() + b * H, w_.combine_b.data(), H, cfg.combine_tanh);
    o = attentional.data();
    if (cfg.input_feeding) std::memcpy(st.feed.data(), o, sizeof(float) * B * H);
  }
  matmul(w_.out, o, B, logits, false);
  for (int64_t b = 0; b < B; ++b) k_.bias_activation(logits + b * V, w_.out_b.data(), V, false);
}

void check_source(const EngineConfig& cfg, const int64_t* src, const int64_t* lengths, int64_t B, int64_t S) {
  if (B < 1 || S < 1) throw std::invalid_argument("src must have shape [B, S] with B, S >= 1");
  for (int64_t i = 0; i < B * S; ++i)
    if (src[i] < 0 || src[i] >= cfg.src_vocab)
      throw std::invalid_argument("src ids must lie in [0, " + std::to_string(cfg.src_vocab) + "); got " +
                                  std::to_string(src[i]));
  for (int64_t b = 0; b < B; ++b)
    if (lengths[b] < 1 || lengths[b] > S)
      throw std::invalid_argument("lengths[" + std::to_string(b) + "] = " + std::to_string(lengths[b]) +
                                  " is out of range; expected 1 <= length <= S = " + std::to_string(S));
  if (cfg.attention == EngineAttention::location && S > cfg.max_source_length)
    throw std::invalid_argument("src has " + std::to_string(S) + " steps; location attention accepts at most " +
                                std::to_string(cfg.max_source_length));
}

// Source rows sorted longest first (the LSTM skips finished rows), as the Python layer does.
std::vector<int64_t> by_length(const int64_t* lengths, int64_t B) {
  std::vector<int64_t> order(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) order[b] = b;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  return order;
}

struct Sorted {
  std::vector<int64_t> src, lengths, order;
};

Sorted sort_batch(const int64_t* src, const int64_t* lengths, int64_t B, int64_t S) {
  Sorted s;
  std::vector<int64_t> full;
  if (!lengths) {
    full.assign(static_cast<size_t>(B), S);
    lengths = full.data();
  }
  s.order = by_length(lengths, B);
  s.src.resize(static_cast<size_t>(B * S));
  s.lengths.resize(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {
    std::memcpy(s.src.data() + i * S, src + s.order[i] * S, sizeof(int64_t) * S);
    s.lengths[i] = lengths[s.order[i]];
  }
  return s;
}

// rows * cols elements must be a size this process could hold (2^40), else invalid_argument.
void check_elements(const char* what, int64_t rows, int64_t cols) {
  int64_t n = 0;
  if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &n) || n > (int64_t(1) << 40))
    throw std::invalid_argument(std::string(what) + " would need " + std::to_string(rows) + " x " +
                                std::to_string(cols) + " elements, more than this decoder allows");
}

// The argmax of row[0..V) skipping `skip` (-1: none); like numpy, the first NaN wins.
int64_t argmax(const float* row, int64_t V, int64_t skip) {
  int64_t best = -1;
  for (int64_t v = 0; v < V; ++v) {
    if (v == skip) continue;
    if (std::isnan(row[v])) return v;
    if (best < 0 || row[v] > row[best]) best = v;
  }
  return best;
}

void check_lengths(int64_t max_length, int64_t min_length) {
  if (max_length < 1) throw std::invalid_argument("max_length must be >= 1; got " + std::to_string(max_length));
  if (min_length < 0 || min_length > max_length)
    throw std::invalid_argument("min_length must lie in [0, max_length]; got " + std::to_string(min_length));
}

// ---- the float32 range check ------------------------------------------------------------------
// The rule of s2sext.decoding.check_float32_range (the model layer's numpy decoders apply that
// one; tests hold the two to the same verdict and message): every input of a product is bounded
// (an embedding row, |h| <= 1, the attentional state, a context, the bridge's outputs), so
// |W| @ bound(x) + |b| bounds every pre-activation, score and logit, and each partial sum of it in
// any order. Past float32's range a sum would be inf or NaN depending on its order and fusion,
// which differ between this engine and the model layer, so such a model is refused. Bounds are
// summed in double from the float32 values as given (bf16 storage is covered by the halving).
class RangeCheck {
 public:
  using Vec = std::vector<double>;
  explicit RangeCheck(const std::map<std::string, Tensor>& params) : params_(params) {}

  // A term of a bound: |W| @ x for a matrix, |b| for a vector (x empty).
  struct Term {
    std::string name;
    Vec x;
  };

  // Each row's sum of the terms, refused past the range naming the terms' parameters.
  Vec bound(const std::string& what, const std::vector<Term>& terms) const {
    Vec total;
    std::string names;
    for (const Term& term : terms) {
      const Vec part = product(term.name, term.x);
      if (total.empty()) total.assign(part.size(), 0.0);
      for (size_t r = 0; r < part.size(); ++r) total[r] += part[r];
      names += (names.empty() ? "" : ", ") + term.name;
    }
    refuse_past_range(what, total, names);
    return total;
  }

  // |W| @ x for a matrix, |b| for a vector (x empty).
  Vec product(const std::string& name, const Vec& x) const {
    const Tensor& t = params_.at(name);  // (presence and shape checked by the constructor)
    const size_t rows = static_cast<size_t>(t.shape[0]);
    Vec y(rows, 0.0);
    if (t.shape.size() == 1) {
      for (size_t r = 0; r < rows; ++r) y[r] = std::fabs(double(t.values[r]));
      return y;
    }
    const size_t cols = static_cast<size_t>(t.shape[1]);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c) y[r] += std::fabs(double(t.values[r * cols + c])) * x[c];
    return y;
  }

  // |W|^T @ x: the bound on x @ W.
  Vec transposed(const std::string& name, const Vec& x) const {
    const Tensor& t = params_.at(name);
    const size_t rows = static_cast<size_t>(t.shape[0]), cols = static_cast<size_t>(t.shape[1]);
    Vec y(cols, 0.0);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c) y[c] += std::fabs(double(t.values[r * cols + c])) * x[r];
    return y;
  }

  // The largest absolute value of each column of a [rows, cols] parameter (an embedding row's bound).
  Vec column_max(const std::string& name) const {
    const Tensor& t = params_.at(name);
    const size_t rows = static_cast<size_t>(t.shape[0]), cols = static_cast<size_t>(t.shape[1]);
    Vec m(cols, 0.0);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c) m[c] = nan_max(m[c], std::fabs(double(t.values[r * cols + c])));
    return m;
  }

  double abs_sum(const std::string& name) const {
    double sum = 0.0;
    for (float v : params_.at(name).values) sum += std::fabs(double(v));
    return sum;
  }

  static void refuse_past_range(const std::string& what, const Vec& values, const std::string& names) {
    double top = 0.0;
    for (double v : values) top = nan_max(top, v);
    const double largest = double(std::numeric_limits<float>::max());
    // float32's largest value halved, to cover rounding on the way and bfloat16 storage
    if (top <= largest / 2) return;  // (NaN fails)
    throw std::invalid_argument("the model's " + what + " can reach " + general_3(top) + " in absolute value (" +
                                names + "), past float32's range (largest " + general_3(largest) +
                                "): decoding would give inf or NaN; the weights are too large or not finite");
  }

  static Vec ones(int64_t n) { return Vec(static_cast<size_t>(n), 1.0); }
  static Vec at_least_one(Vec v) {
    for (double& x : v) x = std::max(1.0, x);  // (NaN refused before)
    return v;
  }
  static Vec joined(Vec a, const Vec& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

 private:
  static double nan_max(double a, double b) { return std::isnan(a) || std::isnan(b) ? std::nan("") : std::max(a, b); }
  // Python's format(x, ".3g"), NaN unsigned
  static std::string general_3(double x) {
    if (std::isnan(x)) return "nan";
    char text[32];
    std::snprintf(text, sizeof text, "%.3g", x);
    return text;
  }

  const std::map<std::string, Tensor>& params_;
};

void check_float32_range(const EngineConfig& cfg, const std::map<std::string, Tensor>& params) {
  using Vec = RangeCheck::Vec;
  const RangeCheck check(params);
  const int64_t H = cfg.hidden, L = cfg.layers, He = cfg.bridge_concat ? H / 2 : H;
  const std::vector<std::string> directions =
      cfg.bidirectional ? std::vector<std::string>{"", "_reverse"} : std::vector<std::string>{""};
  Vec x = check.column_max("src_embed");
  for (int64_t k = 0; k < L; ++k) {
    for (const std::string& suffix : directions) {
      const std::string p = "encoder.l" + std::to_string(k) + suffix;
      check.bound(p + " gates", {{p + ".w_ih", x}, {p + ".w_hh", RangeCheck::ones(He)}, {p + ".b", {}}});
    }
    x = RangeCheck::ones(int64_t(directions.size()) * He);
  }
  const Vec ones = RangeCheck::ones(H);
  Vec h0 = ones, memory = ones;
  const bool attention = cfg.attention != EngineAttention::none;
  if (cfg.bidirectional && !cfg.bridge_concat) {  // the bridge's outputs: the decoder's h0, the attention memory
    h0 = RangeCheck::at_least_one(check.bound("bridge.h output", {{"bridge.h.weight", x}, {"bridge.h.bias", {}}}));
    if (attention) memory = check.bound("attention memory", {{"bridge.memory.weight", x}});
  }
  const Vec query = cfg.bahdanau ? h0 : ones;  // Bahdanau's first query is the initial state
  switch (cfg.attention) {
    case EngineAttention::dot:
    case EngineAttention::scaled_dot: {
      double score = 0.0;
      for (int64_t i = 0; i < H; ++i) score += query[i] * memory[i];
      RangeCheck::refuse_past_range("attention scores", {score}, "the attention memory");
      break;
    }
    case EngineAttention::general: {  // the model sums (q W_a) . hs, this engine q . (W_a hs)
      const Vec keys = check.product("attention.w_a", memory), queries = check.transposed("attention.w_a", query);
      double score = 0.0;
      for (int64_t i = 0; i < H; ++i) score += queries[i] * memory[i];
      RangeCheck::refuse_past_range("attention scores", RangeCheck::joined(RangeCheck::joined(keys, queries), {score}),
                                    "attention.w_a");
      break;
    }
    case EngineAttention::concat: {  // the query bias is in the model's query, this engine's keys
      std::vector<RangeCheck::Term> q = {{"attention.w_q", query}}, k = {{"attention.w_k", memory}};
      if (cfg.query_bias) {
        q.push_back({"attention.b_q", {}});
        k.push_back({"attention.b_q", {}});
      }
      check.bound("attention query projection", q);
      check.bound("attention keys", k);
      RangeCheck::refuse_past_range("attention scores", {check.abs_sum("attention.v")}, "attention.v");
      break;
    }
    case EngineAttention::location:
      check.bound("attention scores", {{"attention.w_a", query}});
      break;
    case EngineAttention::none:
      break;
  }
  Vec o = ones;  // the output layer's input: h, or the attentional state (tanh, or unbounded but by this)
  if (attention) {
    const Vec combined =
        check.bound("combine layer", {{"combine.weight", RangeCheck::joined(memory, ones)}, {"combine.bias", {}}});
    if (!cfg.combine_tanh) o = RangeCheck::at_least_one(combined);
  }
  x = check.column_max("tgt_embed");
  if (attention && (cfg.bahdanau || cfg.input_feeding)) x = RangeCheck::joined(x, cfg.bahdanau ? memory : o);
  for (int64_t k = 0; k < L; ++k) {
    const std::string p = "decoder.l" + std::to_string(k);
    check.bound(p + " gates", {{p + ".w_ih", x}, {p + ".w_hh", h0}, {p + ".b", {}}});
    x = ones;
  }
  check.bound("logits", {{"out.weight", o}, {"out.bias", {}}});
}

}  // namespace

void check_engine_config(const EngineConfig& c) {
  if (c.src_vocab < 5 || c.tgt_vocab < 5)
    throw std::invalid_argument("src_vocab_size and tgt_vocab_size must be >= 5 (got " + std::to_string(c.src_vocab) +
                                " and " + std::to_string(c.tgt_vocab) + ")");
  if (c.embed < 1 || c.hidden < 1 || c.layers < 1 || c.max_source_length < 1)
    throw std::invalid_argument("embed_size, hidden_size, num_layers and max_source_length must be >= 1");
  const bool attention = c.attention != EngineAttention::none;
  if (!attention && (c.bahdanau || c.input_feeding))
    throw std::invalid_argument("attention_style 'bahdanau' and input_feeding need an attention kind");
  if (c.input_feeding && c.bahdanau) throw std::invalid_argument("input_feeding needs attention_style 'luong'");
  if (c.bridge_concat && !(c.bidirectional && c.hidden % 2 == 0))
    throw std::invalid_argument("bridge 'concat' needs bidirectional and an even hidden_size");
  if (!c.combine_tanh && !attention) throw std::invalid_argument("combine_activation 'none' needs an attention kind");
  if (c.query_bias && c.attention != EngineAttention::concat)
    throw std::invalid_argument("attention_query_bias needs attention 'concat'");
  // Every parameter's bytes (float32) below 2^63. Shapes of docs/model.md; each listed shape is
  // the largest of its family (biases and the bridge's [H, 2H] are smaller than [4H, H]; bridge
  // "concat" halves the encoder's sizes).
  const int64_t H = c.hidden, E = c.embed, extra = attention && (c.input_feeding || c.bahdanau) ? H : 0;
  int64_t G = 0, dec_in = 0, enc_in = 0;
  bool ok = !__builtin_mul_overflow(H, int64_t(4), &G) && !__builtin_add_overflow(E, extra, &dec_in) &&
            !__builtin_mul_overflow(H, int64_t(c.bidirectional ? 2 : 1), &enc_in);
  auto fits = [&](int64_t rows, int64_t cols) {
    int64_t n = 0;
    return !__builtin_mul_overflow(rows, cols, &n) && !__builtin_mul_overflow(n, int64_t(sizeof(float)), &n);
  };
  ok = ok && fits(c.src_vocab, E) && fits(c.tgt_vocab, E) && fits(c.tgt_vocab, H) && fits(G, dec_in) && fits(G, H) &&
       (c.layers == 1 || fits(G, enc_in)) &&
       (c.attention != EngineAttention::location || fits(c.max_source_length, H));
  if (!ok) throw std::invalid_argument("the configuration's sizes give a parameter too large to store (2^63 bytes or more)");
}

Engine::Engine(const EngineConfig& cfg, const std::map<std::string, Tensor>& params, WeightType type)
    : w_(new EngineWeights()) {
  check_engine_config(cfg);  // first: the sizes below are computed from cfg
  EngineWeights& w = *w_;
  w.cfg = cfg;
  w.type = type;
  const int64_t H = cfg.hidden, E = cfg.embed, G = 4 * H, L = cfg.layers, D = cfg.bidirectional ? 2 : 1;
  const int64_t V = cfg.tgt_vocab;
  const bool attention = cfg.attention != EngineAttention::none;
  w.G = G;
  w.src_embed = copy_of(need(params, "src_embed", {cfg.src_vocab, E}));
  w.tgt_embed = copy_of(need(params, "tgt_embed", {V, E}));
  // an LSTM of hidden size h (the decoder's H, or an encoder direction's He)
  auto lstm = [&](const std::string& p, int64_t in, int64_t h, WeightType t, int64_t c0 = 0) {
    EngineWeights::Lstm l;
    const Tensor& w_ih = need(params, p + ".w_ih", {4 * h, in});
    l.w_ih = matrix_of(w_ih.values.data(), 4 * h, in, c0, in, t);
    const Tensor& w_hh = need(params, p + ".w_hh", {4 * h, h});
    l.w_hh = matrix_of(w_hh.values.data(), 4 * h, h, 0, h, t);
    l.b = copy_of(need(params, p + ".b", {4 * h}));
    return l;
  };
  const int64_t He = cfg.bridge_concat ? H / 2 : H;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t in = l == 0 ? E : D * He;
    w.enc_fwd.push_back(lstm("encoder.l" + std::to_string(l), in, He, type));
    if (cfg.bidirectional) w.enc_bwd.push_back(lstm("encoder.l" + std::to_string(l) + "_reverse", in, He, type));
  }
  if (cfg.bidirectional && !cfg.bridge_concat) {
    w.bridge_h_w = copy_of(need(params, "bridge.h.weight", {H, 2 * H}));
    w.bridge_h_b = copy_of(need(params, "bridge.h.bias", {H}));
    w.bridge_c_w = copy_of(need(params, "bridge.c.weight", {H, 2 * H}));
    w.bridge_c_b = copy_of(need(params, "bridge.c.bias", {H}));
    if (attention) w.bridge_m_w = copy_of(need(params, "bridge.memory.weight", {H, 2 * H}));
  }
  const int64_t extra = attention && (cfg.input_feeding || cfg.bahdanau) ? H : 0;
  for (int64_t l = 0; l < L; ++l) {
    const std::string p = "decoder.l" + std::to_string(l);
    if (l == 0) {
      w.dec.push_back(lstm(p, E + extra, H, type, E));  // the non-embedding columns
      const Tensor& w_ih = need(params, p + ".w_ih", {G, E + extra});
      // fp32 when folded into the table below (once, at load); else in the engine's storage type
      const bool table = static_cast<size_t>(V) * G * sizeof(float) <= kProjectedTableMaxBytes;
      w.dec0_embed_cols = matrix_of(w_ih.values.data(), G, E + extra, 0, E, table ? WeightType::float32 : type);
    } else {
      w.dec.push_back(lstm(p, H, H, type));
    }
  }
  if (static_cast<size_t>(V) * G * sizeof(float) <= kProjectedTableMaxBytes) {
    // E_proj [V, G] = tgt_embed @ W_e^T + b: a step's embedding product becomes a row lookup
    w.projected_embed.resize(static_cast<size_t>(V * G));
    linear_forward<float>(w.projected_embed.data(), w.tgt_embed.data(), w.dec0_embed_cols.f32.data(),
                          w.dec[0].b.data(), V, E, G, Activation::none);
  }
  switch (cfg.attention) {
    case EngineAttention::general:
      w.att_w_a = copy_of(need(params, "attention.w_a", {H, H}));
      break;
    case EngineAttention::location:
      w.att_w_a = copy_of(need(params, "attention.w_a", {cfg.max_source_length, H}));
      break;
    case EngineAttention::concat:
      w.att_w_q = copy_of(need(params, "attention.w_q", {H, H}));
      w.att_w_k = copy_of(need(params, "attention.w_k", {H, H}));
      w.att_v = copy_of(need(params, "attention.v", {H}));
      if (cfg.query_bias) w.att_b_q = copy_of(need(params, "attention.b_q", {H}));
      break;
    default:
      break;
  }
  if (attention) {
    const Tensor& c = need(params, "combine.weight", {H, 2 * H});
    w.combine = matrix_of(c.values.data(), H, 2 * H, 0, 2 * H, type);
    w.combine_b = copy_of(need(params, "combine.bias", {H}));
  }
  const Tensor& o = need(params, "out.weight", {V, H});
  w.out = matrix_of(o.values.data(), V, H, 0, H, type);
  w.out_b = copy_of(need(params, "out.bias", {V}));
  // after every parameter's presence and shape is checked
  check_float32_range(cfg, params);
}

Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;
const EngineConfig& Engine::config() const { return w_->cfg; }
WeightType Engine::weight_type() const { return w_->type; }

std::vector<int64_t> Engine::greedy(const int64_t* src, const int64_t* lengths_in, int64_t B, int64_t S,
                                    int64_t max_length, int64_t min_length, int64_t* steps, bool serial) const {
  check_lengths(max_length, min_length);
  check_elements("the batch", B, std::max(S, w_->cfg.tgt_vocab) * 4 * w_->cfg.hidden);
  std::unique_ptr<SerialScope> scope(serial ? new SerialScope() : nullptr);
  const FlushDenormals flush;
  const Sorted sorted = sort_batch(src, lengths_in, B, S);
  check_source(w_->cfg, sorted.src.data(), sorted.lengths.data(), B, S);
  const Runner runner(*w_);
  const Encoded enc = runner.encode(sorted.src.data(), sorted.lengths.data(), B, S);
  State state = runner.initial_state(enc);
  StepBuffers buf(B, S, w_->cfg.hidden, w_->cfg.embed);
  const int64_t V = w_->cfg.tgt_vocab;
  Buffer<float> logits(static_cast<size_t>(B * V));
  std::vector<int64_t> tokens(static_cast<size_t>(B), kSos);
  std::vector<int64_t> chosen;  // [T, B] in sorted row order, one step appended at a time
  std::vector<char> done(static_cast<size_t>(B), 0);
  int64_t T = 0;
  for (int64_t t = 0; t < max_length; ++t) {
    runner.step(enc, tokens.data(), state, logits.data(), buf);
    int64_t finished = 0;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t best = argmax(logits.data() + b * V, V, t < min_length ? kEos : -1);
      const int64_t token = done[b] ? kPad : best;
      if (token == kEos) done[b] = 1;
      tokens[b] = token;
      finished += done[b];
    }
    chosen.insert(chosen.end(), tokens.begin(), tokens.end());
    T = t + 1;
    if (finished == B) break;
  }
  std::vector<int64_t> out(static_cast<size_t>(B * T));
  for (int64_t i = 0; i < B; ++i)
    for (int64_t t = 0; t < T; ++t) out[sorted.order[i] * T + t] = chosen[t * B + i];
  *steps = T;
  return out;
}

std::vector<std::vector<Hypothesis>> Engine::beam(const int64_t* src, const int64_t* lengths_in, int64_t B,
                                                  int64_t S, int64_t beam_size, int64_t max_length,
                                                  int64_t min_length, int64_t n_best, double alpha,
                                                  bool serial) const {
  check_lengths(max_length, min_length);
  if (beam_size < 1 || beam_size > kMaxBeamSize)
    throw std::invalid_argument("beam_size must lie in [1, " + std::to_string(kMaxBeamSize) + "]");
  int64_t rows = 0;
  if (__builtin_mul_overflow(B, beam_size, &rows)) throw std::invalid_argument("B * beam_size is too large");
  // (nothing is sized by max_length: the history grows with the steps taken)
  check_elements("the beams", rows, std::max(S, w_->cfg.tgt_vocab) * 4 * w_->cfg.hidden);
  if (n_best < 1 || n_best > beam_size) throw std::invalid_argument("n_best must lie in [1, beam_size]");
  if (!(alpha >= 0)) throw std::invalid_argument("length_penalty must be >= 0");
  std::unique_ptr<SerialScope> scope(serial ? new SerialScope() : nullptr);
  const FlushDenormals flush;
  const Sorted sorted = sort_batch(src, lengths_in, B, S);
  check_source(w_->cfg, sorted.src.data(), sorted.lengths.data(), B, S);
  const int64_t K = beam_size, V = w_->cfg.tgt_vocab, H = w_->cfg.hidden, L = w_->cfg.layers;
  const Runner runner(*w_);
  const Encoded enc = Runner::repeat(runner.encode(sorted.src.data(), sorted.lengths.data(), B, S), K, H, L);
  State state = runner.initial_state(enc);
  StepBuffers buf(B * K, S, H, w_->cfg.embed);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  auto penalty = [&](double len) { return std::pow((5.0 + len) / 6.0, alpha); };
  std::vector<double> scores(static_cast<size_t>(B * K), neg_inf), logp(static_cast<size_t>(B * K * V));
  for (int64_t b = 0; b < B; ++b) scores[b * K] = 0.0;
  std::vector<int64_t> tokens(static_cast<size_t>(B * K), kSos);
  std::vector<std::vector<int64_t>> hist_tokens, hist_parents;
  std::vector<std::vector<Hypothesis>> finished(static_cast<size_t>(B));
  std::vector<char> done(static_cast<size_t>(B), 0);
  Buffer<float> logits(static_cast<size_t>(B * K * V));
  const double bound_factor = penalty(double(max_length));
  std::vector<int64_t> cand(static_cast<size_t>(K * V));
  for (int64_t t = 0; t < max_length; ++t) {
    runner.step(enc, tokens.data(), state, logits.data(), buf);
    for (int64_t r = 0; r < B * K; ++r) {  // log-softmax in float64
      const float* z = logits.data() + r * V;
      double m = z[0];
      for (int64_t v = 1; v < V; ++v) m = std::max(m, double(z[v]));
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(z[v]) - m);
      const double log_sum = std::log(sum);
      for (int64_t v = 0; v < V; ++v) logp[r * V + v] = (double(z[v]) - m) - log_sum;
      if (t < min_length) logp[r * V + kEos] = neg_inf;
    }
    std::vector<int64_t> step_tokens(static_cast<size_t>(B * K)), step_parents(static_cast<size_t>(B * K));
    std::vector<double> new_scores(static_cast<size_t>(B * K));
    for (int64_t b = 0; b < B; ++b) {
      // the K best of K*V candidates, ties to the lower index (numpy's stable argsort)
      auto value = [&](int64_t i) { return scores[b * K + i / V] + logp[(b * K + i / V) * V + i % V]; };
      for (int64_t i = 0; i < K * V; ++i) cand[i] = i;
      // numpy's stable argsort of -candidates: larger first, NaN after everything, ties by index
      std::partial_sort(cand.begin(), cand.begin() + K, cand.end(), [&](int64_t a, int64_t c) {
        const double va = value(a), vc = value(c);
        const bool na = std::isnan(va), nc = std::isnan(vc);
        if (na != nc) return nc;
        if (!na && va != vc) return va > vc;
        return a < c;
      });
      for (int64_t j = 0; j < K; ++j) {
        step_tokens[b * K + j] = cand[j] % V;
        step_parents[b * K + j] = b * K + cand[j] / V;
        new_scores[b * K + j] = value(cand[j]);
      }
    }
    hist_tokens.push_back(step_tokens);
    hist_parents.push_back(step_parents);
    const bool last = t == max_length - 1;
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      for (int64_t j = 0; j < K; ++j) {
        const double score = new_scores[b * K + j];
        if (score == neg_inf) continue;
        if (step_tokens[b * K + j] == kEos || last) {
          Hypothesis h;
          int64_t slot = b * K + j;
          for (int64_t s = t; s >= 0; --s) {
            h.tokens.push_back(hist_tokens[s][slot]);
            slot = hist_parents[s][slot];
          }
          std::reverse(h.tokens.begin(), h.tokens.end());
          h.log_prob = score;
          h.score = score / penalty(double(h.tokens.size()));
          finished[b].push_back(std::move(h));
          new_scores[b * K + j] = neg_inf;
        }
      }
      std::stable_sort(finished[b].begin(), finished[b].end(),
                       [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
      double alive_best = neg_inf;  // NaN propagates, as numpy's max does
      for (int64_t j = 0; j < K; ++j) {
        const double v = new_scores[b * K + j];
        if (std::isnan(v) || std::isnan(alive_best)) alive_best = std::nan("");
        else alive_best = std::max(alive_best, v);
      }
      if (alive_best == neg_inf ||
          (int64_t(finished[b].size()) >= n_best && alive_best / bound_factor <= finished[b][n_best - 1].score))
        done[b] = 1;
      if (done[b])
        for (int64_t j = 0; j < K; ++j) new_scores[b * K + j] = neg_inf;
    }
    if (std::all_of(done.begin(), done.end(), [](char d) { return d != 0; })) break;
    // reorder the state by parent (into the spare buffers, then swap: no allocation per step)
    auto gather = [&](Buffer<float>& rows, Buffer<float>& spare) {
      for (int64_t r = 0; r < B * K; ++r)
        std::memcpy(spare.data() + r * H, rows.data() + step_parents[r] * H, sizeof(float) * H);
      std::swap(rows, spare);
    };
    for (int64_t l = 0; l < L; ++l) {
      gather(state.h[l], buf.h_new);
      gather(state.c[l], buf.c_new);
    }
    if (!state.feed.empty()) gather(state.feed, buf.attentional);
    tokens = step_tokens;
    scores = new_scores;
  }
  std::vector<std::vector<Hypothesis>> result(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {
    auto& f = finished[i];
    if (int64_t(f.size()) > n_best) f.resize(static_cast<size_t>(n_best));
    result[sorted.order[i]] = std::move(f);
  }
  return result;
}

}  // namespace s2s
