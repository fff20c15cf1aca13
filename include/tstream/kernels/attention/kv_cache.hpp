// The KV cache, resident and laid out in the order decode attention streams
// it: per KV head, pages of 512 positions (8 blocks of 64), each page holding
// the K^T of its blocks (head_dim x 64 each: one row of 64 scores is a few
// registers) followed by the V of the whole page (512 x head_dim), so one
// KV head's pages form one sequential stream. The kernel reads a page's
// K^T, runs one softmax over its 512 scores, then reads its V: one softmax
// per 512 positions rather than per 64, because each softmax stalls the
// stream while its steps wait on each other (the max, then the exps, then
// the values' FMAs): per 64-position block that cost 9-11% of the GQA tile
// from DRAM; per page of 8 blocks, 3%.
//
// Elements are grouped as the dot-product instructions consume them (G = 1
// for fp32, 2 for bf16, 4 for int8): K^T keeps G consecutive dims of one
// position together, [d / G][position][d % G]; V keeps G consecutive
// positions of one dim together, [position / G][d][position % G], and is cut
// into slices of 64 dims (the width of one values pass on AVX-512), each
// slice's rows contiguous, so a pass over V reads memory strictly in order
// (AVX2 tiles of two heads take each block and slice in two passes, each
// over half of every row: decode.hpp, score_regs). One
// register then holds 16 positions x G dims of K, or 16 dims x G positions
// of V, which the exact path widens and the fast path feeds to
// vdpbf16ps / vpdpbusd as is. int8 blocks hold, after their K^T, the
// per-position K scales and the sums of the K codes, and int8 pages the V
// scales of their positions before V: the order the kernel reads them, so
// the page stays one forward stream (with the scales after V, each block
// jumped ahead and back, and int8 from DRAM read at 0.33-0.46 of the
// bandwidth; with each block's V scales after its K sums, the jump back
// over the page's keys to read them cost 40% from DRAM).
//
// The memory is allocated in whole pages: capacity() stays as asked, but a
// cache holds room for up to 511 more positions per head (a 64-position
// cache of 8 heads of 128 fp32 takes 4 MiB, not 512 KiB).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "tstream/arch/simd.hpp"
#include "tstream/core/bf16.hpp"
#include "tstream/core/buffer.hpp"
#include "tstream/core/error.hpp"
#include "tstream/core/view.hpp"
#include "tstream/kernels/gemv/quantize.hpp"

namespace tstream {

/// Element types a kv_cache stores: float, bf16 or std::int8_t.
template <class T>
concept kv_type = std::is_same_v<T, float> || std::is_same_v<T, bf16> || std::is_same_v<T, std::int8_t>;

/// One layer's K and V for kv_heads heads of head_dim, room for `capacity`
/// positions (memory for it rounded up to whole 512-position pages),
/// allocated (and zeroed) once. Positions are appended one token
/// (decode) or many (prefill) at a time; nothing is reallocated.
///
/// int8 quantizes each appended K and V row (one position of one head)
/// symmetrically with its own scale, max|row| / 127: per position and head,
/// because decode appends one position at a time and a block-wide scale
/// would not be known until its block is full.
template <kv_type T>
class kv_cache {
 public:
  /// Positions per block (the decode kernel's score tile).
  static constexpr index_t block = 64;
  /// Blocks per page (one softmax each); positions per page.
  static constexpr index_t page_blocks = 8;
  static constexpr index_t page = block * page_blocks;
  static constexpr bool is_int8 = std::is_same_v<T, std::int8_t>;
  using storage = std::conditional_t<std::is_same_v<T, bf16>, std::uint16_t, T>;
  /// Elements grouped along head_dim (K) or positions (V): 4 bytes.
  static constexpr index_t group = index_t(4 / sizeof(storage));
  /// Dims per V slice (the last slice of a head holds head_dim % 64 if not 0).
  static constexpr index_t value_slice = 64;

