// Decode attention: one query token against a KV cache of L positions.
//
//   BM_attn_decode/<impl>/<kvtype>/h<Hq>_kv<Hkv>_d<D>_L<L>/threads:<t>
//
// impl tstream: decode_plan over a kv_cache (f32, bf16, int8 KV), made once,
// exact mode; tstream_fast: the same with precision::fast (bf16, int8 KV).
// impl eigen: the straightforward reference, per query head: scores = K q,
// softmax, out = V^T p, with K and V row-major per KV head (f32); with 2
// threads the query heads are split in two halves on a pinned team.
// Counters: bytes_per_second (K and V bytes per call, int8 scales
// included), FLOP/s (4 Hq D L), tokens_per_second (calls per second),
// frac_of_bw against the read bandwidth at the KV footprint, measured right
// after each repetition's timing loop once its threads are gone (A B A B).
#include <Eigen/Core>
#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "tstream/kernels/attention/decode.hpp"

namespace tstream_bench {
namespace {

struct attn_shape {
  int hq, hkv, d, L;
};
constexpr std::array<std::array<int, 3>, 2> heads{{{32, 8, 128}, {32, 32, 128}}};
constexpr std::array<int, 3> lengths{512, 4096, 16384};

std::string attn_name(const char* impl, wtype t, attn_shape s, int threads) {
  return std::string("BM_attn_decode/") + impl + "/" + name(t) + "/h" + std::to_string(s.hq) + "_kv" +
         std::to_string(s.hkv) + "_d" + std::to_string(s.d) + "_L" + std::to_string(s.L) + "/threads:" +
         std::to_string(threads);
}

// K and V bytes one call reads (int8: plus a K scale, a V scale and a K code
// sum per position and KV head).
std::size_t kv_bytes(attn_shape s, wtype t) {
  const std::size_t per_pos = 2 * std::size_t(s.d) * size_of(t) + (t == wtype::i8 ? 12 : 0);
  return std::size_t(s.hkv) * std::size_t(s.L) * per_pos;
}

// Call with no team of the benchmark's alive: a pool's spinning workers
// would halve the reference.
void set_attn_counters(benchmark::State& state, attn_shape s, wtype t, double sec, int threads) {
  const double bps = set_rate(state, "bytes_per_second", double(kv_bytes(s, t)), sec);
  set_rate(state, "FLOP/s", 4.0 * s.hq * s.d * double(s.L), sec);
  set_rate(state, "tokens_per_second", 1.0, sec);
  const double ref = measure_read_bw_fresh(kv_bytes(s, t), threads);
  if (ref > 0) state.counters["frac_of_bw"] = bps / ref;
  state.counters["read_bw"] = benchmark::Counter(ref, benchmark::Counter::kDefaults, benchmark::Counter::kIs1000);
}

template <class T>
struct tstream_attn {
  tstream::kv_cache<T> cache;
  std::unique_ptr<tstream::decode_plan<T>> plan;
  std::vector<float> q, out;
  tstream_attn(attn_shape s, tstream::precision mode) : cache(s.hkv, s.d, s.L) {
    std::vector<float> k(std::size_t(s.hkv * s.d)), v(k.size());
    for (int t = 0; t < s.L; ++t) {
      fill_uniform(k.data(), k.size(), 2u * unsigned(t) + 1u);
      fill_uniform(v.data(), v.size(), 2u * unsigned(t) + 2u);
      cache.append(k, v);
    }
    plan = std::make_unique<tstream::decode_plan<T>>(cache, s.hq, tstream::decode_options{.mode = mode});
    q.resize(std::size_t(s.hq * s.d));
    fill_uniform(q.data(), q.size(), 99u);
    out.resize(q.size());
  }
};

template <class T>
void bm_tstream(benchmark::State& state, attn_shape s, wtype t, tstream::precision mode, int threads,
                const std::string& key) {
  auto& f = reuse_fixture<tstream_attn<T>>(key, [&] { return std::make_shared<tstream_attn<T>>(s, mode); });
  double sec = 0;
  {
    pinned_team pt(threads);
    f.plan->run(pt.team, f.q, f.out);
    sec = timed_loop(state, [&] { f.plan->run(pt.team, f.q, f.out); });
  }
  set_attn_counters(state, s, t, sec, threads);
}

struct eigen_attn {
  std::vector<float> k, v, q, out;  // K, V: [kv head][L][D]
  explicit eigen_attn(attn_shape s) {
    k.resize(std::size_t(s.hkv) * std::size_t(s.L) * std::size_t(s.d));
    v.resize(k.size());
    fill_uniform(k.data(), k.size(), 3u);
    fill_uniform(v.data(), v.size(), 4u);
    q.resize(std::size_t(s.hq * s.d));
    fill_uniform(q.data(), q.size(), 99u);
    out.resize(q.size());
  }
};

void eigen_heads(const eigen_attn& f, attn_shape s, int h0, int h1, float* out) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const float scale = 1.f / std::sqrt(float(s.d));
  Eigen::VectorXf scores(s.L);
  for (int h = h0; h < h1; ++h) {
    const int kv = h / (s.hq / s.hkv);
    const std::size_t off = std::size_t(kv) * std::size_t(s.L) * std::size_t(s.d);
    Eigen::Map<const Mat> K(f.k.data() + off, s.L, s.d), V(f.v.data() + off, s.L, s.d);
    Eigen::Map<const Eigen::VectorXf> q(f.q.data() + std::size_t(h * s.d), s.d);
    scores.noalias() = K * q;
    scores *= scale;
    scores = (scores.array() - scores.maxCoeff()).exp();
    scores /= scores.sum();
    Eigen::Map<Eigen::VectorXf>(out + std::size_t(h * s.d), s.d).noalias() = V.transpose() * scores;
  }
}

void bm_eigen(benchmark::State& state, attn_shape s, int threads, const std::string& key) {
  auto& f = reuse_fixture<eigen_attn>(key, [&] { return std::make_shared<eigen_attn>(s); });
  double sec = 0;
  {
    pinned_team pt(threads);
    auto call = [&] {
      pt.team.run([&](int m) {
        const auto [b, e] = share(std::size_t(s.hq), threads, m);
        eigen_heads(f, s, int(b), int(e), f.out.data());
      });
    };
    call();
    sec = timed_loop(state, call);
  }
  set_attn_counters(state, s, wtype::f32, sec, threads);
}

}  // namespace

