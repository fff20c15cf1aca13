// The bad-input contract, docs/bad-input.md, case by case: for every public
// entry point, what each wrong input does — the exact tstream::error message,
// that outputs are untouched, or the documented non-error behaviour. Cases
// already checked in tests/core, tests/runtime and tests/kernels are listed
// in the document and not repeated here.
#include <doctest/doctest.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "common.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/stream.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/attention/decode.hpp"
#include "tstream/kernels/gemv/gemv.hpp"
#include "tstream/runtime/thread_team.hpp"
#include "tstream/units/mem.hpp"
#include "tstream/units/vxm.hpp"

using rel::error_of;
using tstream::bf16;
using tstream::index_t;
using tstream::matrix_view;
using tstream::precision;
using tstream::resident_weights;

namespace {
using rel::inf;
using rel::qnan;
constexpr float sentinel = 42.f;
}  // namespace

// ---------------------------------------------------------------- matrix_view

TEST_CASE("bad input: matrix_view checks rows, cols, ld, then data, in that order") {
  std::vector<float> buf(16);
  CHECK(error_of([&] { matrix_view<float>(buf.data(), 2, 0, -1); }) ==
        "tstream::matrix_view: ld = -1 is smaller than cols = 0");
  CHECK(error_of([&] { matrix_view<float>(buf.data(), -1, -1); }) == "tstream::matrix_view: rows = -1 is negative");
  CHECK(error_of([&] { matrix_view<float>(nullptr, 2, 4, 3); }) ==
        "tstream::matrix_view: ld = 3 is smaller than cols = 4");
  // Null data is fine for an empty view, whichever side is zero.
  CHECK(error_of([&] { matrix_view<float>(nullptr, 3, 0); }) == "no error");
  CHECK(matrix_view<const float>(nullptr, 3, 0).empty());
  CHECK(matrix_view<const float>(nullptr, 0, 0, 0).empty());
}

// -------------------------------------------------------------- quantize_rows

TEST_CASE("bad input: quantize_rows names the first non-finite weight in view coordinates") {
  std::vector<float> w(10, 1.f);
  w[1 * 5 + 2] = inf;  // row 1, column 2 of a 2 x 4 view with ld 5
  CHECK(error_of([&] { (void)tstream::quantize_rows(matrix_view<const float>(w.data(), 2, 4, 5)); }) ==
        "tstream::quantize_rows: w(1, 2) = inf is not finite");
  w[1 * 5 + 2] = 1.f;
  w[3] = -inf;
  CHECK(error_of([&] { (void)tstream::quantize_rows(matrix_view<const float>(w.data(), 2, 4, 5)); }) ==
        "tstream::quantize_rows: w(0, 3) = -inf is not finite");
  w[3] = 1.f;
  w[4] = qnan;  // outside the 4-column view: never read
  CHECK(error_of([&] { (void)tstream::quantize_rows(matrix_view<const float>(w.data(), 2, 4, 5)); }) == "no error");
}

TEST_CASE("bad input: quantize_rows of empty matrices") {
  const auto none = tstream::quantize_rows(matrix_view<const float>(nullptr, 0, 4));
  CHECK(none.rows == 0);
  CHECK(none.q.size() == 0);
  const auto no_cols = tstream::quantize_rows(matrix_view<const float>(nullptr, 3, 0));
  CHECK(no_cols.rows == 3);
  CHECK(no_cols.scale.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) CHECK(no_cols.scale[i] == 0.f);
  CHECK(no_cols.view().empty());
}

// ----------------------------------------------------------- resident_weights

TEST_CASE("bad input: resident_weights shares outside [1, 1024], for every constructor") {
  std::vector<float> w(64, 1.f);
  const matrix_view<const float> v(w.data(), 4, 16);
  CHECK(error_of([&] { resident_weights<float>(v, 1025); }) ==
        "tstream::resident_weights: shares = 1025 is outside [1, 1024]");
  CHECK(error_of([&] { resident_weights<bf16>(v, -1); }) == "tstream::resident_weights: shares = -1 is outside [1, 1024]");
  CHECK(error_of([&] { resident_weights<std::int8_t>(v, 0); }) ==
        "tstream::resident_weights: shares = 0 is outside [1, 1024]");
  std::vector<bf16> wb(64, bf16(1.f));
  CHECK(error_of([&] { resident_weights<bf16>(matrix_view<const bf16>(wb.data(), 4, 16), 2000); }) ==
        "tstream::resident_weights: shares = 2000 is outside [1, 1024]");
  std::vector<std::int8_t> q(64, 1);
  std::vector<float> s(4, 1.f);
  CHECK(error_of([&] { resident_weights<std::int8_t>(matrix_view<const std::int8_t>(q.data(), 4, 16), s, INT_MAX); }) ==
        "tstream::resident_weights: shares = 2147483647 is outside [1, 1024]");
  // More shares than 16-row granules is allowed: the extra shares are empty.
  CHECK(error_of([&] { resident_weights<float>(v, 1024); }) == "no error");
}