  /// head_dim must be a positive multiple of 16 (64, 80, 96, 128, 256 ...).
  kv_cache(index_t kv_heads, index_t head_dim, index_t capacity)
      : heads_(kv_heads), dim_(head_dim), capacity_(capacity) {
    detail::require(kv_heads >= 1, "kv_cache", "kv_heads = ", kv_heads, " must be at least 1");
    detail::require(head_dim >= 16 && head_dim % 16 == 0 && head_dim <= 1024, "kv_cache", "head_dim = ", head_dim,
                    " is unsupported (a multiple of 16 up to 1024)");
    detail::require(capacity >= 1, "kv_cache", "capacity = ", capacity, " must be at least 1");
    pages_ = capacity / page + (capacity % page != 0);
    const std::size_t n_pages = detail::checked_mul(std::size_t(heads_), std::size_t(pages_), "kv_cache", "kv_heads x capacity");
    data_ = aligned_buffer<std::byte>(detail::checked_mul(n_pages, page_bytes(), "kv_cache", "the cache's byte size"));
    std::memset(data_.data(), 0, data_.bytes());  // padding lanes read as zero, never NaN
  }

  [[nodiscard]] index_t kv_heads() const noexcept { return heads_; }   ///< KV heads per position
  [[nodiscard]] index_t head_dim() const noexcept { return dim_; }      ///< values per head, for K and for V
  [[nodiscard]] index_t capacity() const noexcept { return capacity_; } ///< positions it can hold
  /// Positions stored so far (the context length L).
  [[nodiscard]] index_t size() const noexcept { return size_; }
  /// Bytes the cache holds (whole pages: see the layout note above).
  [[nodiscard]] std::size_t memory_bytes() const noexcept { return data_.bytes(); }
  /// Forgets every position (capacity and memory stay).
  void clear() noexcept { size_ = 0; }

  /// Appends one position: k and v hold kv_heads x head_dim values each
  /// (head-major). Throws tstream::error, storing nothing, when full or on a
  /// size mismatch.
  void append(std::span<const float> k, std::span<const float> v) {
    detail::require(k.data() != nullptr || k.empty(), "kv_cache::append", "k is null with ", k.size(), " elements");
    detail::require(v.data() != nullptr || v.empty(), "kv_cache::append", "v is null with ", v.size(), " elements");
    append(matrix_view<const float>(k.data(), 1, index_t(k.size())), matrix_view<const float>(v.data(), 1, index_t(v.size())));
  }

  /// Appends k.rows() positions (prefill): row t of k and v holds position
  /// size() + t, kv_heads x head_dim values each.
  void append(matrix_view<const float> k, matrix_view<const float> v) {
    const index_t width = heads_ * dim_;
    detail::require(k.cols() == width, "kv_cache::append", "k has ", k.cols(), " values per position, expected kv_heads x head_dim = ", width);
    detail::require(v.cols() == width, "kv_cache::append", "v has ", v.cols(), " values per position, expected kv_heads x head_dim = ", width);
    detail::require(k.rows() == v.rows(), "kv_cache::append", "k has ", k.rows(), " positions, v has ", v.rows());
    detail::require(size_ + k.rows() <= capacity_, "kv_cache::append", "appending ", k.rows(), " positions to ", size_,
                    " exceeds capacity = ", capacity_);
    if constexpr (std::is_same_v<T, std::int8_t>) {
      for (index_t t = 0; t < k.rows(); ++t)
        for (index_t j = 0; j < width; ++j)
          detail::require(std::isfinite(k(t, j)) && std::isfinite(v(t, j)), "kv_cache::append", std::isfinite(k(t, j)) ? "v" : "k",
                          " at position ", t, ", value ", j, " is not finite (int8 needs a finite scale)");
    }
    for (index_t t = 0; t < k.rows(); ++t, ++size_)
      for (index_t h = 0; h < heads_; ++h) store(h, size_, k.row(t).data() + h * dim_, v.row(t).data() + h * dim_);
  }

