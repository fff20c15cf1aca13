#!/usr/bin/env bash
# tstream's one entry point for developers and CI.
#
#   ./tstream.sh demo    build and run the main example (machine summary + a stream)
#   ./tstream.sh test    build everything and run every test; again under ASan+UBSan and
#                        (threaded tests) TSan; fuzz each libFuzzer target (what .ci/run calls)
#   ./tstream.sh bench [google-benchmark flags...]   build and run the benchmarks
#
# Each verb first installs what is missing (Debian/Ubuntu: apt-get, with sudo
# when not root); elsewhere it stops and names what to install.
set -euo pipefail
cd "$(dirname "$0")"

# Debian package names for the compiler, build tools and every library used.
packages=(g++ cmake make pkg-config libxsimd-dev xtl-dev libeigen3-dev doctest-dev libbenchmark-dev
          libopenblas-dev libdnnl-dev python3 python3-venv)
# `test` also needs clang and its libFuzzer / sanitizer runtimes (the fuzzers).
test_packages=(clang-14 libclang-rt-14-dev)

missing_packages() {
  local p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

setup() {
  if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    for tool in g++ cmake make; do
      command -v "$tool" >/dev/null 2>&1 || { echo "tstream: '$tool' is missing. Install a C++20 compiler, CMake >= 3.21, xsimd >= 8, Eigen 3.4, doctest and Google Benchmark (OpenBLAS and oneDNN optional), then rerun." >&2; exit 1; }
    done
    return 0  # not Debian: trust CMake to find the rest, or to say what it misses
  fi
  local miss
  miss=$(missing_packages)
  [ -z "$miss" ] && return 0
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "tstream: missing packages: $miss; run as root or install them." >&2; exit 1; }
    sudo="sudo"
  fi
  echo "tstream: installing $(echo $miss | tr '\n' ' ')"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  $sudo apt-get install -y -qq --no-install-recommends $miss >/dev/null
}

jobs=$(nproc 2>/dev/null || echo 2)

# Configures, builds and tests one preset (CMakePresets.json).
build_and_test() {
  cmake --preset "$1" >/dev/null
  cmake --build --preset "$1" -j "$jobs"
  ctest --preset "$1" -j "$jobs"
}

# Fuzzes every target built in build/fuzz for $1 seconds, all at once (each
# gets its own working corpus, seeded from fuzz/corpus/<name>; crash inputs
# go to build/fuzz/artifacts). Prints executions per target; fails on a crash.
run_fuzzers() {
  local seconds=$1 dir=build/fuzz name pids=() names=() failed=0 i
  mkdir -p "$dir/artifacts"
  for name in $(cat "$dir/fuzz/fuzzers.txt" | tr ';' ' '); do
    mkdir -p "$dir/corpus/$name"
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$dir/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=30 \
      -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix="$dir/artifacts/$name-" \
      "$dir/corpus/$name" "fuzz/corpus/$name" >"$dir/fuzz_$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
  done
  for name in gemv gemm attention stream; do
    grep -qw "$name" "$dir/fuzz/fuzzers.txt" || echo "fuzz_$name: NOT BUILT with this compiler (see the CMake warning above)" >&2
  done
  for i in "${!pids[@]}"; do
    name=${names[$i]}
    if wait "${pids[$i]}"; then
      echo "fuzz_$name: $(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz_$name.log") executions in ${seconds} s, no crash"
    else
      failed=1
      echo "fuzz_$name: CRASHED; the input is in $dir/artifacts; log: $dir/fuzz_$name.log" >&2
      grep -E 'tstream fuzz:|ERROR|runtime error|SUMMARY' "$dir/fuzz_$name.log" | head -20 >&2
    fi
  done
  return "$failed"
}

case "${1:-}" in
  demo)
    setup
    cmake --preset release >/dev/null
    cmake --build --preset release --target machine_summary -j "$jobs"
    ./build/release/examples/machine_summary
    ;;
  test)
    # 1. Release: build everything, run every test. 1b. On an AVX-512 machine,
    # the tests again built for AVX2 only (the portable paths). 2. ASan + UBSan: every
    # test but packaging. 3. TSan: the threaded tests. 4. libFuzzer: build
    # the fuzzers with clang, replay their seed corpora, fuzz each for
    # TSTREAM_FUZZ_SECONDS (default 40). Any sanitizer report, test failure
    # or fuzzer crash fails the run. Sanitizer logs: build/{asan,tsan}/Testing.
    packages+=("${test_packages[@]}")
    setup
    started=$SECONDS
    step() { echo; echo "==== tstream test: $* ($((SECONDS - started)) s so far)"; }
    step "release build and tests"
    build_and_test release
    if grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
      step "portable paths: tests built for AVX2 (8-lane registers, no AVX-512 dot products)"
      build_and_test avx2
    fi
    step "AddressSanitizer + UndefinedBehaviorSanitizer"
    build_and_test asan
    step "ThreadSanitizer (threaded tests)"
    build_and_test tsan
    step "libFuzzer"
    build_and_test fuzz
    run_fuzzers "${TSTREAM_FUZZ_SECONDS:-40}"
    step "all passed"
    ;;
  bench)
    setup
    shift
    cmake --preset release >/dev/null
    cmake --build --preset release --target tstream_bench -j "$jobs"
    ./build/release/benchmarks/tstream_bench "$@"
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
