// The GEMM plan's block sizes (BLIS's KC, MC, NC) from the detected caches,
// and the static split of C over a thread_team.
//
// Blocks only decide what stays in which cache: partial sums are stored in
// fp32 (int32 for int8) between K blocks, which is exact, so no block size
// and no split changes a single bit of C.
#pragma once

#include <algorithm>
#include <cstddef>

#include "tstream/arch/cache.hpp"
#include "tstream/arch/cpu.hpp"
#include "tstream/arch/x86/gemm_microkernels.hpp"
#include "tstream/core/config.hpp"

namespace tstream {

/// Block sizes of a GEMM, in k-groups (kc), rows (mc) and columns (nc).
/// One k-group of a B micro-panel is NR 32-bit lanes whatever the type, and
/// one k-group of an A row is one 32-bit word, so one set of sizes serves
/// fp32, bf16 and int8.
struct gemm_blocking {
  index_t kc = 0;  ///< k-groups per K block: the B micro-panel (kc x NR) stays in L2 across an MC block
  index_t mc = 0;  ///< rows per M block (multiple of MR): the packed A block (mc x kc) stays in L2 across NC
  index_t nc = 0;  ///< columns per N block (multiple of NR): the partial sums (mc x nc) stay in L2
  /// k-groups per K block when each A micro-panel serves a whole N block
  /// (more than a few micro-panels of A): only that micro-panel (MR x
  /// kc_long) stays in L2, B streams from L3, so K is cut as little as
  /// possible (fewer partial-sum round trips).
  index_t kc_long = 0;
};

/// Sizes for a core with the given caches: half of L2 for the A block, a
/// quarter for the partial sums, an eighth for a B micro-panel, a quarter
/// for a long A micro-panel (on a 1 MiB L2: kc 1024, mc 126, nc 512,
/// kc_long 4672; measured best of the sizes tried at 1024^3, 2048^3 and
/// 32 x 4096 x 4096 on Zen 4; kc_long 2048 against 1024 at 2048^3: 0.93 ->
/// 0.94).
/// On Intel, K is cut shorter: kc 256 and kc_long at most 1024 (measured on
/// one Xeon only, a 2-vCPU VM with AMX and a 2 MiB L2; other Intel cores
/// take the same sizes untested — tune here per CPU family. One thread, in-process against the L2-derived kc 1024 / kc_long
/// 9344: 2048^3 141 -> 160 GFLOP/s, 512 x 4096 x 4096 131 -> 167,
/// 128 x 4096 x 4096 105 -> 148, 32 x 4096 x 4096 128 -> 142, 1024^3
/// 155 -> 162; 512^3 182 -> 176, 256^3 and 8 x 4096 x 4096 even; two
/// threads 2048^3 305 -> 326, 512 x 4096 x 4096 259 -> 344).
[[nodiscard]] inline gemm_blocking plan_blocking(const arch::cache_info& c = arch::caches(),
                                                 arch::cpu_vendor vendor = arch::runtime_vendor()) noexcept {
  constexpr index_t MR = index_t(arch::gemm_mr), NR = index_t(arch::gemm_nr);
  const index_t l2 = index_t(std::max<std::size_t>(c.l2 / (c.l2_shared_by ? c.l2_shared_by : 1), 256u << 10));
  const bool intel = vendor == arch::cpu_vendor::intel;
  gemm_blocking b;
  b.kc = std::clamp<index_t>(l2 / 8 / (NR * 4) / 64 * 64, 64, intel ? 256 : 1024);
  b.mc = std::max<index_t>(MR, l2 / 2 / (b.kc * 4) / MR * MR);
  b.nc = std::max<index_t>(NR, l2 / 4 / (b.mc * 4) / NR * NR);
  b.kc_long = std::max<index_t>(b.kc, std::min<index_t>(l2 / 4 / (MR * 4) / 64 * 64, intel ? 1024 : l2));
  return b;
}

/// A member's part of C: micro-panel rows [m_begin, m_end) (MR rows each)
/// and NR-column panels [n_begin, n_end).
struct gemm_part {
  index_t m_begin = 0, m_end = 0, n_begin = 0, n_end = 0;
};

/// Splits m_panels x n_panels over `members` as a grid of tm x tn
/// rectangles (tm tn <= members), the grid whose largest rectangle costs
/// least: its tiles plus the packing of its rows of A, which each member
/// does itself (a micro-panel of A counted as two tiles: measured on 2
/// threads, 256^3 and 512^3 then split rows, 0.65-0.81 -> 0.84-0.94 of
/// peak; 1024^3 also does, at the same speed; M <= 42 keeps splitting
/// columns). Ties go to fewer row splits, since every row split reads B
/// once more. Members past the grid get an empty part.
[[nodiscard]] inline gemm_part split_gemm(index_t m_panels, index_t n_panels, int members, int member) noexcept {
  constexpr index_t pack_cost = 2;  // tiles per packed micro-panel of A
  index_t best_tm = 1, best_cost = -1;
  for (index_t tm = 1; tm <= members; ++tm) {
    const index_t tn = members / tm;
    const index_t cost = (m_panels + tm - 1) / tm * ((n_panels + tn - 1) / tn + pack_cost);
    if (best_cost < 0 || cost < best_cost) best_cost = cost, best_tm = tm;
  }
  const index_t tm = best_tm, tn = members / tm;
  gemm_part p;
  if (member >= tm * tn) return p;
  const index_t mi = member / tn, ni = member % tn;
  p.m_begin = m_panels * mi / tm;
  p.m_end = m_panels * (mi + 1) / tm;
  p.n_begin = n_panels * ni / tn;
  p.n_end = n_panels * (ni + 1) / tn;
  return p;
}

}  // namespace tstream