  // ---- the layout, for the decode kernel ----
  /// Bytes of one block's keys: K^T and, for int8, its K scales and sums.
  [[nodiscard]] std::size_t key_block_bytes() const noexcept {
    return std::size_t(block * dim_) * sizeof(storage) + (is_int8 ? 2 * block * 4 : 0);
  }
  /// Bytes of one page: the keys of its blocks, (int8) its V scales, its V.
  [[nodiscard]] std::size_t page_bytes() const noexcept {
    return std::size_t(page_blocks) * key_block_bytes() + (is_int8 ? page * 4 : 0) +
           std::size_t(page * dim_) * sizeof(storage);
  }
  /// Index of K(d, p) within a block's K^T (p < 64).
  [[nodiscard]] index_t key_index(index_t d, index_t p) const noexcept {
    return (d / group) * (block * group) + p * group + d % group;
  }
  /// Dims in the V slice that starts at dim d0 (a multiple of value_slice).
  [[nodiscard]] index_t slice_width(index_t d0) const noexcept { return std::min(value_slice, dim_ - d0); }
  /// Index of V(p, d) within a page's V (p < 512): slice, then [p / G][d][p % G].
  [[nodiscard]] index_t value_index(index_t p, index_t d) const noexcept {
    const index_t d0 = d - d % value_slice;
    return d0 * page + (p / group) * (slice_width(d0) * group) + (d - d0) * group + p % group;
  }
  /// Page pg of head h.
  [[nodiscard]] const std::byte* page_data(index_t h, index_t pg) const noexcept {
    return data_.data() + std::size_t(h * pages_ + pg) * page_bytes();
  }
  /// K^T of block j of a page: head_dim rows of 64 positions.
  [[nodiscard]] const storage* keys(const std::byte* pg, index_t j) const noexcept {
    return reinterpret_cast<const storage*>(pg + std::size_t(j) * key_block_bytes());
  }
  /// Per-position scales of K (int8 only), right after the block's K^T.
  [[nodiscard]] const float* key_scales(const std::byte* pg, index_t j) const noexcept {
    return reinterpret_cast<const float*>(keys(pg, j) + block * dim_);
  }
  /// Per-position sums over head_dim of the K codes (int8 only): the offset
  /// term of a u8 x s8 dot product.
  [[nodiscard]] const std::int32_t* key_sums(const std::byte* pg, index_t j) const noexcept {
    return reinterpret_cast<const std::int32_t*>(key_scales(pg, j) + block);
  }
  /// Per-position scales of V for block j of a page (int8 only), after the
  /// keys of the page's blocks.
  [[nodiscard]] const float* value_scales(const std::byte* pg, index_t j) const noexcept {
    return page_value_scales(pg) + j * block;
  }
  /// V of a page: 512 positions of head_dim, after the keys of its blocks
  /// (and the int8 V scales).
  [[nodiscard]] const storage* values(const std::byte* pg) const noexcept {
    return reinterpret_cast<const storage*>(page_value_scales(pg) + (is_int8 ? page : 0));
  }
  /// Bytes of K and V (with scales) decode reads for a context of L positions.
  [[nodiscard]] std::size_t bytes_for(index_t L) const noexcept {
    const std::size_t per_pos = 2 * std::size_t(dim_) * sizeof(storage) + (std::is_same_v<T, std::int8_t> ? 12 : 0);
    return std::size_t(heads_ * L) * per_pos;
  }

  /// The value stored for K or V at (head, position, d), as fp32 (for tests).
  /// Throws tstream::error for an index outside kv_heads x size() x head_dim.
  [[nodiscard]] float key(index_t h, index_t pos, index_t d) const { return read(h, pos, d, true); }
  [[nodiscard]] float value(index_t h, index_t pos, index_t d) const { return read(h, pos, d, false); }
  /// The int8 scale of K or V at (head, position) (1 for other types).
  /// Throws tstream::error for an index outside kv_heads x size().
  [[nodiscard]] float key_scale(index_t h, index_t pos) const {
    check_index(h, pos, 0, "kv_cache::key_scale");
    if constexpr (std::is_same_v<T, std::int8_t>) {
      const slot s = locate(h, pos);
      return key_scales(s.pg, s.j)[s.p];
    }
    else return 1.f;
  }
  [[nodiscard]] float value_scale(index_t h, index_t pos) const {
    check_index(h, pos, 0, "kv_cache::value_scale");
    if constexpr (std::is_same_v<T, std::int8_t>) {
      const slot s = locate(h, pos);
      return value_scales(s.pg, s.j)[s.p];
    }
    else return 1.f;
  }

