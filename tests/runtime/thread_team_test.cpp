#include <doctest/doctest.h>

#include <array>
#include <atomic>
#if defined(__linux__)
#include <sched.h>
#endif
#include <stdexcept>
#include <vector>

#include "tstream/runtime/thread_team.hpp"

TEST_CASE("thread_team: every member runs exactly once per call, repeatedly") {
  for (int t : {1, 2, 3, 4, 7}) {
    CAPTURE(t);
    tstream::thread_team team(t);
    CHECK(team.size() == t);
    std::vector<int> hits(std::size_t(t), 0);
    for (int rep = 0; rep < 200; ++rep) team.run([&](int m) { hits[std::size_t(m)] += 1; });
    for (int h : hits) CHECK(h == 200);
  }
}

TEST_CASE("thread_team: run_copy jobs see this call's values, whatever their size and type") {
  // Small trivially copyable jobs travel in the team's slot (a copy per
  // call); larger, over-aligned, move-only and not trivially copyable ones
  // are called where they are. Either way every member must see the values
  // of this call.
  struct move_only {  // trivially copyable, but not copy constructible
    long* out;
    long call;
    move_only(long* o, long c) : out(o), call(c) {}
    move_only(const move_only&) = delete;
    move_only(move_only&&) = default;
    void operator()(int m) const { out[m] = call * 10 + m; }
  };
  struct alignas(32) over_aligned {
    long* out;
    long call;
    void operator()(int m) const { out[m] = call * 10 + m; }
  };
  for (int t : {1, 2, 3, 7}) {
    CAPTURE(t);
    tstream::thread_team team(t);
    std::vector<long> small(static_cast<std::size_t>(t)), large(small), owning(small), moved(small), aligned(small);
    for (long call = 1; call <= 100; ++call) {
      long* out = small.data();
      team.run_copy([out, call](int m) { out[m] = call * 10 + m; });  // 16 bytes: in the slot
      std::array<long, 32> big{};  // 256 bytes: too large for the slot
      big.fill(call);
      long* out_l = large.data();
      team.run_copy([out_l, big](int m) { out_l[m] = big[std::size_t(m)] * 10 + m; });
      const std::vector<long> v(std::size_t(t), call);  // not trivially copyable
      long* out_o = owning.data();
      team.run_copy([out_o, v](int m) { out_o[m] = v[std::size_t(m)] * 10 + m; });
      team.run_copy(move_only(moved.data(), call));
      team.run_copy(over_aligned{aligned.data(), call});
      for (int m = 0; m < t; ++m)
        for (const auto* got : {&small, &large, &owning, &moved, &aligned}) REQUIRE((*got)[std::size_t(m)] == call * 10 + m);
    }
  }
}

TEST_CASE("thread_team: run calls the caller's own functor on every member") {
  // Members writing a functor's mutable state: each write must land in the
  // object the caller passed (run never copies).
  struct collect {
    mutable long out[8] = {};
    void operator()(int m) const { out[m] = 100 + m; }
  };
  tstream::thread_team team(3);
  collect f;
  team.run(f);
  for (int m = 0; m < 3; ++m) CHECK(f.out[m] == 100 + m);
  // A mutable lambda, called through run, keeps its state across calls.
  int calls = 0;
  auto count = [&calls, seen = 0](int m) mutable { if (m == 0) calls = ++seen; };
  for (int i = 0; i < 5; ++i) team.run(count);
  CHECK(calls == 5);
}

TEST_CASE("thread_team: a member's exception reaches the caller after all finish") {
  tstream::thread_team team(3);
  std::atomic<int> ran{0};
  CHECK_THROWS_WITH_AS(team.run([&](int m) {
    ran.fetch_add(1);
    if (m == 2) throw std::runtime_error("member 2 failed");
  }),
                       "member 2 failed", std::runtime_error);
  CHECK(ran.load() == 3);
  // The team is still usable.
  team.run([&](int) { ran.fetch_add(1); });
  CHECK(ran.load() == 6);
  // The same through the slot: a copied job that throws, then another type.
  std::atomic<int>* counter = &ran;
  CHECK_THROWS_WITH_AS(team.run_copy([counter](int m) {
    counter->fetch_add(1);
    if (m == 1) throw std::runtime_error("copied job failed");
  }),
                       "copied job failed", std::runtime_error);
  CHECK(ran.load() == 9);
  const int add = 10;
  team.run_copy([counter, add](int) { counter->fetch_add(add); });
  CHECK(ran.load() == 39);
}

TEST_CASE("thread_team: bad sizes and nested runs are errors") {
  CHECK_THROWS_WITH_AS(tstream::thread_team(0), "tstream::thread_team: threads = 0 is outside [1, 1024]", tstream::error);
  CHECK_THROWS_AS(tstream::thread_team(-3), tstream::error);
  tstream::thread_team team(2);
  CHECK_THROWS_AS(team.run([&](int) { team.run([](int) {}); }), tstream::error);
}

TEST_CASE("thread_team: two teams used from two user threads do not interfere") {
  tstream::thread_team a(2), b(2);
  std::atomic<long> sa{0}, sb{0};
  std::thread ta([&] { for (int i = 0; i < 300; ++i) a.run([&](int m) { sa += m + 1; }); });
  std::thread tb([&] { for (int i = 0; i < 300; ++i) b.run([&](int m) { sb += m + 1; }); });
  ta.join();
  tb.join();
  CHECK(sa.load() == 300 * 3);
  CHECK(sb.load() == 300 * 3);
}

#if defined(__linux__)
TEST_CASE("thread_team: a team made on a thread another team pinned still spreads over the CPUs") {
  cpu_set_t mine;
  CPU_ZERO(&mine);
  REQUIRE(sched_getaffinity(0, sizeof(mine), &mine) == 0);
  if (CPU_COUNT(&mine) < 2) return;  // nothing to spread over
  {
    tstream::thread_team outer(2, tstream::team_options{.pin_caller = true});  // pins this thread to one CPU
    tstream::thread_team inner(2);
    std::atomic<int> cpu[2] = {-1, -1};
    // Each member reports its CPU; pinned members cannot migrate, so two
    // different CPUs mean the inner team was not squeezed onto the caller's.
    inner.run([&](int m) { cpu[m] = sched_getcpu(); });
    CHECK(cpu[0] != cpu[1]);
  }
  // Restore this thread's affinity for the other tests.
  REQUIRE(sched_setaffinity(0, sizeof(mine), &mine) == 0);
}
#endif