TEST_CASE("bad input: resident_weights K = 0 for the bf16 and pre-quantized constructors (checked before the scales)") {
  CHECK(error_of([&] { resident_weights<bf16>(matrix_view<const bf16>(nullptr, 4, 0)); }) ==
        "tstream::resident_weights: w has K = 0 columns (K must be at least 1)");
  std::vector<float> bad_scales = {qnan};
  CHECK(error_of([&] { resident_weights<std::int8_t>(matrix_view<const std::int8_t>(nullptr, 4, 0), bad_scales); }) ==
        "tstream::resident_weights: w has K = 0 columns (K must be at least 1)");
  CHECK(error_of([&] { resident_weights<float>(matrix_view<const float>(nullptr, 0, 0)); }) ==
        "tstream::resident_weights: w has K = 0 columns (K must be at least 1)");
}

TEST_CASE("bad input: pre-quantized int8 scales: null, NaN, -inf; negative and zero scales are accepted") {
  std::vector<std::int8_t> q(2 * 8, 3);
  const matrix_view<const std::int8_t> qv(q.data(), 2, 8);
  CHECK(error_of([&] { resident_weights<std::int8_t>(qv, std::span<const float>(static_cast<const float*>(nullptr), 2)); }) ==
        "tstream::resident_weights: scales is null");
  std::vector<float> s = {qnan, 1.f};
  CHECK(error_of([&] { resident_weights<std::int8_t>(qv, s); }) == "tstream::resident_weights: scales[0] = nan is not finite");
  s = {1.f, -inf};
  CHECK(error_of([&] { resident_weights<std::int8_t>(qv, s); }) == "tstream::resident_weights: scales[1] = -inf is not finite");
  s = {-0.5f, 0.f};
  const resident_weights<std::int8_t> w(qv, s);
  tstream::thread_team team(1);
  std::vector<float> x(8, 1.f), y(2);
  tstream::gemv(team, w, x, y);
  CHECK(y[0] == -0.5f * 3 * 8);  // W = scale * q exactly as given
  CHECK(y[1] == 0.f);
}

TEST_CASE("bad input: int8 packing of non-finite fp32 weights is quantize_rows' error; fp32 and bf16 keep them") {
  std::vector<float> w(2 * 8, 1.f);
  w[1] = -inf;
  CHECK(error_of([&] { resident_weights<std::int8_t>(matrix_view<const float>(w.data(), 2, 8)); }) ==
        "tstream::quantize_rows: w(0, 1) = -inf is not finite");
  w[9] = qnan;
  CHECK(error_of([&] { resident_weights<float>(matrix_view<const float>(w.data(), 2, 8)); }) == "no error");
  CHECK(error_of([&] { resident_weights<bf16>(matrix_view<const float>(w.data(), 2, 8)); }) == "no error");
}

TEST_CASE_TEMPLATE("bad input: N = 0 weights: every gemv form is a no-op", W, float, bf16, std::int8_t) {
  const resident_weights<W> w(matrix_view<const float>(nullptr, 0, 5), 3);
  CHECK(w.rows() == 0);
  CHECK(w.bytes() == 0);
  tstream::thread_team team(2);
  std::vector<float> x(5, 1.f), y;
  for (precision mode : {precision::exact, precision::fast}) {
    tstream::gemv(team, w, x, y, tstream::vxm::identity{}, {mode});
    tstream::gemv(team, w, x, y, std::span<const float>(), {mode});
    std::vector<float> xs(3 * 5, 1.f);
    tstream::gemv(team, w, matrix_view<const float>(xs.data(), 3, 5), matrix_view<float>(nullptr, 3, 0),
                  tstream::vxm::identity{}, {mode});
  }
}

// ----------------------------------------------------------------------- gemv

namespace {
struct gemv_fixture {
  static constexpr index_t n = 8, k = 16;
  std::vector<float> w32 = rel::random_vector(std::size_t(n * k), 7);
  tstream::thread_team team{2};
  resident_weights<float> rw{matrix_view<const float>(w32.data(), n, k), 2};
  std::vector<float> x = rel::random_vector(std::size_t(k), 8);
  std::vector<float> y = std::vector<float>(std::size_t(n), sentinel);
};
}  // namespace

