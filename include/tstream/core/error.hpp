// The one exception type tstream throws, and the checks that raise it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tstream {

/// Thrown for every bad input: the message names the function, the argument
/// and the offending values, e.g.
///   "tstream::gemv: x has 4095 elements, W has K = 4096".
/// tstream checks every argument before it writes anything, so when this is
/// thrown the caller's output buffers are untouched.
class error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {

/// Builds "tstream::<fn>: <parts...>" and throws tstream::error.
template <class... Parts>
[[noreturn]] void fail(const char* fn, Parts&&... parts) {
  std::ostringstream os;
  os << "tstream::" << fn << ": ";
  (os << ... << std::forward<Parts>(parts));
  throw error(os.str());
}

/// Throws unless cond holds; the message is built only on failure.
template <class... Parts>
inline void require(bool cond, const char* fn, Parts&&... parts) {
  if (!cond) [[unlikely]] fail(fn, std::forward<Parts>(parts)...);
}

/// a * b for sizes, or tstream::error naming `what` when it overflows.
inline std::size_t checked_mul(std::size_t a, std::size_t b, const char* fn, const char* what) {
  require(b == 0 || a <= SIZE_MAX / b, fn, what, " is too large (", a, " x ", b, " overflows)");
  return a * b;
}

}  // namespace detail
}  // namespace tstream
