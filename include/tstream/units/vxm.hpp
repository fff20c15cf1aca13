// VXM: the vector unit. Lane-wise stages applied to vectors in registers, so
// a chain like bias + SiLU costs no extra pass over memory.
//
// Each stage is a small callable object: stage(v, first) -> v, and the same
// one register at a time, stage.superlane(x, first, j) (stream.hpp). Scalars
// are broadcast; a stage taking a source (add(bias), mul(up)) reads the
// elements of it that line up with v's lanes. NaN propagates (relu(NaN),
// silu(NaN) and gelu(NaN) are NaN); the infinities go to the functions'
// limits: relu(-inf) = 0, silu(+inf) = +inf, silu(-inf) = gelu(-inf) = -0,
// gelu(+inf) = +inf.
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <limits>
#include <type_traits>
#include <utility>

#include "tstream/core/math.hpp"
#include "tstream/core/stream.hpp"
#include "tstream/core/view.hpp"

namespace tstream::vxm {

namespace detail {
// A stage's vec form from its superlane form (stream.hpp): the same
// function, superlane by superlane, so both forms give the same bits.
template <class Stage, class V>
[[nodiscard]] TSTREAM_ALWAYS_INLINE V by_superlane(const Stage& st, const V& v, std::size_t first) noexcept {
  return V::generate([&](auto j) { return st.superlane(v[j], first, j); });
}

// x sigmoid(z) = x / (1 + e^-z) for one register, z given as -z. Where e^-z
// overflows (-z above about 88.7: silu where x < -88.7, gelu where x is
// below about -10; the true value there is below 1e-36 in magnitude, and
// x is negative) the quotient is x / inf = -0; x = -inf is first raised to
// the lowest finite value so that it gives -0 too rather than -inf / inf =
// NaN. One maxps where a select on 1 + e^-z = inf took two more
// instructions: silu over 64 Ki floats in L2, 39 -> 43 GB/s on one Zen 4
// core.
template <class B>
[[nodiscard]] inline B times_sigmoid(const B& x, const B& minus_z) noexcept {
  using T = typename B::value_type;
  B e;
  if constexpr (std::is_same_v<T, float>) e = tstream::exp(minus_z);  // explicit FMAs: the same bits under any -ffp-contract
  else e = xsimd::exp(minus_z);
  return arch::max_keep_nan(B(std::numeric_limits<T>::lowest()), x) / (B(T(1)) + e);
}
}  // namespace detail

/// v * a.
template <class T>
struct scale {
  T a;
  template <class B>
  [[nodiscard]] B superlane(const B& x, std::size_t, std::size_t) const noexcept {
    return x * B(static_cast<typename B::value_type>(a));
  }
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t first) const noexcept { return detail::by_superlane(*this, v, first); }
};
template <class T> scale(T) -> scale<T>;

/// v + b for a scalar b.
template <class T>
struct add_scalar {
  T b;
  template <class B>
  [[nodiscard]] B superlane(const B& x, std::size_t, std::size_t) const noexcept {
    return x + B(static_cast<typename B::value_type>(b));
  }
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t first) const noexcept { return detail::by_superlane(*this, v, first); }
};

/// v op (the matching chunk of another stream): add(bias), mul(up). Only
/// for vectors of the other stream's own type, so streams of different lane
/// counts or element types do not compose (a compile error at `|` or at the
/// kernel taking the epilogue).
template <source Src, class Op>
struct stream_op {
  Src other;
  template <class V>
    requires std::same_as<V, typename Src::vec_type>
  [[nodiscard]] V operator()(const V& v, std::size_t first) const noexcept {
    return Op{}(v, other.at(first));
  }
  /// The same for superlane j, where the other stream has superlane access.
  [[nodiscard]] typename Src::vec_type::superlane superlane(const typename Src::vec_type::superlane& x, std::size_t first,
                                                            std::size_t j) const noexcept
    requires superlane_source<Src>
  {
    return Op{}(x, other.superlane(first, j));
  }
  template <class F>
  void for_each_read(F& f) const {
    tstream::for_each_read(other, f);
  }
};

