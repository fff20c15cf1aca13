// libFuzzer target: the stream pipeline mem::read | VXM stages | mem::write.
// From the input: the size (0..2000), the lane count (320, 7 or 33: partial
// superlanes), a chain of up to four stages (scale, add scalar, add a second
// stream, possibly shorter, relu, silu, gelu, identity), the sink size
// (sometimes too small) and every value. Checks, trapping on failure:
//   * a too-small sink is tstream::pipeline::run's error and nothing is written;
//   * nothing is written past the sink (guard zone);
//   * the fused chain equals the stages run one pipeline at a time, bitwise
//     (fusing never changes the arithmetic);
//   * each stage against a scalar reference: scale, add, relu bitwise; silu
//     and gelu within the documented tolerance; NaN and infinities as
//     units/vxm.hpp documents.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_input.hpp"
#include "tstream/core/stream.hpp"
#include "tstream/units/mem.hpp"
#include "tstream/units/vxm.hpp"

namespace mem = tstream::mem;
namespace vxm = tstream::vxm;

namespace {

constexpr float guard = -777.f;

struct stage_spec {
  int kind;   // 0 scale, 1 add scalar, 2 add stream, 3 relu, 4 silu, 5 gelu, 6 identity
  float a;    // the scalar
  std::vector<float> other;  // kind 2
};

bool same(float a, float b) {  // equal bits, or both NaN
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;
}

// Applies one stage as its own pipeline: in -> out (same size).
template <std::size_t L>
void apply(const stage_spec& s, const std::vector<float>& in, std::vector<float>& out) {
  auto src = mem::read<L>(in);
  auto dst = mem::write<L>(out);
  switch (s.kind) {
    case 0: (src | vxm::scale<float>{s.a} | dst).run(); break;
    case 1: (src | vxm::add(s.a) | dst).run(); break;
    case 2: (src | vxm::add(mem::read<L>(s.other)) | dst).run(); break;
    case 3: (src | vxm::relu{} | dst).run(); break;
    case 4: (src | vxm::silu{} | dst).run(); break;
    case 5: (src | vxm::gelu{} | dst).run(); break;
    default: (src | vxm::identity{} | dst).run(); break;
  }
}

// The scalar meaning of one stage on one element, checked.
void check_stage(const stage_spec& s, std::size_t i, float x, float y) {
  switch (s.kind) {
    case 0: FZ_CHECK(same(y, x * s.a), "scale: not x * a"); return;
    case 1: FZ_CHECK(same(y, x + s.a), "add: not x + b"); return;
    case 2: FZ_CHECK(same(y, x + (i < s.other.size() ? s.other[i] : 0.f)), "add(stream): not x + b[i] (0 past b's end)"); return;
    case 3: FZ_CHECK(same(y, x < 0.f ? 0.f : x), "relu: not max(x, 0) with NaN kept"); return;
    case 6: FZ_CHECK(same(y, x), "identity changed a value"); return;
    default: break;
  }
  if (std::isnan(x)) {
    FZ_CHECK(std::isnan(y), "silu/gelu(NaN) must be NaN");
    return;
  }
  const double xd = x;
  if (s.kind == 4) {  // silu: x / (1 + e^-x); silu(+inf) = +inf, silu(-inf) = -0
    if (std::isinf(x)) {
      FZ_CHECK(x > 0 ? y == x : (y == 0.f && std::signbit(y)), "silu at an infinity: not its limit");
      return;
    }
    const double ref = xd / (1.0 + std::exp(-xd));
    FZ_CHECK(std::fabs(double(y) - ref) <= 4e-6 * std::fabs(ref) + 1e-36, "silu outside 4e-6 relative + 1e-36");
    return;
  }
  // gelu, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  if (std::isinf(x)) {
    FZ_CHECK(x > 0 ? y == x : y == 0.f, "gelu at an infinity: not its limit");
    return;
  }
  const double inner = 0.7978845608028654 * (xd + 0.044715 * xd * xd * xd);
  const double ref = 0.5 * xd * (1.0 + std::tanh(inner));
  // fp32 evaluation: (1 + tanh) loses about 2^-23 absolutely, times 0.5 |x|.
  FZ_CHECK(std::fabs(double(y) - ref) <= 4e-6 * std::fabs(ref) + std::ldexp(std::fabs(xd), -21) + 1e-37,
           "gelu outside 4e-6 relative + 2^-21 |x|");
}

