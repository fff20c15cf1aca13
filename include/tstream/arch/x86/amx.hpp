// AMX, the CPU's own matrix unit (Intel Sapphire Rapids and later): eight
// tile registers of 16 rows x 64 bytes and a tile dot product, the closest
// thing on a CPU to the TSP's MXM. The GEMM uses it for bf16 and int8 where
// the build may emit it (-mamx-tile -mamx-bf16 -mamx-int8, which
// -march=native gives on such a CPU) and the CPU and OS allow it.
//
// One micro-kernel: a 32 x 32 block of C in four accumulator tiles (two A
// tiles of 16 rows, two B tiles of 16 columns), over k-steps of 16 k-groups
// (32 bf16 or 64 int8 values of k). B is read straight from gemm_weights'
// panels (per k-group 32 columns x one 32-bit word: a B tile is 16 k-groups
// x 16 columns, 128 bytes apart); A from row-major rows of 32-bit words.
//
// Arithmetic:
//   int8  tdpbusd: u8 x s8 quads summed exactly in int32, so the same bits
//         as vpdpbusd.
//   bf16  tdpbf16ps: bf16 pairs into fp32 in an order and with internal
//         roundings Intel does not specify (measured on one Xeon: neither
//         even- nor odd-first fused steps, nor the exact pair or tile sums,
//         reproduce it). Each element is still one function of its row of A,
//         its column of B and k-steps in order, so row i of C stays the same
//         for every M, thread count and packing on a given CPU; against a
//         double reference it meets the same bound as vdpbf16ps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "tstream/arch/cpu.hpp"

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AMX_INT8__) && defined(__AVX512F__) && \
    defined(__linux__)
#define TSTREAM_HAVE_AMX 1
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define TSTREAM_HAVE_AMX 0
#endif

namespace tstream::arch {

/// True when this build may emit AMX instructions (and the GEMM compiles its
/// AMX path).
inline constexpr bool amx_compiled = TSTREAM_HAVE_AMX == 1;

/// True when the AMX path runs here: built for it, the CPU has AMX-TILE,
/// AMX-BF16 and AMX-INT8, the OS saves the tile state (XCR0 bits 17, 18),
/// Linux granted this process the tile data (arch_prctl
/// ARCH_REQ_XCOMP_PERM, asked once), and the environment variable
/// TSTREAM_NO_AMX is unset or "0" (set it to compare with the AVX-512 path).
[[nodiscard]] inline bool amx_ready() {
#if TSTREAM_HAVE_AMX
  static const bool ready = [] {
    if (const char* off = std::getenv("TSTREAM_NO_AMX"); off && !(off[0] == '0' && off[1] == 0)) return false;
    if (detail::cpuid(0).a < 7) return false;
    const unsigned d = detail::cpuid(7, 0).d;
    const bool cpu = ((d >> 24) & 1) && ((d >> 22) & 1) && ((d >> 25) & 1);  // AMX-TILE, AMX-BF16, AMX-INT8
    const bool osxsave = (detail::cpuid(1).c >> 27) & 1;
    if (!cpu || !osxsave || ((detail::xgetbv0() >> 17) & 3) != 3) return false;
    constexpr long req_xcomp_perm = 0x1023, xtiledata = 18;
    return syscall(SYS_arch_prctl, req_xcomp_perm, xtiledata) == 0;
  }();
  return ready;
#else
  return false;
#endif
}

#if TSTREAM_HAVE_AMX
/// Loads the tile shapes the micro-kernel uses into this thread's tile
/// configuration: tmm0-3 the 16 x 16 accumulators, tmm4-5 A (16 rows x 64
/// bytes), tmm6-7 B (16 k-groups x 64 bytes). Call on the thread that runs
/// amx_block, before it; amx_release after.
inline void amx_configure() noexcept {
  struct alignas(64) config {
    std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
    std::uint16_t colsb[16] = {};
    std::uint8_t rows[16] = {};
  } c;
  for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
  _tile_loadconfig(&c);
}

/// Frees this thread's tile state (so the OS need not save it).
inline void amx_release() noexcept { _tile_release(); }

/// acc (32 x 32 values, fp32 for bf16 or int32 for int8, rows 128 bytes
/// apart) = (first ? 0 : acc) + A B over `steps` k-steps of 16 k-groups:
///   a: A's 32 rows at the first k-group, rows lda bytes apart, 32-bit words
///   b: the B panel at the first k-group (32 columns x one word per group)
///   b_tail: if non-null, one more k-step read from here instead (16 groups
///     x 128 bytes, zero past the panel's last group), A read on as before
/// Int8: A u8, B s8 (tdpbusd); bf16: pairs (tdpbf16ps).
template <bool Int8>
inline void amx_block(const void* a, std::size_t lda, const void* b, std::size_t steps, const void* b_tail, void* acc,
                      bool first) noexcept {
  constexpr std::size_t ldb = 128, ldc = 128, step_b = 16 * ldb;
  char* c = static_cast<char*>(acc);
  if (first) {
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
  } else {
    _tile_loadd(0, c, ldc); _tile_loadd(1, c + 64, ldc);
    _tile_loadd(2, c + 16 * ldc, ldc); _tile_loadd(3, c + 16 * ldc + 64, ldc);
  }
  const char* pa = static_cast<const char*>(a);
  const char* pb = static_cast<const char*>(b);
  const std::size_t n = steps + (b_tail ? 1 : 0);
  for (std::size_t s = 0; s < n; ++s, pa += 64) {
    const char* bs = s < steps ? pb + s * step_b : static_cast<const char*>(b_tail);
    _tile_loadd(4, pa, lda);
    _tile_loadd(5, pa + 16 * lda, lda);
    _tile_loadd(6, bs, ldb);
    _tile_loadd(7, bs + 64, ldb);
    if constexpr (Int8) {
      _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7); _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
    } else {
      _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, ldc); _tile_stored(1, c + 64, ldc);
  _tile_stored(2, c + 16 * ldc, ldc); _tile_stored(3, c + 16 * ldc + 64, ldc);
}
#else
// Builds without AMX: never called (amx_ready() is false), present so the
// GEMM's AMX path compiles everywhere without an ISA #if of its own.
inline void amx_configure() noexcept {}
inline void amx_release() noexcept {}
template <bool Int8>
inline void amx_block(const void*, std::size_t, const void*, std::size_t, const void*, void*, bool) noexcept {}
#endif

}  // namespace tstream::arch
