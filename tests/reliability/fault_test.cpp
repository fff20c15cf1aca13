// Out of memory. This executable replaces the global operator new with one
// that can be told to fail after N more allocations. Every allocating entry
// point is driven through every failure point: it must throw std::bad_alloc
// (or tstream::error), leak nothing (counted here, and by LeakSanitizer in
// the asan build), write no output, and leave objects built earlier usable.
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <thread>
#include <vector>

#if defined(__unix__)
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "common.hpp"
#include "tstream/kernels/attention/decode.hpp"
#include "tstream/kernels/gemm/gemm.hpp"
#include "tstream/kernels/gemv/gemv.hpp"

// ---------------------------------------------------- the failing allocator

namespace fault {
std::atomic<long> countdown{-1};  // < 0: never fail; else allocations left before one fails
std::atomic<long> live{0};        // allocations not yet freed
std::atomic<long> total{0};       // allocations made

void* allocate(std::size_t n, std::size_t align) {
  if (countdown.load(std::memory_order_relaxed) >= 0 && countdown.fetch_sub(1) == 0) throw std::bad_alloc();
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) p = std::malloc(n ? n : 1);
  else if (posix_memalign(&p, align, n ? n : 1) != 0) p = nullptr;
  if (!p) throw std::bad_alloc();
  live.fetch_add(1);
  total.fetch_add(1);
  return p;
}
void release(void* p) noexcept {
  if (!p) return;
  live.fetch_sub(1);
  std::free(p);
}

// Runs f with allocation number n (0-based) failing. Returns true if f threw
// std::bad_alloc or tstream::error, false if it returned.
template <class F>
bool fails_at(long n, F&& f) {
  countdown.store(n);
  bool failed = false;
  try {
    f();
  } catch (const std::bad_alloc&) {
    failed = true;
  } catch (const tstream::error&) {
    failed = true;
  }
  countdown.store(-1);
  return failed;
}

// Allocations f makes when nothing fails.
template <class F>
long allocations_of(F&& f) {
  const long before = total.load();
  f();
  return total.load() - before;
}
}  // namespace fault