TEST_CASE("bad input: gemv null y, null bias, and the order of the checks") {
  gemv_fixture f;
  CHECK(error_of([&] { tstream::gemv(f.team, f.rw, f.x, std::span<float>(static_cast<float*>(nullptr), 8)); }) ==
        "tstream::gemv: y is null");
  CHECK(error_of([&] { tstream::gemv(f.team, f.rw, f.x, f.y, std::span<const float>(static_cast<const float*>(nullptr), 8)); }) ==
        "tstream::gemv: bias is null");
  CHECK(rel::untouched(f.y, sentinel));
  // x's size is checked first, then y's size, then null pointers, then overlap.
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, std::span<const float>(static_cast<const float*>(nullptr), 3),
                        std::span<float>(static_cast<float*>(nullptr), 3));
        }) == "tstream::gemv: x has 3 elements, W has K = 16");
  CHECK(error_of([&] { tstream::gemv(f.team, f.rw, f.x, std::span<float>(static_cast<float*>(nullptr), 3)); }) ==
        "tstream::gemv: y has 3 elements, W has N = 8");
  // The bias overload checks the bias before x and y.
  std::vector<float> b(3);
  CHECK(error_of([&] { tstream::gemv(f.team, f.rw, std::span<const float>(f.x.data(), 2), f.y, std::span<const float>(b)); }) ==
        "tstream::gemv: bias has 3 elements, W has N = 8");
}

TEST_CASE("bad input: gemv rejects any overlap of y with x, from either side") {
  gemv_fixture f;
  std::vector<float> both(64, sentinel);
  const std::size_t n = 8, k = 16;
  // y ends inside x.
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, std::span<const float>(both.data() + 4, k), std::span<float>(both.data(), n));
        }) == "tstream::gemv: y overlaps x (the output must not alias the input)");
  // y is inside x.
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, std::span<const float>(both.data(), k), std::span<float>(both.data() + 2, n));
        }) == "tstream::gemv: y overlaps x (the output must not alias the input)");
  CHECK(rel::untouched(both, sentinel));
  // Adjacent is fine.
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, std::span<const float>(both.data(), k), std::span<float>(both.data() + k, n));
        }) == "no error");
}

TEST_CASE("bad input: batch gemv — Y columns, Y overlapping X (by extent), M = 0") {
  gemv_fixture f;
  const index_t n = 8, k = 16;
  std::vector<float> xs(std::size_t(2 * k), 1.f), ys(std::size_t(2 * n), sentinel);
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, matrix_view<const float>(xs.data(), 2, k), matrix_view<float>(ys.data(), 2, n - 1));
        }) == "tstream::gemv: Y has 7 columns, W has N = 8");
  CHECK(rel::untouched(ys, sentinel));
  // Same buffer: X rows at 0 and 2k, Y rows at k and 3k. No element is
  // shared, but the extents overlap: rejected.
  std::vector<float> buf(std::size_t(4 * k), 1.f);
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, matrix_view<const float>(buf.data(), 2, k, 2 * k),
                        matrix_view<float>(buf.data() + k, 2, n, 2 * k));
        }) == "tstream::gemv: Y overlaps X (the output must not alias the input)");
  // M = 0 with null data: a no-op.
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, matrix_view<const float>(nullptr, 0, k), matrix_view<float>(nullptr, 0, n));
        }) == "no error");
  // Columns are checked before rows.
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, matrix_view<const float>(xs.data(), 2, k - 1), matrix_view<float>(ys.data(), 1, n - 1));
        }) == "tstream::gemv: X has 15 columns, W has K = 16");
}

