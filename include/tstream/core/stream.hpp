// Streams: ordered sequences of vec chunks flowing from one functional unit
// to the next, as data flows along the TSP's stream registers.
//
//   source  — has size() elements and yields at(first), a vec holding
//             elements [first, first + lanes) (lanes past size() are zero);
//   stage   — transforms a vec in registers: stage(v, first) -> vec, where
//             `first` is the index of lane 0 (so a stage can read a matching
//             chunk of another stream, e.g. a bias);
//   sink    — consumes chunks: sink.put(v, first, n).
//
// `source | stage` is again a source; `source | sink` is a pipeline whose
// run() executes the whole chain as one fused loop: every element is loaded
// once, transformed in registers and stored once. Mismatched element types
// or lane counts are compile errors.
//
// Superlane access, the same protocol one register at a time (every node
// tstream defines has it; a node of one's own may leave it out):
//   source  — s.superlane(first, j): superlane j of at(first);
//   stage   — st.superlane(x, first, j): superlane j of st(v, first), x
//             being superlane j of v;
//   sink    — sk.put_superlane(x, first, j, n): put(v, first, n) for
//             superlane j of v alone.
// When the source, every stage and the sink have it, run() streams each
// register through the whole chain before loading the next (working on
// copies of the source and sink, made once per run: nodes are views,
// pointers and sizes). The vec form builds every stage's whole 320-lane
// result first, and a stage's input and output (2 x 1280 bytes of fp32)
// do not fit in the 2048 bytes of AVX-512's registers, so each stage's
// output went through the stack: read | add(bias) | silu | write took
// 1.4-1.9x as long that way (1024 elements, in L1, Zen 4). Both forms give
// the same bits.
#pragma once

#include <concepts>
#include <cstddef>
#include <type_traits>
#include <utility>

#include "tstream/core/error.hpp"
#include "tstream/core/vec.hpp"

namespace tstream {

/// Empty base of every unit's stream type, so that `a | b` finds tstream's
/// operator| by argument-dependent lookup from any namespace.
struct stream_node {};

template <class V>
struct is_vec : std::false_type {};
template <class T, std::size_t L, class A>
struct is_vec<vec<T, L, A>> : std::true_type {};

/// A stream source: sized, yielding vec chunks.
template <class S>
concept source = requires(const S& s, std::size_t i) {
  typename S::vec_type;
  requires is_vec<typename S::vec_type>::value;
  { s.size() } -> std::convertible_to<std::size_t>;
  { s.at(i) } -> std::same_as<typename S::vec_type>;
};

/// A stage that maps chunks of V to chunks of V.
template <class St, class V>
concept stage_for = requires(const St& st, const V& v, std::size_t first) {
  { st(v, first) } -> std::same_as<V>;
};

/// A sink accepting chunks of V.
template <class Sk, class V>
concept sink_for = requires(const Sk& sk, const V& v, std::size_t first, std::size_t n) {
  typename Sk::is_sink;
  { sk.put(v, first, n) };
  { sk.size() } -> std::convertible_to<std::size_t>;
};

/// A source with superlane access (see the top of this file).
template <class S>
concept superlane_source = source<S> && requires(const S& s, std::size_t i) {
  { s.superlane(i, i) } -> std::same_as<typename S::vec_type::superlane>;
};

/// A stage with superlane access for vectors of type V.
template <class St, class V>
concept superlane_stage = requires(const St& st, const typename V::superlane& x, std::size_t i) {
  { st.superlane(x, i, i) } -> std::same_as<typename V::superlane>;
};

/// A sink with superlane access for vectors of type V.
template <class Sk, class V>
concept superlane_sink = sink_for<Sk, V> && requires(const Sk& sk, const typename V::superlane& x, std::size_t i) {
  { sk.put_superlane(x, i, i, i) };
};

/// Number of chunks in a source.
template <source S>
[[nodiscard]] std::size_t chunk_count(const S& s) noexcept {
  return chunks_of(s.size(), S::vec_type::lanes);
}

/// Calls f(data, bytes, elements) for every array a stream node reads: the
/// mem::read sources, including those inside stages (a staged source's
/// stage, vxm::add's stream, both stages of vxm::then). A node type takes
/// part through a member for_each_read(f); a node without one reads no
/// memory of its own (scalars, relu, ...; a user's own stage reading memory
/// is the user's to check). Kernels use it to check an epilogue's arrays
/// before they write anything.
template <class Node, class F>
void for_each_read(const Node& node, F&& f) {
  if constexpr (requires { node.for_each_read(f); }) node.for_each_read(f);
}

/// A source followed by a stage: itself a source.
template <source Src, class Stage>
class staged : public stream_node {
 public:
  using vec_type = typename Src::vec_type;
  staged(Src src, Stage st) : src_(std::move(src)), st_(std::move(st)) {}
  [[nodiscard]] std::size_t size() const noexcept { return src_.size(); }
  [[nodiscard]] vec_type at(std::size_t first) const noexcept { return st_(src_.at(first), first); }
  /// Superlane j of at(first), where the source and the stage have the superlane form.
  [[nodiscard]] typename vec_type::superlane superlane(std::size_t first, std::size_t j) const noexcept
    requires superlane_source<Src> && superlane_stage<Stage, vec_type>
  {
    return st_.superlane(src_.superlane(first, j), first, j);
  }
  template <class F>
  void for_each_read(F& f) const {
    tstream::for_each_read(src_, f);
    tstream::for_each_read(st_, f);
  }

 private:
  Src src_;
  Stage st_;
};

/// A source connected to a sink: run() drives the fused loop.
template <source Src, class Sink>
class pipeline : public stream_node {
 public:
  pipeline(Src src, Sink sink) : src_(std::move(src)), sink_(std::move(sink)) {}
  /// Streams every chunk from the source through its stages into the sink.
  /// Throws tstream::error, writing nothing, if the sink is too small.
  void run() const {
    const std::size_t n = src_.size(), L = Src::vec_type::lanes;
    detail::require(sink_.size() >= n, "pipeline::run", "the sink holds ", sink_.size(),
                    " elements, the source streams ", n);
    if constexpr (superlane_source<Src> && superlane_sink<Sink, typename Src::vec_type>) {
      constexpr std::size_t W = Src::vec_type::superlane_width, S = Src::vec_type::superlanes;
      // Local copies (a few pointers and sizes): the compiler then knows the
      // sink's stores cannot change them, and keeps them in registers.
      const Src src = src_;
      const Sink sink = sink_;
      for (std::size_t first = 0; first < n; first += L)
        for (std::size_t j = 0; j < S && first + j * W < n; ++j) sink.put_superlane(src.superlane(first, j), first, j, n - first);
    } else {
      for (std::size_t first = 0; first < n; first += L) sink_.put(src_.at(first), first, n - first);
    }
  }

 private:
  Src src_;
  Sink sink_;
};

/// source | stage -> source.
template <source Src, class Stage>
  requires(!sink_for<Stage, typename Src::vec_type>)
[[nodiscard]] auto operator|(Src src, Stage st) {
  static_assert(stage_for<Stage, typename Src::vec_type>,
                "tstream: this stage cannot take the source's vectors (element type or lane count differ)");
  return staged<Src, Stage>(std::move(src), std::move(st));
}

/// source | sink -> pipeline.
template <source Src, class Sink>
  requires sink_for<Sink, typename Src::vec_type>
[[nodiscard]] auto operator|(Src src, Sink sink) {
  return pipeline<Src, Sink>(std::move(src), std::move(sink));
}

}  // namespace tstream
