// Recurrent weights prepared once per call (see recurrent_weights.h); the only file that names oneDNN.
#include "runtime/recurrent_weights.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "runtime/parallel.h"

#if defined(S2S_WITH_ONEDNN)
#include <oneapi/dnnl/dnnl.hpp>
// oneDNN splits a primitive over the threads of its CPU runtime. Only the OpenMP and the sequential
// runtimes are used here: their thread count can be held at one inside the calling thread (an
// OpenMP thread count is per thread), so that oneDNN never starts threads of its own beside
// s2sext's. A build with another runtime (TBB, a thread pool) leaves the backend out.
#if DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP
#include <omp.h>
#define S2S_ONEDNN 1
#elif DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_SEQ
#define S2S_ONEDNN 1
#endif
#endif

namespace s2s {

namespace {

RecurrentBackend initial_backend() {
  // S2SEXT_RECURRENT_BACKEND picks the start-up backend; otherwise oneDNN where built and it packs
  // the weights on this CPU (onednn_packs_weights), else BLAS
  RecurrentBackend backend = onednn_packs_weights() ? RecurrentBackend::onednn : RecurrentBackend::blas;
  const char* env = std::getenv("S2SEXT_RECURRENT_BACKEND");
  RecurrentBackend requested;
  if (env && parse_recurrent_backend(env, &requested) && (requested == RecurrentBackend::blas || onednn_built()))
    backend = requested;
  return backend;
}

std::atomic<int64_t> prepared_count(0);

std::atomic<int>& backend_state() {
  static std::atomic<int> state(static_cast<int>(initial_backend()));
  return state;
}

#if defined(S2S_ONEDNN)

// Holds oneDNN's thread count at one on this thread while it lives, and restores the caller's
// OpenMP setting afterwards (another library in the process may share the OpenMP runtime).
class OneDnnSingleThread {
 public:
#if DNNL_CPU_THREADING_RUNTIME == DNNL_RUNTIME_OMP
  OneDnnSingleThread() : previous_(omp_get_max_threads()) {
    if (previous_ != 1) omp_set_num_threads(1);
  }
  ~OneDnnSingleThread() {
    if (previous_ != 1) omp_set_num_threads(previous_);
  }