TEST_CASE("bad input: gemv epilogue arrays — length, overlap with y or Y, nested in then() and staged sources") {
  namespace mem = tstream::mem;
  namespace vxm = tstream::vxm;
  gemv_fixture f;
  const std::vector<float> short_bias(7, 1.f), long_bias(9, 1.f), bias = rel::random_vector(8, 11);
  CHECK(error_of([&] { tstream::gemv(f.team, f.rw, f.x, f.y, vxm::add(mem::read(short_bias))); }) ==
        "tstream::gemv: an array the epilogue streams has 7 elements, y has N = 8");
  CHECK(error_of([&] { tstream::gemv(f.team, f.rw, f.x, f.y, vxm::then(vxm::relu{}, vxm::add(mem::read(long_bias)))); }) ==
        "tstream::gemv: an array the epilogue streams has 9 elements, y has N = 8");
  // A staged source inside add: its reader is checked too.
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, f.x, f.y, vxm::then(vxm::add(mem::read(bias)), vxm::add(mem::read(short_bias) | vxm::scale(2.f))));
        }) == "tstream::gemv: an array the epilogue streams has 7 elements, y has N = 8");
  CHECK(rel::untouched(f.y, sentinel));
  // Streaming y itself (y = W x + y) would race with the members writing y.
  std::vector<float> y(8, sentinel);
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, f.x, y, vxm::add(mem::read(std::span<const float>(y))));
        }) == "tstream::gemv: an array the epilogue streams overlaps y");
  CHECK(rel::untouched(y, sentinel));
  // Batch form: the arrays hold N (Y's columns) and must not overlap any of Y.
  std::vector<float> xs(2 * 16, 1.f), ys(2 * 16, sentinel);
  const matrix_view<float> Y(ys.data(), 2, 8, 16);
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, matrix_view<const float>(xs.data(), 2, 16), Y,
                        vxm::add(mem::read(std::span<const float>(ys.data() + 8, 8))));  // between Y's rows: inside its extent
        }) == "tstream::gemv: an array the epilogue streams overlaps Y");
  CHECK(error_of([&] {
          tstream::gemv(f.team, f.rw, matrix_view<const float>(xs.data(), 2, 16), Y, vxm::add(mem::read(short_bias)));
        }) == "tstream::gemv: an array the epilogue streams has 7 elements, Y has N = 8");
  CHECK(rel::untouched(ys, sentinel));
  // The right length gives the bias form's bits, with any stage after it.
  std::vector<float> y1(8), y2(8);
  tstream::gemv(f.team, f.rw, f.x, y1, std::span<const float>(bias));
  tstream::gemv(f.team, f.rw, f.x, y2, vxm::then(vxm::add(mem::read(bias)), vxm::identity{}));
  CHECK(y1 == y2);
}

TEST_CASE("bad input: kv_cache element accessors check head, position and d") {
  tstream::kv_cache<std::int8_t> c(2, 64, 8);
  const auto kv = rel::random_vector(128, 5);
  c.append(kv, kv);
  CHECK(error_of([&] { (void)c.key(1, 0, 63); }) == "no error");
  CHECK(error_of([&] { (void)c.key(2, 0, 0); }) == "tstream::kv_cache::key: head = 2 is outside [0, kv_heads = 2)");
  CHECK(error_of([&] { (void)c.value(0, 1, 0); }) == "tstream::kv_cache::value: position = 1 is outside [0, size = 1)");
  CHECK(error_of([&] { (void)c.key(0, 0, 64); }) == "tstream::kv_cache::key: d = 64 is outside [0, head_dim = 64)");
  CHECK(error_of([&] { (void)c.value(0, -1, 0); }) == "tstream::kv_cache::value: position = -1 is outside [0, size = 1)");
  CHECK(error_of([&] { (void)c.key_scale(-1, 0); }) == "tstream::kv_cache::key_scale: head = -1 is outside [0, kv_heads = 2)");
  CHECK(error_of([&] { (void)c.value_scale(0, 5); }) == "tstream::kv_cache::value_scale: position = 5 is outside [0, size = 1)");
}

TEST_CASE("bad input: resident_weights::share and split_rows arguments") {
  gemv_fixture f;
  CHECK(f.rw.share(1).end_panel >= f.rw.share(0).end_panel);
  CHECK(error_of([&] { (void)f.rw.share(2); }) == "tstream::resident_weights::share: s = 2 is outside [0, shares = 2)");
  CHECK(error_of([&] { (void)f.rw.share(-1); }) == "tstream::resident_weights::share: s = -1 is outside [0, shares = 2)");
  CHECK(tstream::split_rows(10, 0, 1).empty());
  CHECK(error_of([&] { (void)tstream::split_rows(10, -3, 1); }) == "tstream::split_rows: parts = -3 is negative");
  CHECK(error_of([&] { (void)tstream::split_rows(10, 2, 0); }) == "tstream::split_rows: granule = 0 is not positive");
  CHECK(error_of([&] { (void)tstream::split_rows(-1, 2, 16); }) == "tstream::split_rows: n = -1 is negative");
  const auto parts = tstream::split_rows(33, 3, 16);  // 3 granules over 3 parts
  REQUIRE(parts.size() == 3);
  CHECK((parts[0].begin == 0 && parts[0].end == 16 && parts[1].begin == 16 && parts[1].end == 32 && parts[2].end == 33));
}