void register_attention() {
  for (const auto& h : heads) {
    for (const int L : lengths) {
      const attn_shape s{h[0], h[1], h[2], L};
      for (const int threads : gemv_threads) {
        const auto reg = [&](const std::string& n, auto fn) {
          benchmark::RegisterBenchmark(n.c_str(), fn)->Unit(benchmark::kMicrosecond);
        };
        using tstream::precision;
        const std::string n = attn_name("tstream", wtype::f32, s, threads);
        reg(n, [=](benchmark::State& st) { bm_tstream<float>(st, s, wtype::f32, precision::exact, threads, n); });
        for (const precision mode : {precision::exact, precision::fast}) {
          const char* impl = mode == precision::exact ? "tstream" : "tstream_fast";
          const std::string nb = attn_name(impl, wtype::bf16, s, threads);
          reg(nb, [=](benchmark::State& st) { bm_tstream<tstream::bf16>(st, s, wtype::bf16, mode, threads, nb); });
          const std::string ni = attn_name(impl, wtype::i8, s, threads);
          reg(ni, [=](benchmark::State& st) { bm_tstream<std::int8_t>(st, s, wtype::i8, mode, threads, ni); });
        }
        const std::string ne = attn_name("eigen", wtype::f32, s, threads);
        reg(ne, [=](benchmark::State& st) { bm_eigen(st, s, threads, ne); });
      }
    }
  }
}

}  // namespace tstream_bench
