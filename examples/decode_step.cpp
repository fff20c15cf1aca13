// One transformer layer generating tokens, batch 1: the workload tstream is
// for. Every weight matrix is packed once into resident bf16 weights (each
// core's share stays in its caches where it fits), the KV cache holds the
// context in the layout decode attention streams, and each token is
//
//   h = x + Wo attention(Wqkv rmsnorm(x))          GEMV, KV append, decode attention, GEMV + residual
//   x = h + Wdown (silu(g) * u), [g; u] = Wgu rmsnorm(h)   GEMV, a VXM stream, GEMV + residual
//
// with no allocation per token. (Positional rotation and the norms' learned
// gains are left out: they are a few lines of glue each, not kernels.)
// Prints tokens/s and the bytes each token reads. Usage: decode_step [tokens]
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include <tstream/tstream.hpp>

namespace {

using tstream::index_t;

// Deterministic weights in [-scale, scale).
std::vector<float> random_matrix(index_t rows, index_t cols, float scale, std::uint32_t seed) {
  std::vector<float> m(static_cast<std::size_t>(rows * cols));
  for (float& v : m) {
    seed = seed * 1664525u + 1013904223u;
    v = scale * (float(seed >> 8) / float(1u << 23) - 1.f);
  }
  return m;
}

tstream::resident_weights<tstream::bf16> pack(index_t rows, index_t cols, std::uint32_t seed, int shares) {
  const std::vector<float> w = random_matrix(rows, cols, 1.f / std::sqrt(float(cols)), seed);
  return tstream::resident_weights<tstream::bf16>(tstream::matrix_view<const float>(w.data(), rows, cols), shares);
}

void rms_norm(std::span<const float> x, std::span<float> out) {
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const float inv = float(1.0 / std::sqrt(ss / double(x.size()) + 1e-6));
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] * inv;
}

}  // namespace

int main(int argc, char** argv) {
  // A small Llama-like layer: 8 query heads over 2 KV heads of 128.
  const index_t d = 1024, heads = 8, kv_heads = 2, head_dim = 128, ffn = 2816, context = 4096, prompt = 1024;
  const int warm = 8;

  // Tokens to time (default 128; CI's sanitizer builds pass a few): as many
  // as the KV cache has room for after the prompt and the warm-up.
  const long max_tokens = long(context - prompt - warm);
  long tokens = 128;
  if (argc > 1) {
    char* end = nullptr;
    tokens = std::strtol(argv[1], &end, 10);
    if (argc > 2 || end == argv[1] || *end != '\0' || tokens < 1 || tokens > max_tokens) {
      std::fprintf(stderr, "usage: decode_step [tokens], tokens in [1, %ld]\n", max_tokens);
      return 2;
    }
  }
  const index_t q_dim = heads * head_dim, kv_dim = kv_heads * head_dim;

  tstream::thread_team team(2);
  const int shares = team.size();
  const auto wqkv = pack(q_dim + 2 * kv_dim, d, 1, shares);  // rows: q, then k, then v
  const auto wo = pack(d, q_dim, 2, shares);
  const auto wgu = pack(2 * ffn, d, 3, shares);              // rows: gate, then up
  const auto wdown = pack(d, ffn, 4, shares);

  // The prompt's keys and values, appended at once (a prefill would compute them).
  tstream::kv_cache<tstream::bf16> cache(kv_heads, head_dim, context);
  const std::vector<float> k0 = random_matrix(prompt, kv_dim, 1.f, 5), v0 = random_matrix(prompt, kv_dim, 1.f, 6);
  cache.append(tstream::matrix_view<const float>(k0.data(), prompt, kv_dim),
               tstream::matrix_view<const float>(v0.data(), prompt, kv_dim));
  tstream::decode_plan<tstream::bf16> attention(cache, heads);  // made once, valid up to the capacity

  // Every buffer of the token loop, allocated once.
  const auto n = [](index_t count) { return std::vector<float>(static_cast<std::size_t>(count)); };
  std::vector<float> x = random_matrix(1, d, 1.f, 7), h = n(d), xn = n(d), qkv = n(q_dim + 2 * kv_dim), attn = n(q_dim),
                     gu = n(2 * ffn), act = n(ffn);
  const std::span<const float> q(qkv.data(), std::size_t(q_dim)), k(qkv.data() + q_dim, std::size_t(kv_dim)),
      v(qkv.data() + q_dim + kv_dim, std::size_t(kv_dim));
  const std::span<const float> gate(gu.data(), std::size_t(ffn)), up(gu.data() + ffn, std::size_t(ffn));
  namespace vxm = tstream::vxm;

  // One token of the layer; the first few warm the caches and the team.
  std::size_t bytes = 0;
  const auto step = [&] {
    rms_norm(x, xn);
    tstream::gemv(team, wqkv, xn, qkv);                                   // q, k, v of the new token
    cache.append(k, v);
    attention.run(team, q, attn);                                         // over every cached position
    bytes += attention.bytes();
    tstream::gemv(team, wo, attn, h, vxm::add(tstream::mem::read(std::span<const float>(x))));  // h = x + Wo attn
    rms_norm(h, xn);
    tstream::gemv(team, wgu, xn, gu);
    (tstream::mem::read(gate) | vxm::silu{} | vxm::mul(tstream::mem::read(up)) | tstream::mem::write(act)).run();  // SwiGLU
    tstream::gemv(team, wdown, act, x, vxm::add(tstream::mem::read(std::span<const float>(h))));  // x = h + Wdown act
  };
  for (int t = 0; t < warm; ++t) step();
  bytes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (long t = 0; t < tokens; ++t) step();
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::size_t weight_bytes = wqkv.bytes() + wo.bytes() + wgu.bytes() + wdown.bytes();
  bytes += std::size_t(tokens) * weight_bytes;

  std::printf("layer     : d = %lld, %lld/%lld heads of %lld, ffn %lld, bf16 weights (%.1f MiB), bf16 KV\n",
              (long long)d, (long long)heads, (long long)kv_heads, (long long)head_dim, (long long)ffn,
              double(weight_bytes) / (1 << 20));
  std::printf("weights   : Wgu share 0 lives in %s, Wdown share 0 in %s\n", tstream::to_string(wgu.share(0).level),
              tstream::to_string(wdown.share(0).level));
  std::printf("decode    : %ld tokens from L = %lld to %lld in %.2f ms: %.0f tokens/s, %.1f GB/s of weights and K/V\n",
              tokens, (long long)(cache.size() - tokens), (long long)cache.size(), sec * 1e3, tokens / sec,
              double(bytes) / sec / 1e9);
  for (float value : x)
    if (!std::isfinite(value)) return 1;
  return 0;
}