TEST_CASE("bad input: fast int8 K limit is 65792; longer K is an error in fast mode only, and only when N > 0") {
  tstream::thread_team team(1);
  for (index_t k : {index_t(65792), index_t(65793)}) {
    CAPTURE(k);
    std::vector<std::int8_t> q(std::size_t(k), 1);
    const std::vector<float> scales = {0.5f};
    const resident_weights<std::int8_t> w(matrix_view<const std::int8_t>(q.data(), 1, k), scales);
    std::vector<float> x(std::size_t(k), 1.f), y(1, sentinel);
    const std::string e = error_of([&] { tstream::gemv(team, w, x, y, tstream::vxm::identity{}, {precision::fast}); });
    if (k == 65792) {
      CHECK(e == "no error");
      CHECK(y[0] == 0.5f * float(k));
    } else {
      CHECK(e == "tstream::gemv: K = 65793 is too long for fast int8 mode (at most 65792); use precision::exact");
      CHECK(y[0] == sentinel);
      std::vector<float> xs(std::size_t(2 * k), 1.f), ys(2, sentinel);
      CHECK(error_of([&] {
              tstream::gemv(team, w, matrix_view<const float>(xs.data(), 2, k), matrix_view<float>(ys.data(), 2, 1),
                            tstream::vxm::identity{}, {precision::fast});
            }) == "tstream::gemv: K = 65793 is too long for fast int8 mode (at most 65792); use precision::exact");
      CHECK(rel::untouched(ys, sentinel));
      tstream::gemv(team, w, x, y);  // exact mode has no limit
      CHECK(y[0] == 0.5f * float(k));
      const resident_weights<std::int8_t> empty(matrix_view<const float>(nullptr, 0, k));
      std::vector<float> none;
      CHECK(error_of([&] { tstream::gemv(team, empty, x, none, tstream::vxm::identity{}, {precision::fast}); }) == "no error");
    }
  }
}

// ------------------------------------------------------------------- kv_cache

TEST_CASE("bad input: kv_cache constructor arguments") {
  using tstream::kv_cache;
  for (index_t d : {index_t(0), index_t(8), index_t(-16), index_t(1040), index_t(2048)}) {
    CAPTURE(d);
    CHECK(error_of([&] { kv_cache<float>(1, d, 4); }) ==
          "tstream::kv_cache: head_dim = " + std::to_string(d) + " is unsupported (a multiple of 16 up to 1024)");
  }
  CHECK(error_of([&] { kv_cache<bf16>(-1, 64, 4); }) == "tstream::kv_cache: kv_heads = -1 must be at least 1");
  CHECK(error_of([&] { kv_cache<std::int8_t>(1, 64, -5); }) == "tstream::kv_cache: capacity = -5 must be at least 1");
  CHECK(error_of([&] { kv_cache<float>(1, 1024, 1); }) == "no error");
  CHECK(error_of([&] { kv_cache<float>(1, 16, 1); }) == "no error");
}

TEST_CASE("bad input: kv_cache sizes whose byte count overflows are an error or bad_alloc") {
  // Fixed BUG (when the cache was laid out in 64-position blocks):
  // kv_cache(kv_heads, head_dim, capacity) computed (capacity + 63) / 64
  // blocks and kv_heads * blocks * block_bytes() without overflow checks.
  // (It now counts pages as capacity / 512 + (capacity % 512 != 0), and the
  // product goes through checked_mul.)
  // kv_cache<float>(1, 64, PTRDIFF_MAX): capacity + 63 overflows (UB; UBSan
  // reports it) and the product wraps to 32768 bytes, one block: appending a
  // 65th position then writes past the buffer (ASan: heap-buffer-overflow).
  // kv_cache<float>(1, 64, 2^58): 2^52 blocks x 32768 bytes wraps to 0, the
  // buffer is null, and the first append stores through a null pointer.
  // Expected: std::bad_alloc (or tstream::error) from the constructor.
  using tstream::kv_cache;
  CHECK_THROWS(kv_cache<float>(1, 64, std::numeric_limits<index_t>::max()));
  CHECK_THROWS(kv_cache<float>(1, 64, index_t(1) << 58));
  CHECK_THROWS(kv_cache<float>(index_t(1) << 40, 1024, index_t(1) << 40));
}

TEST_CASE("bad input: aligned_buffer sizes whose byte count overflows throw bad_alloc") {
  // BUG: aligned_buffer<T>(n) allocates n * sizeof(T) bytes without checking
  // the product: aligned_buffer<float>(2^62 + 1) allocates 4 bytes and
  // reports size() = 2^62 + 1. Expected: std::bad_array_new_length (a
  // std::bad_alloc), as std::allocator does.
  CHECK_THROWS_AS(tstream::aligned_buffer<float>((std::size_t(1) << 62) + 1), std::bad_alloc);
}

