// The README's usage snippet, compiled and run in CI so it cannot rot:
// a GEMV on resident int8 weights with a fused epilogue, a GEMM on packed
// bf16 weights with an epilogue and a residual, then one step of decode
// attention on a bf16 KV cache.
#include <cmath>
#include <cstdio>
#include <vector>

#include <tstream/tstream.hpp>

int main() {
  const tstream::index_t N = 1000, K = 512;
  std::vector<float> w(static_cast<std::size_t>(N * K)), x(static_cast<std::size_t>(K)), y(static_cast<std::size_t>(N));
  std::vector<float> bias(static_cast<std::size_t>(N), 0.1f);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.001f * float(i));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.01f * float(i));

  tstream::thread_team team(2);                          // persistent, pinned workers
  // Pack W (N x K, row-major fp32) once: int8 quantizes per row, bf16 rounds.
  tstream::resident_weights<std::int8_t> W(tstream::matrix_view<const float>(w.data(), N, K), team.size());

  tstream::gemv(team, W, x, y);                          // y = W x
  tstream::gemv(team, W, x, y, bias);                    // y = W x + bias
  namespace vxm = tstream::vxm;                          // a fused epilogue: y = silu(W x + bias)
  tstream::gemv(team, W, x, y, vxm::then(vxm::add(tstream::mem::read(bias)), vxm::silu{}));
  tstream::gemv(team, W, x, y, vxm::identity{}, {tstream::precision::fast});  // VNNI u8 x s8
  std::printf("gemv      : %lld x %lld int8, y[0] = %.4f, share 0 lives in %s\n", (long long)N, (long long)K, y[0],
              tstream::to_string(W.share(0).level));

  // GEMM: C (M x N) = A (M x K) B, B packed once (from K x N, or N x K with the tag).
  const tstream::index_t M = 7;
  std::vector<float> a(static_cast<std::size_t>(M * K), 0.02f), c(static_cast<std::size_t>(M * N));
  std::vector<float> r(static_cast<std::size_t>(M * N), 1.f);
  const tstream::matrix_view<const float> A(a.data(), M, K), R(r.data(), M, N);
  const tstream::matrix_view<float> C(c.data(), M, N);
  tstream::gemm_weights<tstream::bf16> B(tstream::n_by_k, tstream::matrix_view<const float>(w.data(), N, K));
  tstream::gemm(team, tstream::matrix_view<const float>(a.data(), M, K), B, tstream::matrix_view<float>(c.data(), M, N));
  tstream::gemm(team, A, B, C, vxm::then(vxm::add(tstream::mem::read(bias)), vxm::silu{}),
                {.alpha = 1.f, .beta = 0.f, .residual = R});  // C = silu(A B + bias) + R
  tstream::gemm_activations<tstream::bf16> Ap(team, A);  // A rounded and packed once, for GEMMs that share it
  std::vector<float> c2(c.size());
  tstream::gemm(team, Ap, B, tstream::matrix_view<float>(c2.data(), M, N));  // same bits as gemm(team, A, B, ...)
  std::printf("gemm      : %lld x %lld x %lld bf16, silu(A B + bias) + R at (0, 0) = %.4f, A B from A prepared once = %.4f\n", (long long)M,
              (long long)N, (long long)K, c[0], c2[0]);

  // Decode attention: 32 query heads over 8 KV heads of 128, room for 4096 positions.
  tstream::kv_cache<tstream::bf16> cache(8, 128, 4096);
  std::vector<float> k_token(8 * 128), v_token(8 * 128), q(32 * 128, 0.05f), out(32 * 128);
  for (int t = 0; t < 100; ++t) {                        // per generated token
    for (std::size_t i = 0; i < k_token.size(); ++i) {
      k_token[i] = std::sin(float(t + 1) * 0.1f * float(i % 7));
      v_token[i] = std::cos(float(t) * 0.05f + float(i % 5));
    }
    cache.append(k_token, v_token);
  }
  tstream::decode_plan<tstream::bf16> plan(cache, 32);   // made once
  plan.run(team, q, out);                                // every token: no allocation
  std::printf("attention : L = %lld, out[0] = %.4f, %.1f KiB of K/V read\n", (long long)cache.size(), out[0],
              double(plan.bytes()) / 1024);
  return std::isfinite(y[0]) && std::isfinite(c[0]) && std::isfinite(c2[0]) && std::isfinite(out[0]) ? 0 : 1;
}
