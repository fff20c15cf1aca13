// The program every packaging consumer builds (find_package, add_subdirectory,
// FetchContent, pkg-config, Conan): it streams y = 2 x + b through tstream
// and checks y against a plain loop. Exit status 0 iff every element matches.
#include <cmath>
#include <cstdio>
#include <vector>

#include <tstream/tstream.hpp>

int main() {
  // 1000 elements: three full 320-lane vectors and a masked tail of 40.
  const std::size_t n = 1000;
  std::vector<float> x(n), b(n), y(n, -1.0f);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = 0.25f * float(i % 97) - 3.0f;
    b[i] = 1.0f - 0.5f * float(i % 13);
  }

  (tstream::mem::read(x) | tstream::vxm::scale(2.0f) | tstream::vxm::add(tstream::mem::read(b)) | tstream::mem::write(y)).run();

  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const float want = 2.0f * x[i] + b[i];
    if (!(std::fabs(y[i] - want) <= 1e-6f * (1.0f + std::fabs(want)))) {
      if (bad++ < 5) std::fprintf(stderr, "y[%zu] = %g, want %g\n", i, double(y[i]), double(want));
    }
  }
  std::printf("tstream %s: y = 2x + b over %zu elements, %zu mismatches\n", tstream::version_string, n, bad);
  return bad == 0 ? 0 : 1;
}
