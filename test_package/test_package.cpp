// Streams y = 2 x + b through the packaged tstream and checks it.
#include <cmath>
#include <cstdio>
#include <vector>

#include <tstream/tstream.hpp>

int main() {
  const std::size_t n = 1000;
  std::vector<float> x(n), b(n), y(n);
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = 0.5f * float(i % 31) - 7.0f;
    b[i] = 0.25f * float(i % 7);
  }
  (tstream::mem::read(x) | tstream::vxm::scale(2.0f) | tstream::vxm::add(tstream::mem::read(b)) | tstream::mem::write(y)).run();
  for (std::size_t i = 0; i < n; ++i) {
    const float want = 2.0f * x[i] + b[i];
    if (std::fabs(y[i] - want) > 1e-6f * (1.0f + std::fabs(want))) {
      std::fprintf(stderr, "y[%zu] = %g, want %g\n", i, double(y[i]), double(want));
      return 1;
    }
  }
  std::printf("tstream %s: test_package OK\n", tstream::version_string);
  return 0;
}