template <std::size_t L>
void run(fz::input& in, std::size_t n) {
  const float mag = in.magnitude();
  std::vector<float> x(n);
  for (auto& v : x) v = in.value(mag);
  const int nstages = in.range(0, 4);
  std::vector<stage_spec> st(static_cast<std::size_t>(nstages));
  for (auto& s : st) {
    s.kind = in.range(0, 6);
    s.a = in.value(in.magnitude());
    if (s.kind == 2) {
      s.other.resize(std::size_t(in.range(0, int(n) + 8)));  // may be shorter than the source
      const float m2 = in.magnitude();
      for (auto& v : s.other) v = in.value(m2);
    }
  }
  // Sink: exactly n, larger, or too small.
  const int sink_kind = in.range(0, 3);
  const std::size_t sink = sink_kind == 0 && n > 0 ? std::size_t(in.range(0, int(n) - 1)) : n + (sink_kind == 1 ? 5 : 0);
  const std::size_t guards = 40;
  std::vector<float> ybuf(sink + guards, guard);
  const std::span<float> y(ybuf.data(), sink);

  // The fused chain (a chain of up to 4 stages, built at run time from the
  // per-stage pipelines would not be fused; so build it statically by count).
  auto stage_fn = [&](const stage_spec& s) {
    return [&s](const tstream::vec<float, L>& v, std::size_t first) {
      switch (s.kind) {
        case 0: return vxm::scale<float>{s.a}(v, first);
        case 1: return vxm::add(s.a)(v, first);
        case 2: return vxm::add(mem::read<L>(s.other))(v, first);
        case 3: return vxm::relu{}(v, first);
        case 4: return vxm::silu{}(v, first);
        case 5: return vxm::gelu{}(v, first);
        default: return vxm::identity{}(v, first);
      }
    };
  };
  const stage_spec id{6, 0.f, {}};
  const stage_spec& s0 = nstages > 0 ? st[0] : id;
  const stage_spec& s1 = nstages > 1 ? st[1] : id;
  const stage_spec& s2 = nstages > 2 ? st[2] : id;
  const stage_spec& s3 = nstages > 3 ? st[3] : id;
  auto chain = mem::read<L>(x) | stage_fn(s0) | stage_fn(s1) | stage_fn(s2) | stage_fn(s3) | mem::write<L>(y);
  std::string err;
  try {
    chain.run();
  } catch (const tstream::error& e) {
    err = e.what();
  }
  if (sink < n) {
    FZ_CHECK(err == "tstream::pipeline::run: the sink holds " + std::to_string(sink) + " elements, the source streams " + std::to_string(n),
             "small sink: wrong or missing error");
    for (float v : ybuf) FZ_CHECK(v == guard, "small sink: something was written");
    return;
  }
  FZ_CHECK(err.empty(), "pipeline::run threw on a large enough sink");
  for (std::size_t i = n; i < ybuf.size(); ++i) FZ_CHECK(ybuf[i] == guard, "pipeline wrote past the source's size");

  // Unfused, stage by stage, with per-stage checks.
  std::vector<float> cur = x, next(n);
  for (const auto& s : st) {
    apply<L>(s, cur, next);
    for (std::size_t i = 0; i < n; ++i) check_stage(s, i, cur[i], next[i]);
    cur.swap(next);
  }
  for (std::size_t i = 0; i < n; ++i) FZ_CHECK(same(ybuf[i], cur[i]), "fused chain differs from the stages run one by one");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fz::input in(data, size);
  const int lanes = in.range(0, 2);
  const std::size_t n = std::size_t(in.range(0, 2000));
  if (lanes == 0) run<320>(in, n);
  else if (lanes == 1) run<7>(in, n);
  else run<33>(in, n);
  return 0;
}
