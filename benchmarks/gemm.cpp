// GEMM: C[M x N] = A[M x K] B, the weights given N x K (the LLM layout),
// tstream and its peers side by side in one run.
//
//   BM_gemm/<impl>/<type>/<M>x<N>x<K>/threads:<t>
//
// impl:
//  - tstream: gemm_weights packed once outside the timed loop (from N x K);
//    A is converted per call (bf16 rounding, int8 row quantization: in the
//    time).
//  - tstream_prepared (bf16, i8): A prepared once outside the timed loop
//    (gemm_activations), as when several GEMMs share A (Q, K, V; gate, up)
//    and as oneDNN is given A below: the same bits as tstream.
//  - eigen (f32): C = A W^T with row-major maps; with 2 threads the columns
//    of C are split in two blocks on a pinned tstream::thread_team, as
//    gemv_peers.cpp splits rows (no OpenMP inside Eigen).
//  - openblas (f32; bf16 when cblas_sbgemm links): cblas_sgemm row-major
//    with B transposed, threads via openblas_set_num_threads.
//  - onednn: a matmul primitive with weights format_tag::any, reordered once
//    at setup (its fast path). f32; bf16 src and weights with f32 dst; u8
//    src x s8 weights with f32 dst (A given already quantized: its
//    quantization is not in oneDNN's time).
// Counters: FLOP/s (2 M N K per call), frac_of_peak against BM_peak_fma of
// the type's instruction (fp32 FMA, vdpbf16ps, vpdpbusd) and threads, and
// bytes_per_second (A, B and C bytes per call).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <omp.h>

#include "bench_common.hpp"
#include "tstream/kernels/gemm/gemm.hpp"