void* operator new(std::size_t n) { return fault::allocate(n, 0); }
void* operator new[](std::size_t n) { return fault::allocate(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) { return fault::allocate(n, std::size_t(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return fault::allocate(n, std::size_t(a)); }
void operator delete(void* p) noexcept { fault::release(p); }
void operator delete[](void* p) noexcept { fault::release(p); }
void operator delete(void* p, std::size_t) noexcept { fault::release(p); }
void operator delete[](void* p, std::size_t) noexcept { fault::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { fault::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { fault::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { fault::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { fault::release(p); }

using tstream::bf16;
using tstream::index_t;
using tstream::matrix_view;
using tstream::precision;
using tstream::resident_weights;

// Drives `make` through each of its allocations failing in turn: each must
// throw, leak nothing, and leave `check` (which uses objects built earlier)
// passing. The last run, with nothing failing, must succeed.
template <class Make, class Check>
void every_failure_point(Make&& make, Check&& check) {
  const long count = fault::allocations_of(make);
  REQUIRE(count > 0);
  for (long n = 0; n < count; ++n) {
    CAPTURE(n);
    const long live = fault::live.load();
    REQUIRE(fault::fails_at(n, make));
    REQUIRE(fault::live.load() == live);  // nothing leaked
    check();
  }
  const long live = fault::live.load();
  REQUIRE_FALSE(fault::fails_at(count, make));
  REQUIRE(fault::live.load() == live);
  check();
}

TEST_CASE_TEMPLATE("fault: resident_weights packing out of memory", W, float, bf16, std::int8_t) {
  const index_t n = 700, k = 37;  // several panels and shares
  const auto w32 = rel::random_vector(std::size_t(n * k), 201);
  const auto x = rel::random_vector(std::size_t(k), 202);
  tstream::thread_team team(2);
  const resident_weights<W> built(matrix_view<const float>(w32.data(), n, k), 2);
  std::vector<float> expect(static_cast<std::size_t>(n));
  tstream::gemv(team, built, x, expect, tstream::vxm::identity{}, {precision::fast});
  auto check = [&] {
    std::vector<float> y(static_cast<std::size_t>(n));
    tstream::gemv(team, built, x, y, tstream::vxm::identity{}, {precision::fast});
    REQUIRE(rel::same_bits(y, expect));
  };
  every_failure_point([&] { resident_weights<W> w(matrix_view<const float>(w32.data(), n, k), 3); }, check);
  if constexpr (std::is_same_v<W, std::int8_t>) {
    const auto q = tstream::quantize_rows(matrix_view<const float>(w32.data(), n, k));
    every_failure_point([&] { (void)tstream::quantize_rows(matrix_view<const float>(w32.data(), n, k)); }, check);
    every_failure_point([&] { resident_weights<W> w(q.view(), q.scales(), 4); }, check);
  }
}

TEST_CASE_TEMPLATE("fault: kv_cache, decode_plan and attention_decode out of memory", T, float, bf16, std::int8_t) {
  const index_t kvh = 2, qh = 4, dim = 64, L = 1100;
  tstream::kv_cache<T> cache(kvh, dim, L);
  const auto kv = rel::random_vector(std::size_t(L * kvh * dim), 211);
  cache.append(matrix_view<const float>(kv.data(), L, kvh * dim), matrix_view<const float>(kv.data(), L, kvh * dim));
  const auto q = rel::random_vector(std::size_t(qh * dim), 212);
  tstream::thread_team team(2);
  for (precision mode : {precision::exact, precision::fast}) {
    tstream::decode_options o;
    o.mode = mode;
    tstream::decode_plan<T> plan(cache, qh, o);
    std::vector<float> expect(q.size());
    plan.run(team, q, expect);
    auto check = [&] {
      std::vector<float> out(q.size());
      plan.run(team, q, out);
      REQUIRE(rel::same_bits(out, expect));
      REQUIRE(cache.size() == L);
    };
    every_failure_point([&] { tstream::kv_cache<T> c(kvh, dim, 3000); }, check);
    every_failure_point([&] { tstream::decode_plan<T> p(cache, 2 * qh, o); }, check);
    // A one-shot call allocates its plan: on failure nothing is written.
    std::vector<float> out(q.size(), 42.f);
    every_failure_point(
        [&] {
          std::fill(out.begin(), out.end(), 42.f);
          tstream::attention_decode(team, cache, q, out, o);
        },
        [&] {
          if (!rel::untouched(out, 42.f)) REQUIRE(rel::same_bits(out, expect));
          check();
        });
  }
}

TEST_CASE("fault: gemv's first call on a thread (scratch allocation) out of memory writes nothing") {
  const index_t n = 50, k = 40;
  const auto w32 = rel::random_vector(std::size_t(n * k), 221);
  const auto x = rel::random_vector(std::size_t(k), 222);
  tstream::thread_team team(1);
  const resident_weights<bf16> wb(matrix_view<const float>(w32.data(), n, k));
  const resident_weights<std::int8_t> w8(matrix_view<const float>(w32.data(), n, k));
  std::vector<float> eb(static_cast<std::size_t>(n)), e8(static_cast<std::size_t>(n));
  tstream::gemv(team, wb, x, eb, tstream::vxm::identity{}, {precision::fast});
  tstream::gemv(team, w8, x, e8, tstream::vxm::identity{}, {precision::fast});
  bool threw = false, untouched = false, later_ok = false;
  // A fresh thread has no scratch yet: its first fast-mode call allocates it.
  std::thread t([&] {
    tstream::thread_team own(1);
    std::vector<float> y(static_cast<std::size_t>(n), 42.f);
    threw = fault::fails_at(0, [&] { tstream::gemv(own, wb, x, y, tstream::vxm::identity{}, {precision::fast}); });
    untouched = rel::untouched(y, 42.f);
    tstream::gemv(own, wb, x, y, tstream::vxm::identity{}, {precision::fast});
    later_ok = rel::same_bits(y, eb);
    tstream::gemv(own, w8, x, y, tstream::vxm::identity{}, {precision::fast});
    later_ok = later_ok && rel::same_bits(y, e8);
  });
  t.join();
  CHECK(threw);
  CHECK(untouched);
  CHECK(later_ok);
}

TEST_CASE_TEMPLATE("fault: gemm's first call on a thread (its members' scratch) out of memory writes nothing", W, float, bf16, std::int8_t) {
  // K over several K blocks (fp32: past kc_long; bf16 and int8: 3 and 2
  // micro-panels a member take the B-outer path, K blocks of kc), so members
  // keep partial sums between them; bf16 and int8 also convert rows of A.
  // All of it is sized by the caller before any member writes C.
  const index_t m = 40, n = 50, k = 6000;
  const auto a = rel::random_vector(std::size_t(m * k), 231);
  const auto b = rel::random_vector(std::size_t(k * n), 232);
  const tstream::gemm_weights<W> w(matrix_view<const float>(b.data(), k, n));
  const matrix_view<const float> A(a.data(), m, k);
  std::vector<float> expect(std::size_t(m * n));
  {
    tstream::thread_team team(2);
    tstream::gemm(team, A, w, matrix_view<float>(expect.data(), m, n));
  }
  // A fresh thread has no scratch yet: allocation `fail` of its first call fails (-1: none).
  const auto first_call = [&](long fail, bool& threw, bool& untouched, long& allocations) {
    std::thread t([&] {
      tstream::thread_team team(2);
      std::vector<float> c(std::size_t(m * n), 42.f);
      const auto call = [&] { tstream::gemm(team, A, w, matrix_view<float>(c.data(), m, n)); };
      if (fail < 0) {
        allocations = fault::allocations_of(call);
        untouched = rel::same_bits(c, expect);
      } else {
        threw = fault::fails_at(fail, call);
        untouched = rel::untouched(c, 42.f);
      }
    });
    t.join();
  };
  bool threw = false, ok = false;
  long count = 0;
  first_call(-1, threw, ok, count);
  REQUIRE(ok);
  REQUIRE(count > 0);
  for (long f = 0; f < count; ++f) {
    CAPTURE(f);
    const long live = fault::live.load();
    bool untouched = false;
    first_call(f, threw, untouched, count);
    CHECK(threw);
    CHECK(untouched);
    CHECK(fault::live.load() == live);  // nothing leaked: the scratch went with its thread
  }
}

TEST_CASE_TEMPLATE("fault: gemm_activations::assign out of memory keeps the previous contents", W, float, bf16, std::int8_t) {
  const index_t m = 40, n = 24, k = 300;
  const auto a = rel::random_vector(std::size_t(m * k), 241);
  const auto b = rel::random_vector(std::size_t(k * n), 242);
  const tstream::gemm_weights<W> w(matrix_view<const float>(b.data(), k, n));
  const matrix_view<const float> small(a.data(), 14, k), large(a.data(), m, k);
  tstream::thread_team team(2);
  std::vector<float> e_small(std::size_t(14 * n)), e_large(std::size_t(m * n));
  tstream::gemm(team, small, w, matrix_view<float>(e_small.data(), 14, n));
  tstream::gemm(team, large, w, matrix_view<float>(e_large.data(), m, n));
  tstream::thread_team one(1);
  for (long f = 0;; ++f) {
    CAPTURE(f);
    REQUIRE(f < 16);
    tstream::gemm_activations<W> p(one, small);  // one conversion region
    const bool threw = fault::fails_at(f, [&] { p.assign(team, large); });  // more rows, two members: everything grows
    const bool grew = !threw;
    const index_t rows = grew ? m : 14;
    REQUIRE(p.rows() == rows);
    std::vector<float> c(std::size_t(rows * n));
    tstream::gemm(team, p, w, matrix_view<float>(c.data(), rows, n));
    REQUIRE(rel::same_bits(c, grew ? e_large : e_small));
    if (grew) break;
  }
}

TEST_CASE("fault: thread_team construction out of memory throws and leaves no thread behind") {
  // BUG: thread_team's constructor starts workers one by one
  // (workers_.emplace_back); if starting worker m fails (std::bad_alloc for
  // the thread's state, or std::system_error from std::thread), the
  // exception leaves the constructor with workers 1..m-1 joinable and
  // running: ~std::thread calls std::terminate (and the running workers
  // still use the half-built team). Expected: the constructor stops and
  // joins the workers it started, then rethrows. Each failure point runs in
  // a child process, so the abort is reported as a failure, not a crash.
#if defined(__unix__)
  { tstream::thread_team warm(2); }  // the process's CPU list is read once, by the first team
  const long count = fault::allocations_of([] { tstream::thread_team t(4); });
  REQUIRE(count > 0);
  for (long n = 0; n < count; ++n) {
    CAPTURE(n);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      std::signal(SIGABRT, SIG_DFL);  // die quietly: the parent reports it
      const bool failed = fault::fails_at(n, [] { tstream::thread_team t(4); });
      _exit(failed ? 0 : 3);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));  // not killed by std::terminate's abort
    if (WIFEXITED(status)) CHECK(WEXITSTATUS(status) == 0);
  }
#endif
}