TEST_CASE("bad input: kv_cache::append — null, widths, row mismatch, capacity; nothing is stored") {
  using tstream::kv_cache;
  kv_cache<float> c(2, 64, 4);
  std::vector<float> kv(128, 1.f);
  CHECK(error_of([&] { c.append(std::span<const float>(static_cast<const float*>(nullptr), 128), kv); }) ==
        "tstream::kv_cache::append: k is null with 128 elements");
  CHECK(error_of([&] { c.append(kv, std::span<const float>(static_cast<const float*>(nullptr), 128)); }) ==
        "tstream::kv_cache::append: v is null with 128 elements");
  CHECK(error_of([&] { c.append(kv, std::span<const float>(kv.data(), 127)); }) ==
        "tstream::kv_cache::append: v has 127 values per position, expected kv_heads x head_dim = 128");
  CHECK(error_of([&] { c.append(std::span<const float>(), kv); }) ==
        "tstream::kv_cache::append: k has 0 values per position, expected kv_heads x head_dim = 128");
  std::vector<float> rows(5 * 128, 1.f);
  CHECK(error_of([&] {
          c.append(matrix_view<const float>(rows.data(), 2, 128), matrix_view<const float>(rows.data(), 3, 128));
        }) == "tstream::kv_cache::append: k has 2 positions, v has 3");
  CHECK(error_of([&] {
          c.append(matrix_view<const float>(rows.data(), 5, 128), matrix_view<const float>(rows.data(), 5, 128));
        }) == "tstream::kv_cache::append: appending 5 positions to 0 exceeds capacity = 4");
  CHECK(c.size() == 0);
  // Zero rows: a no-op.
  c.append(matrix_view<const float>(rows.data(), 0, 128), matrix_view<const float>(rows.data(), 0, 128));
  CHECK(c.size() == 0);
  // k and v may be the same memory (they are only read).
  c.append(kv, kv);
  CHECK(c.size() == 1);
  // fp32 and bf16 caches store non-finite values as they are.
  kv[3] = qnan;
  kv[70] = -inf;
  c.append(kv, kv);
  CHECK(std::isnan(c.key(0, 1, 3)));
  CHECK(c.value(1, 1, 6) == -inf);
  kv_cache<bf16> cb(2, 64, 2);
  cb.append(kv, kv);
  CHECK(std::isnan(cb.value(0, 0, 3)));
}

TEST_CASE("bad input: int8 kv_cache::append of a non-finite value: message, and nothing stored") {
  tstream::kv_cache<std::int8_t> c(2, 64, 8);
  const auto good = rel::random_vector(128, 3);
  c.append(good, good);
  c.append(good, good);
  const float before = c.key(1, 1, 5);
  std::vector<float> rows(3 * 128, 0.5f), vals(3 * 128, 0.25f);
  rows[1 * 128 + 5] = inf;  // row 1 of the prefill (position 3 of the cache)
  CHECK(error_of([&] {
          c.append(matrix_view<const float>(rows.data(), 3, 128), matrix_view<const float>(vals.data(), 3, 128));
        }) == "tstream::kv_cache::append: k at position 1, value 5 is not finite (int8 needs a finite scale)");
  CHECK(c.size() == 2);
  rows[1 * 128 + 5] = 0.5f;
  vals[7] = qnan;  // the message names the first bad (position, value) whether it is in k or v
  CHECK(error_of([&] {
          c.append(matrix_view<const float>(rows.data(), 3, 128), matrix_view<const float>(vals.data(), 3, 128));
        }) == "tstream::kv_cache::append: v at position 0, value 7 is not finite (int8 needs a finite scale)");
  CHECK(c.size() == 2);
  CHECK(c.key(1, 1, 5) == before);
}

// ------------------------------------------------- decode_plan and attention