#if defined(TSTREAM_BENCH_HAVE_EIGEN)
#include <Eigen/Core>
#endif
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS)
#include <cblas.h>
#endif
#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace tstream_bench {
namespace {

struct gemm_shape {
  std::size_t m, n, k;
};

std::vector<gemm_shape> gemm_shapes() {
  std::vector<gemm_shape> s;
  for (std::size_t d : {256, 512, 1024, 2048}) s.push_back({d, d, d});
  for (std::size_t m : {8, 32, 128, 512}) s.push_back({m, 4096, 4096});
  s.push_back({32, 11008, 4096});
  return s;
}

std::string gemm_name(const char* impl, wtype t, gemm_shape s, int threads) {
  return std::string("BM_gemm/") + impl + "/" + name(t) + "/" + std::to_string(s.m) + "x" + std::to_string(s.n) + "x" +
         std::to_string(s.k) + "/threads:" + std::to_string(threads);
}

peak_type peak_of(wtype t) { return t == wtype::f32 ? peak_type::f32 : t == wtype::bf16 ? peak_type::bf16 : peak_type::i8; }

void set_gemm_counters(benchmark::State& state, gemm_shape s, wtype t, int threads, double sec) {
  const double flop = set_rate(state, "FLOP/s", 2.0 * double(s.m) * double(s.n) * double(s.k), sec);
  set_rate(state, "bytes_per_second", double(s.m * s.k * 4 + s.n * s.k * size_of(t) + s.m * s.n * 4), sec);
  const double peak = measure_peak_flops_fresh(peak_of(t), threads);
  if (peak > 0) state.counters["frac_of_peak"] = flop / peak;
  state.counters["peak"] = benchmark::Counter(peak, benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
}

// A (M x K) in [-1, 1]; the weights are source_weights read as N x K.
const float* activations(std::size_t count) {
  static tstream::aligned_buffer<float> a;
  if (a.size() < count) {
    a = tstream::aligned_buffer<float>(count);
    fill_uniform(a.data(), count, 4242u);
  }
  return a.data();
}

// Whether C(i, j) (read through c_at) matches a double recomputation from
// the inputs as the peer saw them (va, vw convert), for a few elements, to
// `tol` of sum |a w|: catches a wrong layout or transpose.
template <class CAt, class VA, class VW>
bool sample_matches(benchmark::State& state, gemm_shape s, CAt c_at, VA va, VW vw, double tol) {
  const float* a = activations(s.m * s.k);
  const float* w = source_weights(s.n * s.k);
  for (auto [i, j] : {std::pair<std::size_t, std::size_t>{0, 0}, {s.m / 2, s.n - 1}, {s.m - 1, s.n / 3}}) {
    double e = 0, mag = 0;
    for (std::size_t k = 0; k < s.k; ++k) {
      const double x = va(a[i * s.k + k]), y = vw(w[j * s.k + k]);
      e += x * y;
      mag += std::abs(x * y);
    }
    const double got = c_at(i, j);
    if (!(std::abs(got - e) <= tol * mag)) {
      state.SkipWithError(("wrong result: C(" + std::to_string(i) + ", " + std::to_string(j) + ") is " +
                           std::to_string(got) + ", expected " + std::to_string(e))
                              .c_str());
      return false;
    }
  }
  return true;
}

double identity(float v) { return v; }
double bf16_round(float v) { return double(float(tstream::bf16(v))); }
double u8_code(float v) { return double(std::lround(127.5f + 127.5f * v)); }
double s8_code(float v) { return double(std::lround(127.0f * v)); }

// ---- tstream ---------------------------------------------------------------

template <class W>
struct tstream_fixture {
  std::unique_ptr<tstream::gemm_weights<W>> w;
  tstream::aligned_buffer<float> c;
};

template <class W>
void bm_tstream(benchmark::State& state, gemm_shape s, wtype t, int threads, bool prepared, const std::string& key) {
  auto& f = reuse_fixture<tstream_fixture<W>>(key, [&] {
    auto p = std::make_shared<tstream_fixture<W>>();
    p->w = std::make_unique<tstream::gemm_weights<W>>(
        tstream::n_by_k, tstream::matrix_view<const float>(source_weights(s.n * s.k), tstream::index_t(s.n), tstream::index_t(s.k)));
    p->c = tstream::aligned_buffer<float>(s.m * s.n);
    return p;
  });
  pinned_team pt(threads);
  const tstream::matrix_view<const float> A(activations(s.m * s.k), tstream::index_t(s.m), tstream::index_t(s.k));
  const tstream::matrix_view<float> C(f.c.data(), tstream::index_t(s.m), tstream::index_t(s.n));
  const tstream::gemm_activations<W> a_prepared = prepared ? tstream::gemm_activations<W>(pt.team, A)
                                                           : tstream::gemm_activations<W>();
  if (prepared) tstream::gemm(pt.team, a_prepared, *f.w, C);  // warm, and the result checked below
  else tstream::gemm(pt.team, A, *f.w, C);
  const auto c_at = [&](std::size_t i, std::size_t j) { return double(f.c[i * s.n + j]); };
  const bool ok = t == wtype::f32    ? sample_matches(state, s, c_at, identity, identity, 1e-5)
                  : t == wtype::bf16 ? sample_matches(state, s, c_at, identity, identity, 1e-2)
                                     : sample_matches(state, s, c_at, identity, identity, 3e-2);
  if (!ok) return;
  const double sec = prepared ? timed_loop(state, [&] { tstream::gemm(pt.team, a_prepared, *f.w, C); })
                              : timed_loop(state, [&] { tstream::gemm(pt.team, A, *f.w, C); });
  set_gemm_counters(state, s, t, threads, sec);
}

// ---- Eigen -----------------------------------------------------------------

#if defined(TSTREAM_BENCH_HAVE_EIGEN)
struct eigen_fixture {
  tstream::aligned_buffer<float> c;
};
#endif

void bm_eigen(benchmark::State& state, gemm_shape s, wtype t, int threads, const std::string& key) {
#if defined(TSTREAM_BENCH_HAVE_EIGEN)
  using mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using stride = Eigen::OuterStride<>;
  auto& f = reuse_fixture<eigen_fixture>(key, [&] {
    auto p = std::make_shared<eigen_fixture>();
    p->c = tstream::aligned_buffer<float>(s.m * s.n);
    return p;
  });
  Eigen::setNbThreads(1);
  pinned_team pt(threads);
  const float* a = activations(s.m * s.k);
  const float* w = source_weights(s.n * s.k);
  const auto call = [&] {
    pt.team.run([&](int m) {
      const auto [n0, n1] = share(s.n, pt.team.size(), m, 16);
      const Eigen::Index cols = Eigen::Index(n1 - n0), M = Eigen::Index(s.m), K = Eigen::Index(s.k);
      Eigen::Map<const mat> A(a, M, K);
      Eigen::Map<const mat> Wt(w + n0 * s.k, cols, K);
      Eigen::Map<mat, 0, stride> C(f.c.data() + n0, M, cols, stride(Eigen::Index(s.n)));
      C.noalias() = A * Wt.transpose();
    });
  };
  call();
  if (!sample_matches(state, s, [&](std::size_t i, std::size_t j) { return double(f.c[i * s.n + j]); }, identity,
                      identity, 1e-5))
    return;
  const double sec = timed_loop(state, call);
  set_gemm_counters(state, s, t, threads, sec);
#else
  (void)s, (void)t, (void)threads, (void)key;
  state.SkipWithError("built without Eigen");
  for (auto _ : state) {}
#endif
}

// ---- OpenBLAS --------------------------------------------------------------

#if defined(TSTREAM_BENCH_HAVE_OPENBLAS)
struct openblas_fixture {
  tstream::aligned_buffer<float> c;
  tstream::aligned_buffer<tstream::bf16> a16, w16;
};
#endif

void bm_openblas(benchmark::State& state, gemm_shape s, wtype t, int threads, const std::string& key) {
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS)
  auto& f = reuse_fixture<openblas_fixture>(key, [&] {
    auto p = std::make_shared<openblas_fixture>();
    p->c = tstream::aligned_buffer<float>(s.m * s.n);
    if (t == wtype::bf16) {
      p->a16 = tstream::aligned_buffer<tstream::bf16>(s.m * s.k);
      p->w16 = tstream::aligned_buffer<tstream::bf16>(s.n * s.k);
      for (std::size_t i = 0; i < s.m * s.k; ++i) p->a16[i] = tstream::bf16(activations(s.m * s.k)[i]);
      for (std::size_t i = 0; i < s.n * s.k; ++i) p->w16[i] = tstream::bf16(source_weights(s.n * s.k)[i]);
    }
    return p;
  });
  openblas_set_num_threads(threads);
  const blasint M = blasint(s.m), N = blasint(s.n), K = blasint(s.k);
  const auto call = [&] {
    if (t == wtype::f32) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, activations(s.m * s.k), K,
                  source_weights(s.n * s.k), K, 0.0f, f.c.data(), N);
    } else {
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS_SBGEMM)
      cblas_sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, reinterpret_cast<const bfloat16*>(f.a16.data()),
                   K, reinterpret_cast<const bfloat16*>(f.w16.data()), K, 0.0f, f.c.data(), N);
