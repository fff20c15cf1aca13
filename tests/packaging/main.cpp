// The program every packaging consumer builds (find_package, add_subdirectory,
// FetchContent, pkg-config, Conan): it streams y = 2 x + b through tstream,
// runs a GEMV on resident weights with two threads, and checks both against
// plain loops. Exit status 0 iff every element matches.
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
  // GEMV: z = W x for a 321 x 1000 matrix (a partial panel), two threads.
  const std::size_t rows = 321;
  std::vector<float> w(rows * n), z(rows);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(int(i % 17) - 8) * 0.125f;
  tstream::thread_team team(2);
  const tstream::resident_weights<float> W(tstream::matrix_view<const float>(w.data(), rows, n), team.size());
  tstream::gemv(team, W, x, z);
  for (std::size_t i = 0; i < rows; ++i) {
    double want = 0;
    for (std::size_t k = 0; k < n; ++k) want += double(w[i * n + k]) * x[k];
    if (!(std::fabs(z[i] - want) <= 1e-4 * (1.0 + std::fabs(want)))) {
      if (bad++ < 5) std::fprintf(stderr, "z[%zu] = %g, want %g\n", i, double(z[i]), want);
    }
  }
  std::printf("tstream %s: stream y = 2x + b and GEMV 321 x 1000, %zu mismatches\n", tstream::version_string, bad);
  return bad == 0 ? 0 : 1;
}
