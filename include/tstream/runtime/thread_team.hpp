// A persistent team of worker threads: the "chips" of a multi-chip TSP.
//
// Why our own pool and not OpenMP: the team is created once and replayed for
// every call (a static schedule: member i always runs share i), its workers
// are pinned so a member's weight share stays in that core's caches, and the
// hand-off is one store that spinning workers see within nanoseconds: the
// job and its epoch share one cache line written only by the caller, and
// each worker reports on a line of its own (against a shared countdown
// that the caller also wrote: 145 -> 92 ns per empty 2-thread call).
// run_copy(f) also puts a small job captured by value in that slot, so a
// worker's first transfer brings the whole job.
// BM_dispatch in benchmarks/ measures the empty-call overhead against an
// OpenMP parallel region in the same binary.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

#include "tstream/arch/simd.hpp"
#include "tstream/core/error.hpp"

namespace tstream {

/// Options for a thread_team.
struct team_options {
  /// Pin worker i to the i-th CPU this process may run on (Linux; ignored
  /// elsewhere or when the team is larger than the CPUs available). The CPUs
  /// are those the creating thread was allowed when the process made its
  /// first team, so a team made on a thread another team has pinned (with
  /// pin_caller) still spreads over all of them.
  bool pin_workers = true;
  /// Also pin the calling thread (member 0) to the first allowed CPU. Off by
  /// default: it changes the affinity of a thread tstream does not own.
  bool pin_caller = false;
  /// Pause iterations a worker polls for new work before it sleeps (and the
  /// caller polls for completion). Spinning is what makes the hand-off cheap;
  /// a team larger than the CPUs teams may use (see pin_workers) never spins.
  int spin_iterations = 1 << 16;
};

/// A fixed team of `size()` members: the calling thread is member 0 and
/// size() - 1 persistent workers are the others. run(f) calls f(member)
/// once on every member and returns when all are done.
///
/// One run() at a time per team: concurrent calls from different threads are
/// serialised; calling run() from inside f throws tstream::error.
class thread_team {
 public:
  /// Starts threads - 1 workers. threads must be in [1, 1024].
  explicit thread_team(int threads = 1, team_options opt = {}) : size_(threads), opt_(opt) {
    detail::require(threads >= 1 && threads <= 1024, "thread_team", "threads = ", threads,
                    " is outside [1, 1024]");
    cpus_ = process_cpus();
    // Oversubscribed: never spin. The CPUs are those teams may use (the
    // affinity mask when the first team was made: a taskset or cpuset
    // narrows it), else all online ones.
    const std::size_t available = !cpus_.empty() ? cpus_.size() : std::size_t(std::thread::hardware_concurrency());
    if (available != 0 && std::size_t(threads) > available) opt_.spin_iterations = 0;
    done_ = std::make_unique<done_slot[]>(std::size_t(threads));
    const bool can_pin = !cpus_.empty() && std::size_t(threads) <= cpus_.size();
    if (can_pin && opt_.pin_caller) pin_this_thread(0);
    try {
      workers_.reserve(std::size_t(threads - 1));
      for (int m = 1; m < threads; ++m) {
        workers_.emplace_back([this, m, pin = can_pin && opt_.pin_workers] {
          if (pin) pin_this_thread(std::size_t(m));
          worker_loop(m);
        });
      }
    } catch (...) {
      stop_workers();  // the workers already started: stop and join them, then report
      throw;
    }
  }
  thread_team(const thread_team&) = delete;
  thread_team& operator=(const thread_team&) = delete;
  ~thread_team() { stop_workers(); }

  /// Members in the team, the caller included.
  [[nodiscard]] int size() const noexcept { return size_; }

  /// Runs f(member) for member = 0 .. size() - 1, member 0 on the calling
  /// thread, and waits for all. Every member calls f itself (by reference).
  /// The first exception thrown by any member is rethrown here after every
  /// member has finished.
  template <class F>
  void run(F&& f) {
    run_impl<false>(f);
  }

  /// As run(f), for a job that only reads what it captured (a lambda
  /// capturing by value, say): f is called as const, and the workers may
  /// call a copy of it. A trivially copyable f of at most 104 bytes travels
  /// in the slot that carries the call to the workers, so each finds the
  /// whole job in one cache-line transfer instead of fetching it from the
  /// caller's stack after that (two threads: a lambda reading three values
  /// it captured costs what an empty call does, ~100 ns here, against
  /// ~140 through run and ~200 captured by reference). Anything else runs as
  /// with run(f).
  template <class F>
    requires std::is_invocable_v<const F&, int>
  void run_copy(const F& f) {
    run_impl<true>(f);
  }

