#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tstream/core/view.hpp"

using tstream::index_t;
using tstream::matrix_view;

TEST_CASE("matrix_view: indexing follows the leading dimension") {
  std::vector<float> buf(4 * 6);
  for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = float(i);
  matrix_view<float> m(buf.data(), 4, 5, 6);
  CHECK(m.rows() == 4);
  CHECK(m.cols() == 5);
  CHECK(m(2, 3) == 2 * 6 + 3);
  CHECK(m.row(3)[4] == 3 * 6 + 4);
  CHECK(m.row(1).size() == 5);
  matrix_view<const float> c = m;  // read-only view of a mutable one
  CHECK(c(1, 1) == 7);
  CHECK_FALSE(m.empty());
  CHECK(matrix_view<float>(nullptr, 0, 5).empty());
}

TEST_CASE("matrix_view: bad shapes throw tstream::error naming the argument") {
  std::vector<float> buf(16);
  auto message = [](auto&& make) {
    try {
      make();
    } catch (const tstream::error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK(message([&] { matrix_view<float>(buf.data(), 2, 4, 3); }) ==
        "tstream::matrix_view: ld = 3 is smaller than cols = 4");
  CHECK(message([&] { matrix_view<float>(buf.data(), -1, 4); }) == "tstream::matrix_view: rows = -1 is negative");
  CHECK(message([&] { matrix_view<float>(buf.data(), 2, -4); }) == "tstream::matrix_view: cols = -4 is negative");
  CHECK(message([&] { matrix_view<float>(nullptr, 2, 4); }) == "tstream::matrix_view: data is null for a 2 x 4 matrix");
  CHECK_NOTHROW(matrix_view<float>(nullptr, 0, 4));
  CHECK_THROWS_AS(matrix_view<float>(nullptr, 3, 3), std::invalid_argument);  // error is an invalid_argument
}
