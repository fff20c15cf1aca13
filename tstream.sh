#!/usr/bin/env bash
# tstream's one entry point for developers and CI.
#
#   ./tstream.sh demo    build and run the main example (machine summary + a stream)
#   ./tstream.sh test    build everything and run every test (what .ci/run calls)
#   ./tstream.sh bench [google-benchmark flags...]   build and run the benchmarks
#
# Each verb first installs what is missing (Debian/Ubuntu: apt-get, with sudo
# when not root); elsewhere it stops and names what to install.
set -euo pipefail
cd "$(dirname "$0")"

# Debian package names for the compiler, build tools and every library used.
packages=(g++ cmake make pkg-config libxsimd-dev xtl-dev libeigen3-dev doctest-dev libbenchmark-dev
          libopenblas-dev libdnnl-dev python3 python3-venv)

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

case "${1:-}" in
  demo)
    setup
    cmake --preset release >/dev/null
    cmake --build --preset release --target machine_summary -j "$jobs"
    ./build/release/examples/machine_summary
    ;;
  test)
    setup
    cmake --preset release
    cmake --build --preset release -j "$jobs"
    ctest --preset release -j "$jobs"
    ;;
  bench)
    setup
    shift
    cmake --preset release >/dev/null
    cmake --build --preset release --target tstream_bench -j "$jobs"
    ./build/release/benchmarks/tstream_bench "$@"
    ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