 private:
  template <bool Copy, class F>
  void run_impl(F& f) {
    detail::require(!inside_run(), "thread_team::run", "called from inside a running team job (nesting is not supported)");
    std::lock_guard<std::mutex> lock(run_mutex_);
    if (size_ == 1) { call_guarded(f, 0); rethrow(); return; }
    using Fn = std::remove_cv_t<F>;
    if constexpr (Copy && travels_in_slot<Fn>) {
      job_.ctx = ::new (static_cast<void*>(job_.local)) Fn(f);
      job_.fn = [](void* ctx, int m) { (*static_cast<const Fn*>(ctx))(m); };
    } else {
      job_.fn = [](void* ctx, int m) { (*static_cast<F*>(ctx))(m); };
      job_.ctx = const_cast<void*>(static_cast<const void*>(&f));
    }
    const std::uint32_t e = job_.epoch.load(std::memory_order_relaxed) + 1;
    job_.epoch.store(e, std::memory_order_release);  // publishes fn, ctx and the copy
    job_.epoch.notify_all();                         // a system call only if a worker sleeps
    call_guarded(f, 0);  // the caller its own f (calling the copy: 512 x 512 GEMV on two threads 3% slower)
    int spins = 0;
    for (int m = 1; m < size_; ++m) {
      for (std::uint32_t d; (d = done_[std::size_t(m)].epoch.load(std::memory_order_acquire)) != e;) {
        if (spins < opt_.spin_iterations) ++spins, arch::cpu_relax();
        else done_[std::size_t(m)].epoch.wait(d, std::memory_order_acquire);
      }
    }
    rethrow();
  }

  void stop_workers() noexcept {
    job_.stop = true;  // published by the epoch store below
    job_.epoch.store(job_.epoch.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    job_.epoch.notify_all();
    for (auto& w : workers_) w.join();
  }

  static bool& inside_run() noexcept {
    thread_local bool inside = false;
    return inside;
  }

  // Bytes of a job copied into the slot (with fn, ctx and the epoch: two
  // cache lines).
  static constexpr std::size_t slot_bytes = 104;

  // run_copy jobs copied into the slot: a bitwise copy, which the copy
  // constructor of a trivially copyable type makes, fits and is aligned.
  template <class Fn>
  static constexpr bool travels_in_slot = std::is_trivially_copyable_v<Fn> && std::is_copy_constructible_v<Fn> &&
                                          std::is_trivially_destructible_v<Fn> && sizeof(Fn) <= slot_bytes &&
                                          alignof(Fn) <= alignof(void*);

  template <class F>
  void call_guarded(F& f, int m) noexcept {
    inside_run() = true;
    try {
      f(m);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    inside_run() = false;
  }

  void rethrow() {
    if (error_) {
      std::exception_ptr e = std::exchange(error_, nullptr);
      std::rethrow_exception(e);
    }
  }

  void worker_loop(int m) {
    std::uint32_t seen = 0;
    for (;;) {
      std::uint32_t e = job_.epoch.load(std::memory_order_acquire);
      for (int i = 0; e == seen && i < opt_.spin_iterations; ++i) {
        arch::cpu_relax();
        e = job_.epoch.load(std::memory_order_acquire);
      }
      while (e == seen) {
        job_.epoch.wait(seen, std::memory_order_acquire);
        e = job_.epoch.load(std::memory_order_acquire);
      }
      seen = e;
      if (job_.stop) return;
      auto job = job_.fn;
      void* ctx = job_.ctx;
      inside_run() = true;
      try {
        job(ctx, m);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      inside_run() = false;
      done_[std::size_t(m)].epoch.store(e, std::memory_order_release);
      done_[std::size_t(m)].epoch.notify_one();
    }
  }

  // The allowed CPUs as first seen: a thread pinned by pin_caller sees only
  // its own CPU, and new threads inherit that mask.
  static const std::vector<int>& process_cpus() {
    static const std::vector<int> cpus = allowed_cpus();
    return cpus;
  }

  static std::vector<int> allowed_cpus() {
    std::vector<int> cpus;
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
      for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) cpus.push_back(c);
#endif
    return cpus;
  }

  void pin_this_thread(std::size_t member) const noexcept {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus_[member % cpus_.size()], &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // best effort
#else
    (void)member;
#endif
  }

  int size_;
  team_options opt_;
  std::vector<int> cpus_;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_, error_mutex_;
  std::exception_ptr error_;
  // Written by the caller only; fn, ctx, stop and the job's copy are
  // published by the release store of epoch (32 bits: libstdc++ waits on it
  // directly, where a 64-bit atomic's notify adds a locked increment on a
  // shared table).
  struct alignas(64) job_slot {
    std::atomic<std::uint32_t> epoch{0};
    bool stop = false;
    void (*fn)(void*, int) = nullptr;
    void* ctx = nullptr;
    alignas(void*) unsigned char local[slot_bytes];
  };
  static_assert(sizeof(job_slot) == 128, "the job slot is two cache lines");
  // Written by one worker only: the last epoch it finished (indexed by
  // member; slot 0, the caller, is unused).
  struct alignas(64) done_slot {
    std::atomic<std::uint32_t> epoch{0};
  };
  job_slot job_;
  std::unique_ptr<done_slot[]> done_;
};

}  // namespace tstream
