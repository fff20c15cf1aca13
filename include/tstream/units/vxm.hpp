// VXM: the vector unit. Lane-wise stages applied to vectors in registers, so
// a chain like bias + SiLU costs no extra pass over memory.
//
// Each stage is a small callable object: stage(v, first) -> v. Scalars are
// broadcast; a stage taking a source (add(bias)) reads the elements of it
// that line up with v's lanes. NaN propagates (relu(NaN), silu(NaN) and gelu(NaN) are NaN); the
// infinities go to the functions' limits: relu(-inf) = 0, silu(+inf) = +inf,
// silu(-inf) = gelu(-inf) = -0, gelu(+inf) = +inf.
#pragma once

#include <cstddef>
#include <limits>
#include <utility>

#include "tstream/core/stream.hpp"
#include "tstream/core/view.hpp"

namespace tstream::vxm {

/// v * a.
template <class T>
struct scale {
  T a;
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t) const noexcept { return v * static_cast<typename V::value_type>(a); }
};
template <class T> scale(T) -> scale<T>;

/// v + b for a scalar b.
template <class T>
struct add_scalar {
  T b;
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t) const noexcept { return v + static_cast<typename V::value_type>(b); }
};

/// v + (the matching chunk of another stream), e.g. a bias.
template <source Src>
struct add_stream {
  Src other;
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t first) const noexcept {
    static_assert(std::is_same_v<V, typename Src::vec_type>, "tstream::vxm::add: both streams must have the same vec type");
    return v + other.at(first);
  }
  template <class F>
  void for_each_read(F& f) const {
    tstream::for_each_read(other, f);
  }
};

/// v + b: b is a scalar or a source stream.
template <class B>
[[nodiscard]] auto add(B b) {
  if constexpr (source<B>) return add_stream<B>{std::move(b)};
  else return add_scalar<B>{b};
}

/// max(v, 0).
struct relu {
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t) const noexcept {
    using T = typename V::value_type;
    return map(v, [](auto x) { return xsimd::select(x < decltype(x)(T(0)), decltype(x)(T(0)), x); });
  }
};

/// SiLU (swish): v / (1 + exp(-v)).
struct silu {
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t) const noexcept {
    using T = typename V::value_type;
    return map(v, [](auto x) {
      using B = decltype(x);
      const B d = B(T(1)) + xsimd::exp(-x);
      // x -> -inf (or exp overflowing) gives -inf / inf; the limit is -0.
      return xsimd::select(d == B(std::numeric_limits<T>::infinity()), B(T(-0.0)), x / d);
    });
  }
};

/// GELU, tanh approximation: 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3))).
struct gelu {
  template <class V>
  [[nodiscard]] V operator()(const V& v, std::size_t) const noexcept {
    using T = typename V::value_type;
    return map(v, [](auto x) {
      using B = decltype(x);
      const B inner = B(T(0.7978845608028654)) * xsimd::fma(B(T(0.044715)) * x, x * x, x);
      const B g = B(T(0.5)) * x * (B(T(1)) + xsimd::tanh(inner));
      return xsimd::select(x == B(-std::numeric_limits<T>::infinity()), B(T(-0.0)), g);  // -inf x 0 would be NaN
    });
  }
};

/// The identity stage: what an epilogue is when there is none.
struct identity {
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