#endif
    }
  };
  call();
  const auto c_at = [&](std::size_t i, std::size_t j) { return double(f.c[i * s.n + j]); };
  const bool ok = t == wtype::f32 ? sample_matches(state, s, c_at, identity, identity, 1e-5)
                                  : sample_matches(state, s, c_at, bf16_round, bf16_round, 1e-5);
  if (!ok) return;
  const double sec = timed_loop(state, call);
  set_gemm_counters(state, s, t, threads, sec);
#else
  (void)s, (void)t, (void)threads, (void)key;
  state.SkipWithError("built without OpenBLAS");
  for (auto _ : state) {}
#endif
}

// ---- oneDNN ----------------------------------------------------------------

#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
struct onednn_fixture {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::matmul prim;
  std::string impl;
  dnnl::memory src, wei, dst;
  std::unordered_map<int, dnnl::memory> args;
};

std::shared_ptr<onednn_fixture> make_onednn(gemm_shape s, wtype t) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  auto f = std::make_shared<onednn_fixture>();
  const dnnl::memory::dim M = dnnl::memory::dim(s.m), K = dnnl::memory::dim(s.k), N = dnnl::memory::dim(s.n);
  const dt sdt = t == wtype::f32 ? dt::f32 : t == wtype::bf16 ? dt::bf16 : dt::u8;
  const dt wdt = t == wtype::f32 ? dt::f32 : t == wtype::bf16 ? dt::bf16 : dt::s8;
  const dnnl::memory::desc src_md({M, K}, sdt, tag::ab), wei_md({K, N}, wdt, tag::any), dst_md({M, N}, dt::f32, tag::ab);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_md, dst_md), f->eng);
  f->prim = dnnl::matmul(pd);
  f->impl = pd.impl_info_str();
  // The user's weights: N x K row-major is K x N in "ba" order.
  tstream::aligned_buffer<std::int8_t> w8;
  dnnl::memory user;
  const float* w = source_weights(s.n * s.k);
  if (t == wtype::i8) {
    w8 = tstream::aligned_buffer<std::int8_t>(s.n * s.k);
    for (std::size_t i = 0; i < s.n * s.k; ++i) w8[i] = std::int8_t(s8_code(w[i]));
    user = dnnl::memory({{K, N}, dt::s8, tag::ba}, f->eng, w8.data());
  } else {
    user = dnnl::memory({{K, N}, dt::f32, tag::ba}, f->eng, const_cast<float*>(w));
  }
  f->wei = dnnl::memory(pd.weights_desc(), f->eng);
  dnnl::reorder(user, f->wei).execute(f->strm, user, f->wei);
  f->src = dnnl::memory(pd.src_desc(), f->eng);
  f->dst = dnnl::memory(pd.dst_desc(), f->eng);
  const float* a = activations(s.m * s.k);
  for (std::size_t i = 0; i < s.m * s.k; ++i) {
    if (t == wtype::f32) static_cast<float*>(f->src.get_data_handle())[i] = a[i];
    else if (t == wtype::bf16) static_cast<tstream::bf16*>(f->src.get_data_handle())[i] = tstream::bf16(a[i]);
    else static_cast<std::uint8_t*>(f->src.get_data_handle())[i] = std::uint8_t(u8_code(a[i]));
  }
  f->strm.wait();
  f->args = {{DNNL_ARG_SRC, f->src}, {DNNL_ARG_WEIGHTS, f->wei}, {DNNL_ARG_DST, f->dst}};
  return f;
}
#endif