 private:
  // Where position pos of head h lives: page, block j of the page, position
  // p of the block.
  struct slot {
    const std::byte* pg;
    index_t j, p;
  };
  [[nodiscard]] slot locate(index_t h, index_t pos) const noexcept {
    return {page_data(h, pos / page), pos % page / block, pos % block};
  }
  // The int8 V scales of a page sit after the keys of its blocks; V after them.
  [[nodiscard]] const float* page_value_scales(const std::byte* pg) const noexcept {
    return reinterpret_cast<const float*>(pg + std::size_t(page_blocks) * key_block_bytes());
  }

  void store(index_t h, index_t pos, const float* k, const float* v) {
    const auto [pg, j, p] = locate(h, pos);
    auto* kt = const_cast<storage*>(keys(pg, j));
    auto* vb = const_cast<storage*>(values(pg));
    if constexpr (std::is_same_v<T, std::int8_t>) {
      auto scale_of = [&](const float* x) {
        float amax = 0;
        for (index_t d = 0; d < dim_; ++d) amax = std::fmax(amax, std::fabs(x[d]));
        return amax;
      };
      const float ka = scale_of(k), va = scale_of(v);
      const float kinv = inverse_scale(ka, 127.f), vinv = inverse_scale(va, 127.f);
      std::int32_t ksum = 0;
      for (index_t d = 0; d < dim_; ++d) {
        const std::int8_t code = quantize_value(k[d], kinv);
        kt[key_index(d, p)] = code;
        ksum += code;
      }
      for (index_t d = 0; d < dim_; ++d) vb[value_index(j * block + p, d)] = quantize_value(v[d], vinv);
      const_cast<float*>(key_scales(pg, j))[p] = kinv > 0 ? ka / 127.f : 0.f;
      const_cast<float*>(value_scales(pg, j))[p] = vinv > 0 ? va / 127.f : 0.f;
      const_cast<std::int32_t*>(key_sums(pg, j))[p] = ksum;
    } else {
      for (index_t d = 0; d < dim_; ++d) kt[key_index(d, p)] = encode(k[d]);
      for (index_t d = 0; d < dim_; ++d) vb[value_index(j * block + p, d)] = encode(v[d]);
    }
  }

  static storage encode(float x) noexcept {
    if constexpr (std::is_same_v<T, bf16>) return bf16::from_float(x);
    else return x;
  }

  void check_index(index_t h, index_t pos, index_t d, const char* fn) const {
    detail::require(h >= 0 && h < heads_, fn, "head = ", h, " is outside [0, kv_heads = ", heads_, ")");
    detail::require(pos >= 0 && pos < size_, fn, "position = ", pos, " is outside [0, size = ", size_, ")");
    detail::require(d >= 0 && d < dim_, fn, "d = ", d, " is outside [0, head_dim = ", dim_, ")");
  }

  float read(index_t h, index_t pos, index_t d, bool is_key) const {
    check_index(h, pos, d, is_key ? "kv_cache::key" : "kv_cache::value");
    const auto [pg, j, p] = locate(h, pos);
    const storage s = is_key ? keys(pg, j)[key_index(d, p)] : values(pg)[value_index(j * block + p, d)];
    if constexpr (std::is_same_v<T, bf16>) return bf16::to_float(s);
    else if constexpr (std::is_same_v<T, std::int8_t>) return float(s) * (is_key ? key_scales(pg, j) : value_scales(pg, j))[p];
    else return s;
  }

  index_t heads_, dim_, capacity_, pages_ = 0, size_ = 0;
  aligned_buffer<std::byte> data_;
};

}  // namespace tstream