 private:
  int previous_;
#endif
};

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

using dnnl::memory;
constexpr memory::data_type kF32 = memory::data_type::f32;

// A matmul primitive for one shape: src [M, K] (M given at each execution) with row stride lda,
// weights [K, N] in the layout oneDNN picks, dst [M, N] with row stride ldc, plus dst when
// accumulating. Its scratchpad belongs to the caller (scratchpad_mode::user): the primitive's
// implementation may be shared between threads through oneDNN's primitive cache, and a scratchpad
// of the library's own would then be shared too.
struct MatmulShape {
  int64_t K, N, lda, ldc;
  bool accumulate;
  bool operator==(const MatmulShape& o) const {
    return K == o.K && N == o.N && lda == o.lda && ldc == o.ldc && accumulate == o.accumulate;
  }
};

struct Matmul {
  MatmulShape shape;
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul primitive;
  std::vector<unsigned char> scratchpad;
};

std::shared_ptr<Matmul> make_matmul(const MatmulShape& s) {
  memory::desc src({DNNL_RUNTIME_DIM_VAL, s.K}, kF32, memory::dims{s.lda, 1});
  memory::desc weights({s.K, s.N}, kF32, memory::format_tag::any);
  memory::desc dst({DNNL_RUNTIME_DIM_VAL, s.N}, kF32, memory::dims{s.ldc, 1});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (s.accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  auto m = std::make_shared<Matmul>();
  m->shape = s;
#if DNNL_VERSION_MAJOR >= 3
  m->pd = dnnl::matmul::primitive_desc(cpu_engine(), src, weights, dst, attr);
#else
  m->pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(src, weights, dst), attr, cpu_engine());
#endif
  m->primitive = dnnl::matmul(m->pd);
  m->scratchpad.resize(m->pd.scratchpad_desc().get_size());
  return m;
}

// This thread's primitives by shape, so that a call's steps, and later calls of the same shape,
// reuse them; a handful of shapes (a model's layers and directions), the oldest dropped past that.
std::shared_ptr<Matmul> thread_matmul(const MatmulShape& s) {
  constexpr size_t kMaxShapes = 16;
  thread_local std::vector<std::shared_ptr<Matmul>> cache;
  for (const auto& m : cache)
    if (m->shape == s) return m;
  if (cache.size() == kMaxShapes) cache.erase(cache.begin());
  cache.push_back(make_matmul(s));
  return cache.back();
}

#endif  // S2S_ONEDNN

}  // namespace

bool onednn_built() {
#if defined(S2S_ONEDNN)
  return true;
#else
  return false;
#endif
}

std::string onednn_version() {
#if defined(S2S_ONEDNN)
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
#else
  return "";
#endif
}

bool onednn_packs_weights() {
#if defined(S2S_ONEDNN)
  static const bool packs = [] {
    try {  // a decoder-sized recurrent product: h [M, 256] @ W^T, W [1024, 256]
      const MatmulShape shape{256, 1024, 256, 1024, false};
      const memory::desc weights = make_matmul(shape)->pd.weights_desc();
#if DNNL_VERSION_MAJOR >= 3
      return weights.get_format_kind() != memory::format_kind::blocked || weights.get_inner_nblks() > 0;
#else
      return weights.data.format_kind != dnnl_blocked || weights.data.format_desc.blocking.inner_nblks > 0;
#endif
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return packs;
#else
  return false;
#endif
}

int64_t onednn_weights_prepared() { return prepared_count.load(std::memory_order_relaxed); }

RecurrentBackend recurrent_backend() { return static_cast<RecurrentBackend>(backend_state().load()); }

void set_recurrent_backend(RecurrentBackend backend) {
  if (backend == RecurrentBackend::onednn && !onednn_built())
    throw std::invalid_argument("the oneDNN recurrent backend is not built in");
  backend_state().store(static_cast<int>(backend));
}

const char* recurrent_backend_name(RecurrentBackend backend) {
  return backend == RecurrentBackend::onednn ? "onednn" : "blas";
}

bool parse_recurrent_backend(const std::string& name, RecurrentBackend* out) {
  if (name == "blas") *out = RecurrentBackend::blas;
  else if (name == "onednn") *out = RecurrentBackend::onednn;
  else return false;
  return true;
}

template <class T>
struct RecurrentWeights<T>::Prepared {
#if defined(S2S_ONEDNN)
  std::shared_ptr<Matmul> matmul;
  memory weights;  // the weights in the primitive's layout, in memory oneDNN owns
#endif
};

namespace {

// Whether the oneDNN backend takes a product: not on the BLAS backend; not for double (oneDNN's
// CPU matmul has no float64); not on a thread outside a parallel region while s2sext has more
// threads (gemm() may split the product over them, and oneDNN here runs on one); not for an empty
// product.
template <class T>
bool onednn_applies(int64_t K, int64_t N) {
  return onednn_built() && std::is_same_v<T, float> && recurrent_backend() == RecurrentBackend::onednn && K > 0 &&
         N > 0 && (num_threads() == 1 || in_parallel_region());
}

// The oneDNN state for float weights, or null where oneDNN declines the shape.
template <class T>
std::unique_ptr<typename RecurrentWeights<T>::Prepared> prepare(Trans trans_w, int64_t K, int64_t N, const T* W,
                                                                int64_t ldw, int64_t lda, int64_t ldc,
                                                                bool accumulate) {
  using Prepared = typename RecurrentWeights<T>::Prepared;
#if defined(S2S_ONEDNN)
  if constexpr (std::is_same_v<T, float>) {
    try {
      OneDnnSingleThread one_thread;
      auto p = std::make_unique<Prepared>();
      p->matmul = thread_matmul(MatmulShape{K, N, lda, ldc, accumulate});
      // W [N, K] row-major is op(W) = W^T [K, N] with strides (1, ldw); W [K, N] has (ldw, 1)
      const memory::desc user_md({K, N}, kF32, trans_w == Trans::yes ? memory::dims{1, ldw} : memory::dims{ldw, 1});
      memory user(user_md, cpu_engine(), const_cast<float*>(W));
      p->weights = memory(p->matmul->pd.weights_desc(), cpu_engine());
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      const dnnl::reorder::primitive_desc rpd(user, p->weights, attr);
      std::vector<unsigned char> pad(rpd.scratchpad_desc().get_size());
      memory pad_mem(rpd.scratchpad_desc(), cpu_engine(), pad.data());
      dnnl::reorder(rpd).execute(thread_stream(), {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, p->weights},
                                                   {DNNL_ARG_SCRATCHPAD, pad_mem}});
      thread_stream().wait();
      prepared_count.fetch_add(1, std::memory_order_relaxed);
      return p;
    } catch (const dnnl::error&) {
      return nullptr;  // oneDNN declined this shape: every step takes gemm()
    }
  }
#endif
  (void)trans_w, (void)K, (void)N, (void)W, (void)ldw, (void)lda, (void)ldc, (void)accumulate;
  return std::unique_ptr<Prepared>();
}

}  // namespace

template <class T>
RecurrentWeights<T>::RecurrentWeights(Trans trans_w, int64_t K, int64_t N, const T* W, int64_t ldw, int64_t lda,
                                      int64_t ldc, bool accumulate)
    : trans_w_(trans_w), K_(K), N_(N), ldw_(ldw), lda_(lda), ldc_(ldc), accumulate_(accumulate), W_(W),
      onednn_(onednn_applies<T>(K, N)) {}

template <class T>
RecurrentWeights<T>::~RecurrentWeights() = default;

template <class T>
void RecurrentWeights<T>::multiply(int64_t M, const T* A, T* C) const {
  if (M <= 0) return;
#if defined(S2S_ONEDNN)
  if constexpr (std::is_same_v<T, float>) {
    if (onednn_ && !tried_ && !gemm_runs_gemv(Trans::no, trans_w_, M)) {
      tried_ = true;
      prepared_ = prepare<T>(trans_w_, K_, N_, W_, ldw_, lda_, ldc_, accumulate_);
    }
    if (prepared_ && !gemm_runs_gemv(Trans::no, trans_w_, M)) {
      OneDnnSingleThread one_thread;
      Matmul& m = *prepared_->matmul;
      memory src(memory::desc({M, K_}, kF32, memory::dims{lda_, 1}), cpu_engine(), const_cast<float*>(A));
      memory dst(memory::desc({M, N_}, kF32, memory::dims{ldc_, 1}), cpu_engine(), C);
      memory pad(m.pd.scratchpad_desc(), cpu_engine(), m.scratchpad.data());
      m.primitive.execute(thread_stream(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, prepared_->weights},
                                            {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, pad}});
      thread_stream().wait();
      return;
    }
  }
#endif
  gemm<T>(Trans::no, trans_w_, M, N_, K_, T(1), A, lda_, W_, ldw_, accumulate_ ? T(1) : T(0), C, ldc_);
}

template class RecurrentWeights<float>;
template class RecurrentWeights<double>;

}  // namespace s2s