TEST_CASE("bad input: decode_plan constructor — q_heads, window, scale") {
  tstream::kv_cache<float> c(2, 64, 8);
  using tstream::decode_plan;
  CHECK(error_of([&] { decode_plan<float>(c, 0); }) ==
        "tstream::decode_plan: q_heads = 0 is not a positive multiple of kv_heads = 2");
  CHECK(error_of([&] { decode_plan<float>(c, -2); }) ==
        "tstream::decode_plan: q_heads = -2 is not a positive multiple of kv_heads = 2");
  tstream::decode_options o;
  o.window = -1;
  CHECK(error_of([&] { decode_plan<float>(c, 2, o); }) == "tstream::decode_plan: window = -1 is negative");
  for (float s : {qnan, inf, -1.f}) {
    o = {};
    o.scale = s;
    const std::string shown = std::isnan(s) ? "nan" : s > 0 ? "inf" : "-1";
    CHECK(error_of([&] { decode_plan<float>(c, 2, o); }) ==
          "tstream::decode_plan: scale = " + shown + " is not a finite non-negative number");
  }
  o = {};
  o.scale = -0.f;  // -0 >= 0: accepted, and means the default 1 / sqrt(head_dim)
  CHECK(error_of([&] { decode_plan<float>(c, 2, o); }) == "no error");
}

TEST_CASE("bad input: decode_plan absurd q_heads is an error or bad_alloc") {
  // BUG: decode_plan(cache, q_heads) sizes its partial buffer as
  // chunks * q_heads * (head_dim + 2) floats without overflow checks: with
  // q_heads = 2^61 the byte count wraps to 0 and the plan is built; run()
  // then computes q_heads * head_dim (signed overflow, 0 after wrapping), so
  // a non-null empty q and out pass the size checks and the kernel reads
  // 2^61 heads. Expected: an error (or bad_alloc) from the constructor.
  tstream::kv_cache<float> c(1, 64, 8);
  CHECK_THROWS(tstream::decode_plan<float>(c, index_t(1) << 61));
}

TEST_CASE("bad input: decode_plan::run — sizes, null, overlap, empty cache; out untouched") {
  tstream::kv_cache<float> c(2, 64, 8);
  tstream::thread_team team(2);
  tstream::decode_plan<float> plan(c, 6);
  std::vector<float> q(6 * 64, 0.5f), out(6 * 64, sentinel);
  // The plan is made before any position: it is valid for every length up to capacity.
  CHECK(error_of([&] { plan.run(team, q, out); }) == "tstream::attention_decode: the KV cache is empty (L = 0)");
  const auto kv = rel::random_vector(128, 1);
  c.append(kv, kv);
  CHECK(error_of([&] { plan.run(team, std::span<const float>(q.data(), 383), out); }) ==
        "tstream::attention_decode: q has 383 elements, expected q_heads x head_dim = 384");
  CHECK(error_of([&] { plan.run(team, std::span<const float>(static_cast<const float*>(nullptr), 384), out); }) ==
        "tstream::attention_decode: q or out is null");
  CHECK(error_of([&] { plan.run(team, q, std::span<float>(static_cast<float*>(nullptr), 384)); }) ==
        "tstream::attention_decode: q or out is null");
  std::vector<float> both(2 * 384, 0.5f);
  CHECK(error_of([&] { plan.run(team, std::span<const float>(both.data() + 100, 384), std::span<float>(both.data(), 384)); }) ==
        "tstream::attention_decode: out overlaps q");
  CHECK(rel::untouched(out, sentinel));
  plan.run(team, q, out);
  CHECK(!rel::untouched(out, sentinel));
  // clear() empties the cache under the plan.
  c.clear();
  std::fill(out.begin(), out.end(), sentinel);
  CHECK(error_of([&] { plan.run(team, q, out); }) == "tstream::attention_decode: the KV cache is empty (L = 0)");
  CHECK(rel::untouched(out, sentinel));
}

TEST_CASE("bad input: attention_decode — empty q and bad options are the plan's errors") {
  tstream::kv_cache<bf16> c(2, 64, 8);
  const auto kv = rel::random_vector(128, 2);
  c.append(kv, kv);
  tstream::thread_team team(1);
  std::vector<float> out(128, sentinel);
  CHECK(error_of([&] { tstream::attention_decode(team, c, std::span<const float>(), out); }) ==
        "tstream::decode_plan: q_heads = 0 is not a positive multiple of kv_heads = 2");
  std::vector<float> q(128, 1.f);
  tstream::decode_options o;
  o.scale = qnan;
  CHECK(error_of([&] { tstream::attention_decode(team, c, q, out, o); }) ==
        "tstream::decode_plan: scale = nan is not a finite non-negative number");
  CHECK(error_of([&] { tstream::attention_decode(team, c, std::span<const float>(q.data(), 64), out); }) ==
        "tstream::decode_plan: q_heads = 1 is not a positive multiple of kv_heads = 2");
  CHECK(rel::untouched(out, sentinel));
  // A window longer than the context attends to all of it.
  o = {};
  o.window = 1000;
  std::vector<float> all(128);
  tstream::attention_decode(team, c, q, out, o);
  tstream::attention_decode(team, c, q, all);
  CHECK(rel::same_bits(out, all));
}