/// v + (the matching chunk of another stream), e.g. a bias.
template <source Src>
using add_stream = stream_op<Src, std::plus<>>;
/// v * (the matching chunk of another stream), e.g. SwiGLU's up projection.
template <source Src>
using mul_stream = stream_op<Src, std::multiplies<>>;

/// v + b: b is a scalar or a source stream.
template <class B>
[[nodiscard]] auto add(B b) {
  if constexpr (source<B>) return add_stream<B>{std::move(b)};
  else return add_scalar<B>{b};
}

/// v * b: b is a scalar (the same as scale(b)) or a source stream, e.g.
/// SwiGLU: mem::read(gate) | vxm::silu{} | vxm::mul(mem::read(up)).
template <class B>
[[nodiscard]] auto mul(B b) {
  if constexpr (source<B>) return mul_stream<B>{std::move(b)};
  else return scale<B>{b};
}

/// max(v, 0).
struct relu {
  template <class B>
  [[nodiscard]] B superlane(const B& x, std::size_t, std::size_t) const noexcept {
    using T = typename B::value_type;
    return xsimd::select(x < B(T(0)), B(T(0)), x);
  }
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t first) const noexcept { return detail::by_superlane(*this, v, first); }
};

/// SiLU (swish): v / (1 + exp(-v)).
struct silu {
  template <class B>
  [[nodiscard]] B superlane(const B& x, std::size_t, std::size_t) const noexcept { return detail::times_sigmoid(x, -x); }
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t first) const noexcept { return detail::by_superlane(*this, v, first); }
};

/// GELU, tanh approximation: 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))),
/// computed as v sigmoid(2 u) with u the tanh's argument (the same function,
/// since 1 + tanh(u) = 2 sigmoid(2 u)): no tanh, and no 1 + tanh(u) that
/// cancels for negative v.
struct gelu {
  template <class B>
  [[nodiscard]] B superlane(const B& x, std::size_t, std::size_t) const noexcept {
    using T = typename B::value_type;
    const B minus_2u = B(T(-2 * 0.7978845608028654)) * arch::fma(B(T(0.044715)) * x, x * x, x);
    return detail::times_sigmoid(x, minus_2u);
  }
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t first) const noexcept { return detail::by_superlane(*this, v, first); }
};

/// The identity stage: what an epilogue is when there is none.
struct identity {
  /// x itself (the superlane form, stream.hpp).
  template <class B>
  [[nodiscard]] B superlane(const B& x, std::size_t, std::size_t) const noexcept { return x; }
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t) const noexcept { return v; }
};

/// Two stages applied in order, as one stage: then(a, b)(v) = b(a(v)).
template <class A, class B>
struct chain {
  A a;
  B b;
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t first) const noexcept { return b(a(v, first), first); }
  /// b(a(x)) for superlane j, where both stages have the superlane form.
  template <class X>
  [[nodiscard]] X superlane(const X& x, std::size_t first, std::size_t j) const noexcept
    requires requires { a.superlane(x, first, j); b.superlane(x, first, j); }
  {
    return b.superlane(a.superlane(x, first, j), first, j);
  }
  template <class F>
  void for_each_read(F& f) const {
    tstream::for_each_read(a, f);
    tstream::for_each_read(b, f);
  }
};
template <class A, class B>
[[nodiscard]] auto then(A a, B b) { return chain<A, B>{std::move(a), std::move(b)}; }

}  // namespace tstream::vxm

namespace tstream::detail {

/// Checks the arrays an epilogue stage streams (for_each_read) against the
/// output it runs along: each must hold n elements, indexed like the output,
/// and none may overlap the out_bytes at out (other members write there while
/// the stage reads). Throws tstream::error naming fn and the output.
template <class Stage>
void check_epilogue_reads(const Stage& stage, std::size_t n, const void* out, std::size_t out_bytes, const char* fn,
                          const char* out_name) {
  tstream::for_each_read(stage, [&](const void* data, std::size_t bytes, std::size_t size) {
    require(size == n, fn, "an array the epilogue streams has ", size, " elements, ", out_name, " has N = ", n);
    require(data != nullptr || size == 0, fn, "an array the epilogue streams is null");
    require(!overlaps(data, bytes, out, out_bytes), fn, "an array the epilogue streams overlaps ", out_name);
  });
}

}  // namespace tstream::detail
