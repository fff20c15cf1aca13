// tstream's GEMV under the scheme of bench_common.hpp, so its rows line up
// with the peers' (gemv_peers.cpp) in the same run:
//
//   BM_gemv[_cold]/tstream/<wtype>/<N>x<K>/threads:<t>       exact mode
//   BM_gemv[_cold]/tstream_fast/<wtype>/<N>x<K>/threads:<t>  fast mode (bf16, i8):
//       activations rounded to bf16 (vdpbf16ps) or quantized to u8 (vpdpbusd)
//
// The weights are packed once (resident_weights, one share per thread); the
// label says where the plan puts each core's share (L2, L3 or DRAM).
#include <memory>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "tstream/kernels/gemv/gemv.hpp"

namespace tstream_bench {
namespace {

template <class W>
struct tstream_fixture {
  std::vector<std::unique_ptr<tstream::resident_weights<W>>> copies;
  std::vector<float> x, y;
};

template <class W>
void bm_tstream(benchmark::State& state, gemv_shape s, wtype t, int threads, tstream::precision mode, std::size_t copies,
                const std::string& key) {
  auto& f = reuse_fixture<tstream_fixture<W>>(key, [&] {
    auto p = std::make_shared<tstream_fixture<W>>();
    const float* w = source_weights(s.n * s.k);
    for (std::size_t c = 0; c < copies; ++c)
      p->copies.push_back(std::make_unique<tstream::resident_weights<W>>(
          tstream::matrix_view<const float>(w, tstream::index_t(s.n), tstream::index_t(s.k)), threads));
    p->x.resize(s.k);
    fill_uniform(p->x.data(), s.k, 7u);
    p->y.resize(s.n);
    return p;
  });
  pinned_team pt(threads);
  const tstream::gemv_options opt{mode};
  std::size_t c = 0;
  tstream::gemv(pt.team, *f.copies[0], f.x, f.y, tstream::vxm::identity{}, opt);  // warm
  const double sec = timed_loop(state, [&] {
    tstream::gemv(pt.team, *f.copies[c], f.x, f.y, tstream::vxm::identity{}, opt);
    c = c + 1 == f.copies.size() ? 0 : c + 1;
  });
  set_gemv_counters(state, s, t, sec, gemv_reference_bw(s, t, threads, copies));
  std::string label = "share in";
  for (int m = 0; m < f.copies[0]->shares(); ++m) label += std::string(" ") + tstream::to_string(f.copies[0]->share(m).level);
  state.SetLabel(label);
}

template <class W>
void register_type(wtype t) {
  for (const bool cold : {false, true}) {
    for (const auto s : gemv_shapes) {
      const std::size_t copies = cold ? cold_copies(weight_bytes(s, t)) : 1;
      if (copies == 0) continue;
      for (const int threads : gemv_threads) {
        for (const auto mode : {tstream::precision::exact, tstream::precision::fast}) {
          if (mode == tstream::precision::fast && t == wtype::f32) continue;  // same as exact
          const char* impl = mode == tstream::precision::fast ? "tstream_fast" : "tstream";
          const std::string n = gemv_name(cold ? "BM_gemv_cold" : "BM_gemv", impl, t, s, threads);
          gemv_settings(benchmark::RegisterBenchmark(n.c_str(), [=](benchmark::State& st) {
            bm_tstream<W>(st, s, t, threads, mode, copies, n);
          }));
        }
      }
    }
  }
}

}  // namespace

void register_gemv_tstream() {
  register_type<float>(wtype::f32);
  register_type<tstream::bf16>(wtype::bf16);
  register_type<std::int8_t>(wtype::i8);
}

}  // namespace tstream_bench