// ---------------------------------------------------------------- thread_team

TEST_CASE("bad input: thread_team sizes outside [1, 1024]; odd options") {
  CHECK(error_of([&] { tstream::thread_team(1025); }) == "tstream::thread_team: threads = 1025 is outside [1, 1024]");
  CHECK(error_of([&] { tstream::thread_team(INT_MIN); }) ==
        "tstream::thread_team: threads = -2147483648 is outside [1, 1024]");
  // No spinning (0 or negative), no pinning: still correct.
  for (int spin : {0, -5}) {
    tstream::team_options o;
    o.spin_iterations = spin;
    o.pin_workers = false;
    tstream::thread_team team(3, o);
    std::vector<int> hits(3);
    for (int r = 0; r < 20; ++r) team.run([&](int m) { hits[std::size_t(m)] += 1; });
    CHECK(hits == std::vector<int>{20, 20, 20});
  }
}

TEST_CASE("bad input: a team job calling run() on another team is also a nesting error") {
  tstream::thread_team a(2), b(2);
  CHECK(error_of([&] { a.run([&](int) { b.run([](int) {}); }); }) ==
        "tstream::thread_team::run: called from inside a running team job (nesting is not supported)");
  // Both teams stay usable.
  int runs = 0;
  b.run([&](int m) { if (m == 0) ++runs; });
  a.run([&](int m) { if (m == 0) ++runs; });
  CHECK(runs == 2);
}

TEST_CASE("bad input: an oversubscribed team (more members than CPUs) gives the same GEMV bits") {
  const index_t n = 200, k = 33;
  const auto w32 = rel::random_vector(std::size_t(n * k), 5);
  const auto x = rel::random_vector(std::size_t(k), 6);
  const resident_weights<float> w(matrix_view<const float>(w32.data(), n, k), 16);
  std::vector<float> y1(static_cast<std::size_t>(n)), y16(static_cast<std::size_t>(n));
  tstream::thread_team one(1), many(16);
  tstream::gemv(one, w, x, y1);
  tstream::gemv(many, w, x, y16);
  CHECK(rel::same_bits(y1, y16));
}

// ------------------------------------------------------------------- pipeline

TEST_CASE("bad input: mem::read and mem::write of null data") {
  namespace mem = tstream::mem;
  CHECK(error_of([&] { (void)mem::read(std::span<const float>(static_cast<const float*>(nullptr), 5)); }) ==
        "tstream::mem::read: data is null with size 5");
  CHECK(error_of([&] { (void)mem::write(std::span<float>(static_cast<float*>(nullptr), 5)); }) ==
        "tstream::mem::write: data is null with size 5");
  CHECK(error_of([&] { (void)mem::read(std::span<const float>()); }) == "no error");
}

TEST_CASE("bad input: pipeline::run — small sink with stages writes nothing; larger sink keeps its tail; size 0") {
  namespace mem = tstream::mem;
  namespace vxm = tstream::vxm;
  std::vector<float> x(700, 1.f), b(700, 2.f), y(699, sentinel);
  auto p = mem::read(x) | vxm::scale(3.f) | vxm::add(mem::read(b)) | vxm::relu{} | mem::write(y);
  CHECK(error_of([&] { p.run(); }) == "tstream::pipeline::run: the sink holds 699 elements, the source streams 700");
  CHECK(rel::untouched(y, sentinel));
  std::vector<float> big(1000, sentinel);
  (mem::read(x) | vxm::scale(3.f) | mem::write(big)).run();
  for (std::size_t i = 0; i < big.size(); ++i) REQUIRE(big[i] == (i < 700 ? 3.f : sentinel));
  std::vector<float> none;
  (mem::read(none) | vxm::silu{} | mem::write(none)).run();
}

TEST_CASE("bad input: pipeline in place (sink = source) works; a shorter stage source reads as zeros past its end") {
  namespace mem = tstream::mem;
  namespace vxm = tstream::vxm;
  auto x = rel::random_vector(1000, 9);
  const auto x0 = x;
  (mem::read(std::span<const float>(x)) | vxm::scale(2.f) | mem::write(x)).run();
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(x[i] == 2.f * x0[i]);
  std::vector<float> b(333, 1.f), y(1000);
  (mem::read(x0) | vxm::add(mem::read(b)) | mem::write(y)).run();
  for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == x0[i] + (i < 333 ? 1.f : 0.f));
}