void bm_onednn(benchmark::State& state, gemm_shape s, wtype t, int threads, const std::string& key) {
#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
  omp_set_num_threads(threads);
  onednn_fixture* f = nullptr;
  try {
    f = &reuse_fixture<onednn_fixture>(key, [&] { return make_onednn(s, t); });
  } catch (const dnnl::error& e) {
    state.SkipWithError((std::string("oneDNN: ") + e.what()).c_str());
    for (auto _ : state) {}
    return;
  }
  if (f->impl.rfind("ref", 0) == 0) {
    state.SkipWithError(("oneDNN has only its reference implementation here: " + f->impl).c_str());
    for (auto _ : state) {}
    return;
  }
  const auto call = [&] {
    f->prim.execute(f->strm, f->args);
    f->strm.wait();
  };
  call();
  const float* c = static_cast<const float*>(f->dst.get_data_handle());
  const auto c_at = [&](std::size_t i, std::size_t j) { return double(c[i * s.n + j]); };
  const bool ok = t == wtype::f32    ? sample_matches(state, s, c_at, identity, identity, 1e-5)
                  : t == wtype::bf16 ? sample_matches(state, s, c_at, bf16_round, bf16_round, 1e-5)
                                     : sample_matches(state, s, c_at, u8_code, s8_code, 1e-6);
  if (!ok) return;
  const double sec = timed_loop(state, call);
  state.SetLabel(f->impl);
  set_gemm_counters(state, s, t, threads, sec);
#else
  (void)s, (void)t, (void)threads, (void)key;
  state.SkipWithError("built without oneDNN");
  for (auto _ : state) {}
#endif
}

enum class impl { tstream, tstream_prepared, eigen, openblas, onednn };
constexpr const char* name(impl i) {
  return i == impl::tstream            ? "tstream"
         : i == impl::tstream_prepared ? "tstream_prepared"
         : i == impl::eigen            ? "eigen"
         : i == impl::openblas         ? "openblas"
                                       : "onednn";
}

bool supports(impl i, wtype t) {
  switch (i) {
    case impl::tstream: return true;
    case impl::tstream_prepared: return t != wtype::f32;  // fp32 A is packed inside the tiles: nothing to save
    case impl::eigen:
#if defined(TSTREAM_BENCH_HAVE_EIGEN)
      return t == wtype::f32;
#else
      return false;
#endif
    case impl::openblas:
#if defined(TSTREAM_BENCH_HAVE_OPENBLAS_SBGEMM)
      return t == wtype::f32 || t == wtype::bf16;
#elif defined(TSTREAM_BENCH_HAVE_OPENBLAS)
      return t == wtype::f32;
#else
      return false;
#endif
    case impl::onednn:
#if defined(TSTREAM_BENCH_HAVE_ONEDNN)
      return true;
#else
      return false;
#endif
  }
  return false;
}

void run(benchmark::State& state, impl i, gemm_shape s, wtype t, int threads, const std::string& key) {
  settle(key);
  switch (i) {
    case impl::tstream:
    case impl::tstream_prepared: {
      const bool prepared = i == impl::tstream_prepared;
      if (t == wtype::f32) bm_tstream<float>(state, s, t, threads, prepared, key);
      else if (t == wtype::bf16) bm_tstream<tstream::bf16>(state, s, t, threads, prepared, key);
      else bm_tstream<std::int8_t>(state, s, t, threads, prepared, key);
      break;
    }
    case impl::eigen: bm_eigen(state, s, t, threads, key); break;
    case impl::openblas: bm_openblas(state, s, t, threads, key); break;
    case impl::onednn: bm_onednn(state, s, t, threads, key); break;
  }
}

}  // namespace

void register_gemm() {
  for (const gemm_shape s : gemm_shapes())
    for (wtype t : all_wtypes)
      for (int threads : {1, 2})
        for (impl i : {impl::tstream, impl::tstream_prepared, impl::eigen, impl::openblas, impl::onednn}) {
          if (!supports(i, t)) continue;
          const std::string bm = gemm_name(name(i), t, s, threads);
          benchmark::RegisterBenchmark(bm.c_str(), [=](benchmark::State& st) { run(st, i, s, t, threads, bm); })
              ->Unit(benchmark::kMillisecond);
        }
}

}  // namespace tstream_bench
