// The pruned GLAI estimator on CPU, compiled (backend "cpp"; glai/kernels/estimator/compiled.py builds it).
//
// Same (output, gate) row layout as the pure-PyTorch path (glai/kernels/estimator/layout.py):
//
//   forward   y[b, o] = sum_{r: o_r = o} gates[b, s_r] * sum_{p in r} values[p] * x~[b, i_p] + beta[o]
//   backward  dvalues[p] = sum_b dy[b, o_r] * gates[b, s_r] * x~[b, i_p],   dbeta[o] = sum_b dy[b, o]
//
// The batch is the vector dimension, in tiles of 16 samples: x~ [B, n_in] is stored tile-major as
// xt [T, n_in, 16] (T = ceil(B / 16), zero-padded), so one path costs one 16-float load and one fused
// multiply-add per tile, and a tile's inputs (n_in x 64 bytes: 24 KiB at n_in = 385) stay cached while every
// path reads them. Loop order, both directions: chunks of about `chunk_paths` paths (their values, indices and
// gradients stay in the L2 cache), then groups of `tiles` tiles (1, 2 or 4), then the chunk's paths. The earlier
// order (each path over the whole batch) read a fresh cache line of x~ per multiply-add and ran at 1/2 to 1/5 of
// this speed at batch 1024 (docs/FINDINGS.md; compiled.py holds the measured choices).
// The gates enter as bit masks, 2 bytes per (gate, tile) in groups of 4 tiles (`gate_masks`), not as float tiles: a
// gate's term is its row sum with the off lanes zeroed (`masked`), and the masks of a tile group are one load.
// - Forward: four independent accumulators per row and tile break the multiply-add latency chain; a row whose
//   gate is off for every sample of the group is skipped; in output order, a short row's paths (kShortRow) add,
//   masked by its gate, straight into a second accumulator of its output. Rows run output by output (long rows
//   optionally one segment of inputs at a time), or gate by gate (`row_order`), where rows of one gate share their
//   inputs: then each chunk sums into a partial output and the partials add up in chunk order.
// - Backward: 16 consecutive paths at a time, each a 16-lane product dy * x masked by its gate's bits, summed over
//   the group's tiles, then a transpose-reduction (4 levels of two-vector shuffles) that leaves path j's sum in
//   lane j: no per-path horizontal sum; the group sums add into dvalues in tile order.
// Both are deterministic and the same on any number of threads: every sum runs in a fixed order that depends
// on the layout, the batch and the blocking arguments only; the forward is parallel over (chunk, tile group),
// the backward over path chunks, and each writes its own entries. Built with -fopenmp: ATen's parallel_for is
// inline OpenMP code.
// Written with GCC/Clang vector extensions (GCC >= 12 or Clang for __builtin_shufflevector), which the compiler
// lowers to AVX-512, AVX2 or NEON as the build machine allows.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kT = 16;  // samples per vector, and paths per transpose-reduction block
typedef float v16f __attribute__((vector_size(64)));
// The small vector helpers below are always inlined into the kernels' loops (see reduce16).
#define GLAI_INLINE __attribute__((always_inline)) inline

GLAI_INLINE v16f load16(const float* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// One transpose-reduction level of block width w: lane l takes its pair of partial sums (w/2 apart) from a when
// l % w < w/2, else from b.
#define GLAI_FOLD16(a, b)                                                                             \
  (__builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +            \
   __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31))
#define GLAI_FOLD8(a, b)                                                                              \
  (__builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +          \
   __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31))
#define GLAI_FOLD4(a, b)                                                                              \
  (__builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +          \
   __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31))
#define GLAI_FOLD2(a, b)                                                                              \
  (__builtin_shufflevector(a, b, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +         \
   __builtin_shufflevector(a, b, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31))

// Transpose-reduction of 16 vectors: lane j of the result is the sum of the 16 lanes of m[j]. Always inlined: called
// out of line (as GCC chose once two backward kernels called it), the 16 vectors went through memory and the backward
// ran 1.5x slower.
GLAI_INLINE v16f reduce16(const v16f* m) {
  v16f t[8], u[4], v[2];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) t[j] = GLAI_FOLD16(m[j], m[j + 8]);
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) u[j] = GLAI_FOLD8(t[j], t[j + 4]);
  for (int j = 0; j < 2; ++j) v[j] = GLAI_FOLD4(u[j], u[j + 2]);
  return GLAI_FOLD2(v[0], v[1]);
}

int64_t num_tiles(int64_t batch) { return (batch + kT - 1) / kT; }

void check(const at::Tensor& t, at::ScalarType dtype, int64_t dim, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.dim());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// 16 x 16 transpose in registers (lane c of m[r] -> lane r of m[c]): four stages that swap the off-diagonal
// blocks of width 8, 4, 2, 1 (the fold shuffles' lane patterns, without the sum).
__attribute__((always_inline)) inline void transpose16(v16f* m) {
  v16f a, b;
#define GLAI_SWAP(r, s, LO, HI) (a = LO(m[r], m[s]), b = HI(m[r], m[s]), m[r] = a, m[s] = b)
#define GLAI_LO8(x, y) __builtin_shufflevector(x, y, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)
#define GLAI_HI8(x, y) __builtin_shufflevector(x, y, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31)
#define GLAI_LO4(x, y) __builtin_shufflevector(x, y, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27)
#define GLAI_HI4(x, y) __builtin_shufflevector(x, y, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31)
#define GLAI_LO2(x, y) __builtin_shufflevector(x, y, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29)
#define GLAI_HI2(x, y) __builtin_shufflevector(x, y, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31)
#define GLAI_LO1(x, y) __builtin_shufflevector(x, y, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30)
#define GLAI_HI1(x, y) __builtin_shufflevector(x, y, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31)
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) if (!(r & 8)) GLAI_SWAP(r, r + 8, GLAI_LO8, GLAI_HI8);
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) if (!(r & 4)) GLAI_SWAP(r, r + 4, GLAI_LO4, GLAI_HI4);
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) if (!(r & 2)) GLAI_SWAP(r, r + 2, GLAI_LO2, GLAI_HI2);
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) if (!(r & 1)) GLAI_SWAP(r, r + 1, GLAI_LO1, GLAI_HI1);
}

typedef int32_t v16i __attribute__((vector_size(64)));

// [B, n] row-major -> tile-major [T, n, 16] (zero-padded samples B..16T): 16 x 16 blocks transposed in registers.
at::Tensor to_tiles(const float* src, int64_t batch, int64_t n) {
  const int64_t tiles = num_tiles(batch);
  at::Tensor out = at::empty({tiles, n, kT}, at::kFloat);
  float* dst = out.data_ptr<float>();
  // every entry is written below but the padded samples of the last tile: zeros
  if (batch % kT) std::memset(dst + (tiles - 1) * n * kT, 0, n * kT * sizeof(float));
  at::parallel_for(0, tiles, std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* d = dst + t * n * kT;
      const float* rows = src + t * kT * n;
      const int64_t lanes = std::min(kT, batch - t * kT);
      int64_t j0 = 0;
      if (lanes == kT) {
        for (; j0 + kT <= n; j0 += kT) {
          v16f m[kT];
          for (int64_t l = 0; l < kT; ++l) m[l] = load16(rows + l * n + j0);
          transpose16(m);
          for (int64_t j = 0; j < kT; ++j) std::memcpy(d + (j0 + j) * kT, &m[j], sizeof(v16f));
        }
      }
      for (int64_t l = 0; l < lanes; ++l)  // the last columns, and a partial tile
        for (int64_t j = j0; j < n; ++j) d[j * kT + l] = rows[l * n + j];
    }
  });
  return out;
}

// The gates as bit masks, grouped 4 tiles at a time: int16 [ceil(T / 4), n_gates, 4], bit l of [u, s, q] =
// gates[16 (4 u + q) + l, s] (0 for the padded samples and tiles). Two bytes per (gate, tile) instead of a 64-byte
// float tile: at token batches (thousands of rows) the masks stay cached where float tiles [T, n_gates, 16] did not
// (4096 tokens x 1,480 gates: 24 MB). A tile group (1, 2 or 4 tiles, never across a multiple of 4: for_each_group)
// finds a gate's masks in one load, and all its gates' masks in n_gates x 8 bytes that stay in L1 while the group
// walks its paths; gate-major masks [n_gates, T] put every gate in a cache line of its own (1,480 lines, 95 KB, per
// group). Grouped masks are the faster layout for the all-MiniLM-L6-v2 block at 4096 tokens and the same at 1024
// (the measurements: docs/FINDINGS.md).
constexpr int64_t kMaskTiles = 4;

at::Tensor gate_masks(const uint8_t* gates, int64_t batch, int64_t n_gates) {
  const int64_t tiles = num_tiles(batch), units = (tiles + kMaskTiles - 1) / kMaskTiles;
  at::Tensor out = at::zeros({units, n_gates, kMaskTiles}, at::kShort);
  uint16_t* dst = reinterpret_cast<uint16_t*>(out.data_ptr<int16_t>());
  at::parallel_for(0, tiles, std::max<int64_t>(1, 65536 / std::max<int64_t>(n_gates, 1)), [&](int64_t t0, int64_t t1) {
    std::vector<uint16_t> m(n_gates);
    for (int64_t t = t0; t < t1; ++t) {
      std::fill(m.begin(), m.end(), 0);
      const int64_t lanes = std::min(kT, batch - t * kT);
      for (int64_t l = 0; l < lanes; ++l) {
        const uint8_t* g = gates + (t * kT + l) * n_gates;
        for (int64_t s = 0; s < n_gates; ++s) m[s] |= static_cast<uint16_t>((g[s] != 0) << l);
      }
      uint16_t* d = dst + (t / kMaskTiles) * n_gates * kMaskTiles + t % kMaskTiles;
      for (int64_t s = 0; s < n_gates; ++s) d[s * kMaskTiles] = m[s];
    }
  });
  return out;
}

// The masks of tile group t0.. (within one group of kMaskTiles): gate s's are at group_base(gm, n_gates, t0)[s * 4].
GLAI_INLINE const uint16_t* group_base(const uint16_t* gm, int64_t n_gates, int64_t t0) {
  return gm + (t0 / kMaskTiles) * n_gates * kMaskTiles + t0 % kMaskTiles;
}

// The lanes of v whose bit is set in mask, +0 elsewhere: a gate of 1 or 0 times v without the multiply.
GLAI_INLINE v16f masked(v16f v, uint32_t mask) {
  const v16i bits = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  const v16i on = (bits & static_cast<int32_t>(mask)) != 0;  // -1 (all bits) where set
  return (v16f)((v16i)v & on);
}

// y + h in the lanes whose bit is set in mask, y elsewhere (one masked add where AVX-512 has mask registers).
GLAI_INLINE v16f add_masked(v16f y, v16f h, uint32_t mask) {
#if defined(__AVX512F__)
  return (v16f)_mm512_mask_add_ps((__m512)y, static_cast<__mmask16>(mask), (__m512)y, (__m512)h);
#else
  return y + masked(h, mask);
#endif
}

// y + v * x in the lanes whose bit is set in mask, y elsewhere (one masked fused multiply-add with AVX-512).
GLAI_INLINE v16f fma_masked(v16f y, float v, v16f x, uint32_t mask) {
#if defined(__AVX512F__)
  return (v16f)_mm512_mask3_fmadd_ps(_mm512_set1_ps(v), (__m512)x, (__m512)y, static_cast<__mmask16>(mask));
#else
  return y + masked(v * x, mask);
#endif
}

// f(std::integral_constant<int, NT>{}, t) for the tile groups of tiles t_begin..t_end: groups of tiles_per_group
// (1, 2 or 4) tiles, the last tiles (a short group) in smaller ones.
template <class F>
inline void for_each_group(int64_t t_begin, int64_t t_end, int64_t tiles_per_group, F&& f) {
  for (int64_t t = t_begin; t < t_end;) {
    if (t + 4 <= t_end && tiles_per_group == 4) {
      f(std::integral_constant<int, 4>{}, t);
      t += 4;
    } else if (t + 2 <= t_end && tiles_per_group >= 2) {
      f(std::integral_constant<int, 2>{}, t);
      t += 2;
    } else {
      f(std::integral_constant<int, 1>{}, t);
      t += 1;
    }
  }
}

struct Forward {
  const float* xp;      // [T, n_in, 16]
  const uint16_t* gm;   // [ceil(T / 4), n_gates, 4] gate bit masks (gate_masks)
  const float* vp;      // [P]
  const int32_t* rp;    // [R + 1]
  const int32_t* cp;    // [P]
  const int64_t* rg;    // [R]
  const int64_t* out_row;  // [n_out + 1]
  float* yp;            // [T, n_out, 16]
  const int32_t* seg_ptr;  // [R * segments + 1]: row r's paths with inputs in segment k: [r*S + k]..[r*S + k + 1]
  int64_t n_in, n_gates, n_out, segments, tiles;
};

// Rows of at most this many paths (the unsegmented output-major forward) skip the row sum: each path's multiply-add
// goes, masked by the row's gate, straight into a second accumulator of the output. Half the rows of the
// all-MiniLM-L6-v2 block hold 1 or 2 paths (90 % at most 22), where the row sum's four accumulators and their
// reduction cost more than the paths. 12 is among the fastest thresholds for that block (0, 3, 6, 12, 24 and all
// were timed) and leaves A1 and T768 (and A2, C1, C2, whose rows run in input segments) as fast as before
// (docs/FINDINGS.md).
constexpr int64_t kShortRow = 12;

// h[t] = sum over paths start..end of values[p] * x[t][i_p] (tile t0 + t): four accumulators per tile.
template <int NT>
inline void row_sums(const Forward& f, const float* const* x, int32_t start, int32_t end, v16f* h) {
  v16f a[NT][4];
  for (int t = 0; t < NT; ++t) a[t][0] = a[t][1] = a[t][2] = a[t][3] = v16f{0};
  int32_t p = start;
  for (; p + 4 <= end; p += 4) {
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const float v = f.vp[p + q];
      const int64_t i = static_cast<int64_t>(f.cp[p + q]) * kT;
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) a[t][q] += v * load16(x[t] + i);
    }
  }
  for (; p < end; ++p) {
    const float v = f.vp[p];
    const int64_t i = static_cast<int64_t>(f.cp[p]) * kT;
    for (int t = 0; t < NT; ++t) a[t][0] += v * load16(x[t] + i);
  }
  for (int t = 0; t < NT; ++t) h[t] = (a[t][0] + a[t][1]) + (a[t][2] + a[t][3]);
}

// The masks of gate s on tiles t0..t0+NT-1 (m[t]); with SKIP, whether any bit is set (the gate is on for a sample of
// the group: a row whose gate is off for the whole group is skipped), else true (every row runs, its terms masked to
// nothing: the same sums, bitwise, with no data-dependent branch). Which is faster depends on how often whole groups
// are off and on the CPU's branch predictor (the forward's `skip_off_rows`, timed per CPU: tuning.py): in a family T
// batch, whose tiles hold consecutive tokens of one text, 5 % of the path-weighted rows are off for a whole group and
// the skip cost the block's step about 4 % more than tokens in random order, where none are.
template <int NT, bool SKIP>
GLAI_INLINE bool group_masks(const Forward& f, int64_t t0, int64_t s, uint16_t* m) {
  std::memcpy(m, group_base(f.gm, f.n_gates, t0) + s * kMaskTiles, NT * sizeof(uint16_t));
  if constexpr (!SKIP) return true;
  uint16_t on = 0;
  for (int t = 0; t < NT; ++t) on |= m[t];
  return on;
}

// Outputs o0..o1 on tiles t0..t0+NT-1. With input segments (f.segments > 1) the rows are summed one segment of
// inputs at a time (so that segment's x rows stay in the L1 cache) into `scratch` (NT x 16 floats per row).
template <int NT, bool SKIP>
void forward_group(const Forward& f, int64_t t0, int64_t o0, int64_t o1, float* scratch) {
  const float* x[NT];
  for (int t = 0; t < NT; ++t) x[t] = f.xp + (t0 + t) * f.n_in * kT;
  const int64_t segments = f.segments, r_lo = f.out_row[o0], r_hi = f.out_row[o1];
  v16f h[NT];
  uint16_t m[NT];
  for (int64_t k = 0; segments > 1 && k < segments; ++k) {
    for (int64_t r = r_lo; r < r_hi; ++r) {
      if (!group_masks<NT, SKIP>(f, t0, f.rg[r], m)) continue;
      const int32_t* seg = f.seg_ptr + r * segments + k;
      row_sums<NT>(f, x, seg[0], seg[1], h);
      float* acc = scratch + (r - r_lo) * NT * kT;
      for (int t = 0; t < NT; ++t) {
        const v16f sum = k ? load16(acc + t * kT) + h[t] : h[t];
        std::memcpy(acc + t * kT, &sum, sizeof sum);
      }
    }
  }
  for (int64_t o = o0; o < o1; ++o) {
    // y: the rows' sums; ys: the short rows' paths, each multiply-add masked by its gate straight into it
    v16f y[NT], ys[NT];
    for (int t = 0; t < NT; ++t) y[t] = ys[t] = v16f{0};
    for (int64_t r = f.out_row[o]; r < f.out_row[o + 1]; ++r) {
      if (!group_masks<NT, SKIP>(f, t0, f.rg[r], m)) continue;  // the gate is off for every sample of the group: no term
      const int32_t start = f.rp[r], end = f.rp[r + 1];
      if (segments > 1) {
        for (int t = 0; t < NT; ++t) h[t] = load16(scratch + ((r - r_lo) * NT + t) * kT);
      } else if (end - start <= kShortRow) {
        for (int32_t p = start; p < end; ++p) {
          const float v = f.vp[p];
          const int64_t i = static_cast<int64_t>(f.cp[p]) * kT;
          for (int t = 0; t < NT; ++t) ys[t] = fma_masked(ys[t], v, load16(x[t] + i), m[t]);
        }
        continue;
      } else {
        row_sums<NT>(f, x, start, end, h);
      }
      for (int t = 0; t < NT; ++t) y[t] = add_masked(y[t], h[t], m[t]);
    }
    for (int t = 0; t < NT; ++t) {
      const v16f sum = y[t] + ys[t];
      std::memcpy(f.yp + ((t0 + t) * f.n_out + o) * kT, &sum, sizeof(v16f));
    }
  }
}

// Gate-major order: rows order[k0..k1) (sorted by gate, then output) on tiles t0..t0+NT-1, each row's term added
// to its output in ybuf ([n_out, NT, 16], zeroed here). Consecutive rows of one gate share most of their inputs
// (pruning ranks a gate's inputs alike for every output), so their x rows are still cached.
template <int NT, bool SKIP>
void forward_group_by_gate(const Forward& f, int64_t t0, const int32_t* order, int64_t k0, int64_t k1,
                           const int64_t* ro, float* ybuf) {
  const float* x[NT];
  for (int t = 0; t < NT; ++t) x[t] = f.xp + (t0 + t) * f.n_in * kT;
  std::memset(ybuf, 0, f.n_out * NT * kT * sizeof(float));
  v16f h[NT];
  uint16_t m[NT];
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t r = order[k];
    if (!group_masks<NT, SKIP>(f, t0, f.rg[r], m)) continue;
    row_sums<NT>(f, x, f.rp[r], f.rp[r + 1], h);
    float* y = ybuf + ro[r] * NT * kT;
    for (int t = 0; t < NT; ++t) {
      const v16f v = add_masked(load16(y + t * kT), h[t], m[t]);
      std::memcpy(y + t * kT, &v, sizeof v);
    }
  }
}

// Output-major order (rows as stored): chunks of whole outputs, each item (chunk, tile group) writes its outputs.
void forward_by_output(const at::Tensor& xt, const at::Tensor& gm,
                       const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_out,
                       const at::Tensor& row_gate, const at::Tensor& values, const at::Tensor& seg_ptr,
                       int64_t segments, int64_t tiles_per_group, int64_t chunk_paths, bool skip_off_rows,
                       at::Tensor& yt) {
  const int64_t tiles = xt.size(0), n_in = xt.size(1), n_gates = gm.size(1), n_out = yt.size(1);
  const int64_t num_rows = row_out.size(0);
  const int32_t* rp = row_ptr.data_ptr<int32_t>();
  const int64_t* ro = row_out.data_ptr<int64_t>();
  // Rows are sorted by output: out_row[o]..out_row[o+1] are output o's rows.
  std::vector<int64_t> out_row(n_out + 1, 0);
  for (int64_t r = 0; r < num_rows; ++r) out_row[ro[r] + 1] += 1;
  for (int64_t o = 0; o < n_out; ++o) out_row[o + 1] += out_row[o];
  // Chunks of whole outputs, each closed once it holds chunk_paths paths.
  std::vector<int64_t> chunk_out{0};
  for (int64_t o = 0; o < n_out; ++o) {
    if (rp[out_row[o + 1]] - rp[out_row[chunk_out.back()]] >= chunk_paths || o + 1 == n_out)
      chunk_out.push_back(o + 1);
  }
  const int64_t chunks = static_cast<int64_t>(chunk_out.size()) - 1;
  const int64_t groups = (tiles + tiles_per_group - 1) / tiles_per_group;

  int64_t max_rows = 0;
  for (int64_t c = 0; c < chunks; ++c) max_rows = std::max(max_rows, out_row[chunk_out[c + 1]] - out_row[chunk_out[c]]);
  const Forward f{xt.data_ptr<float>(), reinterpret_cast<const uint16_t*>(gm.data_ptr<int16_t>()),
                  values.data_ptr<float>(), rp, col.data_ptr<int32_t>(), row_gate.data_ptr<int64_t>(), out_row.data(),
                  yt.data_ptr<float>(), segments > 1 ? seg_ptr.data_ptr<int32_t>() : nullptr, n_in, n_gates, n_out,
                  segments, tiles};
  at::parallel_for(0, chunks * groups, 1, [&](int64_t k0, int64_t k1) {
    std::vector<float> scratch(segments > 1 ? max_rows * tiles_per_group * kT : 0);  // per-row sums of segments
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t c = k / groups, t0 = (k % groups) * tiles_per_group, o0 = chunk_out[c], o1 = chunk_out[c + 1];
      for_each_group(t0, std::min(tiles, t0 + tiles_per_group), tiles_per_group, [&](auto nt, int64_t t) {
        if (skip_off_rows) {
          forward_group<decltype(nt)::value, true>(f, t, o0, o1, scratch.data());
        } else {
          forward_group<decltype(nt)::value, false>(f, t, o0, o1, scratch.data());
        }
      });
    }
  });
}

// Gate-major order: chunks of consecutive rows of row_order (about chunk_paths paths each); each item (chunk, tile
// group) sums its rows into a partial output, and the partials add up in chunk order (the result depends on the
// chunks, which depend on chunk_paths only, not on the threads).
void forward_by_gate(const at::Tensor& xt, const at::Tensor& gm,
                     const at::Tensor& row_ptr, const at::Tensor& col, const at::Tensor& row_out,
                     const at::Tensor& row_gate, const at::Tensor& values, const at::Tensor& row_order,
                     int64_t tiles_per_group, int64_t chunk_paths, bool skip_off_rows, at::Tensor& yt) {
  const int64_t tiles = xt.size(0), n_in = xt.size(1), n_gates = gm.size(1), n_out = yt.size(1);
  const int64_t num_rows = row_out.size(0);
  const int32_t* rp = row_ptr.data_ptr<int32_t>();
  const int32_t* order = row_order.data_ptr<int32_t>();
  std::vector<int64_t> chunk_k{0};
  for (int64_t k = 0, paths = 0; k < num_rows; ++k) {
    paths += rp[order[k] + 1] - rp[order[k]];
    if (paths >= chunk_paths || k + 1 == num_rows) chunk_k.push_back(k + 1), paths = 0;
  }
  const int64_t chunks = std::max<int64_t>(1, static_cast<int64_t>(chunk_k.size()) - 1);
  if (chunk_k.size() == 1) chunk_k.push_back(0);  // no rows: one empty chunk (outputs 0)
  const int64_t groups = (tiles + tiles_per_group - 1) / tiles_per_group;
  // one chunk writes yt itself; several write partials [chunks, T, n_out, 16], summed below
  at::Tensor part = chunks == 1 ? yt : at::empty({chunks, tiles, n_out, kT}, at::kFloat);
  float* pp = part.data_ptr<float>();
  std::vector<int64_t> no_out_row(1, 0);
  const Forward f{xt.data_ptr<float>(), reinterpret_cast<const uint16_t*>(gm.data_ptr<int16_t>()),
                  values.data_ptr<float>(), rp, col.data_ptr<int32_t>(), row_gate.data_ptr<int64_t>(),
                  no_out_row.data(), nullptr, nullptr, n_in, n_gates, n_out, 1, tiles};
  const int64_t* ro = row_out.data_ptr<int64_t>();
  at::parallel_for(0, chunks * groups, 1, [&](int64_t i0, int64_t i1) {
    std::vector<float> ybuf(n_out * tiles_per_group * kT);
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t c = i / groups, g0 = (i % groups) * tiles_per_group;
      for_each_group(g0, std::min(tiles, g0 + tiles_per_group), tiles_per_group, [&](auto group, int64_t t) {
        constexpr int nt = decltype(group)::value;
        if (skip_off_rows) {
          forward_group_by_gate<nt, true>(f, t, order, chunk_k[c], chunk_k[c + 1], ro, ybuf.data());
        } else {
          forward_group_by_gate<nt, false>(f, t, order, chunk_k[c], chunk_k[c + 1], ro, ybuf.data());
        }
        for (int q = 0; q < nt; ++q)  // ybuf [n_out, nt, 16] -> part[c, t + q, :, :]
          for (int64_t o = 0; o < n_out; ++o)
            std::memcpy(pp + ((c * tiles + t + q) * n_out + o) * kT, ybuf.data() + (o * nt + q) * kT, sizeof(v16f));
      });
    }
  });
  if (chunks > 1) {
    float* yp = yt.data_ptr<float>();
    const int64_t per_chunk = tiles * n_out * kT;
    at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t j = t0 * n_out * kT; j < t1 * n_out * kT; ++j) {
        float sum = pp[j];
        for (int64_t c = 1; c < chunks; ++c) sum += pp[c * per_chunk + j];
        yp[j] = sum;
      }
    });
  }
}

// [T, n_out, 16] -> [B, n_out], + beta.
at::Tensor tiles_to_rows(const at::Tensor& yt, const at::Tensor& bias, int64_t batch) {
  const int64_t tiles = yt.size(0), n_out = yt.size(1);
  at::Tensor y = at::empty({batch, n_out}, at::kFloat);  // [B, n_out]
  float* out = y.data_ptr<float>();
  const float* yp = yt.data_ptr<float>();
  const float* beta = bias.data_ptr<float>();
  for (int64_t t = 0; t < tiles; ++t) {
    const float* tile = yp + t * n_out * kT;
    float* rows = out + t * kT * n_out;
    const int64_t lanes = std::min(kT, batch - t * kT);
    int64_t o0 = 0;
    if (lanes == kT) {
      for (; o0 + kT <= n_out; o0 += kT) {
        v16f m[kT];
        for (int64_t j = 0; j < kT; ++j) m[j] = load16(tile + (o0 + j) * kT);
        transpose16(m);
        const v16f b = load16(beta + o0);
        for (int64_t l = 0; l < kT; ++l) {
          const v16f v = m[l] + b;
          std::memcpy(rows + l * n_out + o0, &v, sizeof v);
        }
      }
    }
    for (int64_t l = 0; l < lanes; ++l)
      for (int64_t o = o0; o < n_out; ++o) rows[l * n_out + o] = tile[o * kT + l] + beta[o];
  }
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> estimator_fwd(
    const at::Tensor& x_tilde, const at::Tensor& gates, const at::Tensor& row_ptr, const at::Tensor& col,
    const at::Tensor& row_out, const at::Tensor& row_gate, const at::Tensor& values, const at::Tensor& bias,
    const at::Tensor& row_order, const at::Tensor& seg_ptr, int64_t segments, int64_t tiles_per_group,
    int64_t chunk_paths, int64_t skip_off_rows) {
  check(x_tilde, at::kFloat, 2, "x_tilde");
  check(gates, at::kByte, 2, "gates");
  check(row_ptr, at::kInt, 1, "row_ptr");
  check(col, at::kInt, 1, "col");
  check(row_out, at::kLong, 1, "row_out");
  check(row_gate, at::kLong, 1, "row_gate");
  check(values, at::kFloat, 1, "values");
  check(bias, at::kFloat, 1, "bias");
  TORCH_CHECK(tiles_per_group == 1 || tiles_per_group == 2 || tiles_per_group == 4, "tiles must be 1, 2 or 4, got ",
              tiles_per_group);
  TORCH_CHECK(chunk_paths >= 1, "chunk_paths must be >= 1, got ", chunk_paths);
  const int64_t batch = x_tilde.size(0), n_in = x_tilde.size(1), n_gates = gates.size(1);
  const int64_t n_out = bias.size(0), num_rows = row_out.size(0), tiles = num_tiles(batch);
  TORCH_CHECK(gates.size(0) == batch, "gates must have ", batch, " rows");
  TORCH_CHECK(row_ptr.size(0) == num_rows + 1 && row_gate.size(0) == num_rows, "row_ptr/row_gate length");
  TORCH_CHECK(col.size(0) == values.size(0), "col and values must have one entry per path");
  TORCH_CHECK(segments >= 1, "segments must be >= 1, got ", segments);
  if (segments > 1) {
    check(seg_ptr, at::kInt, 1, "seg_ptr");
    TORCH_CHECK(seg_ptr.size(0) == num_rows * segments + 1, "seg_ptr must have R * segments + 1 entries");
  }
  const bool by_gate = row_order.numel() > 0;
  if (by_gate) {
    check(row_order, at::kInt, 1, "row_order");
    TORCH_CHECK(row_order.size(0) == num_rows, "row_order must hold every row once, got ", row_order.size(0));
    TORCH_CHECK(segments == 1, "the gate-major order takes no input segments");
  }

  at::Tensor xt = to_tiles(x_tilde.data_ptr<float>(), batch, n_in);      // [T, n_in, 16]
  at::Tensor gm = gate_masks(gates.data_ptr<uint8_t>(), batch, n_gates);  // [ceil(T / 4), n_gates, 4] bit masks
  at::Tensor yt = at::empty({tiles, n_out, kT}, at::kFloat);               // [T, n_out, 16], all written
  if (by_gate) {
    forward_by_gate(xt, gm, row_ptr, col, row_out, row_gate, values, row_order, tiles_per_group, chunk_paths,
                    skip_off_rows != 0, yt);
  } else {
    forward_by_output(xt, gm, row_ptr, col, row_out, row_gate, values, seg_ptr, segments, tiles_per_group,
                      chunk_paths, skip_off_rows != 0, yt);
  }
  return {tiles_to_rows(yt, bias, batch), xt, gm};
}


struct Backward {
  const float* xp;     // [T, n_in, 16]
  const uint16_t* gm;  // [ceil(T / 4), n_gates, 4] gate bit masks (gate_masks)
  const float* gyp;    // [T, n_out, 16]
  const int32_t* cp;   // [P]
  const int32_t* pr;   // [P]
  const int64_t* ro;   // [R]
  const int32_t* pg;   // [P] each path's gate column, row_gate[path_row]
  float* gv;           // [P]
  int64_t n_in, n_gates, n_out, num_paths, tiles;
};

// A tile's gate mask as the masked vector instructions take it: with AVX-512 a mask register, loaded from memory.
#if defined(__AVX512F__)
typedef __mmask16 MaskT;
#else
typedef uint32_t MaskT;
#endif
// The masks p[0..NT) of one gate and tile group (gate_masks). Two ways into the mask registers, the same masks (the
// backward's `mask_path` picks one, timed per CPU by glai/kernels/estimator/tuning.py):
// - KMOV (1): a kmovw from memory, one load. GCC turns _load_mask16 into a 16-bit load into a general register and a
//   move from there into the mask register (with the sign shift of the second tile, 4 instructions per path where
//   the loop has 8 more), so the kmovw is written out.
// - through a general register (0): what the compiler emits for a 16-bit load and a mask conversion.
template <int NT, bool KMOV>
GLAI_INLINE void load_masks(const uint16_t* p, MaskT* m) {
  for (int t = 0; t < NT; ++t) {
#if defined(__AVX512F__) && !defined(__clang__)
    if constexpr (KMOV) {
      __asm__("kmovw %1, %0" : "=k"(m[t]) : "m"(p[t]));
    } else {
      m[t] = _cvtu32_mask16(p[t]);
    }
#elif defined(__AVX512F__)
    m[t] = _load_mask16(reinterpret_cast<__mmask16*>(const_cast<uint16_t*>(p + t)));
#else
    m[t] = p[t];
#endif
  }
}

// d * x in the lanes whose bit is set in mask, +0 elsewhere (one zero-masked multiply with AVX-512) ...
GLAI_INLINE v16f mul_masked(v16f d, v16f x, MaskT mask) {
#if defined(__AVX512F__)
  return (v16f)_mm512_maskz_mul_ps(static_cast<__mmask16>(mask), (__m512)d, (__m512)x);
#else
  return masked(d, mask) * x;
#endif
}
// ... and m + d * x in the lanes whose bit is set, m elsewhere (one masked fused multiply-add).
GLAI_INLINE v16f fma_masked_v(v16f m, v16f d, v16f x, MaskT mask) {
#if defined(__AVX512F__)
  return (v16f)_mm512_mask3_fmadd_ps((__m512)d, (__m512)x, (__m512)m, static_cast<__mmask16>(mask));
#else
  return m + masked(d, mask) * x;
#endif
}

// dvalues of path blocks k0..k1 (16 paths each) over tiles t0..t0+NT-1, added to (first: written into) gv. No
// coefficient dy * gate is stored: a block of one row reads its gate's masks once; a block of several rows of one
// output (short rows: the MiniLM block's median row holds 2 paths) reads each path's; either holds the output's dy in
// registers and masks each product dy * x by the gate's bits for the tile (a zero-masked multiply, then masked fused
// multiply-adds). Per-row coefficients [rows, tiles, 16] computed per chunk would cost a pass of their own and
// crowd the tiles' inputs out of L1 (the measurements: docs/FINDINGS.md).
template <int NT, bool KMOV>
void backward_group(const Backward& w, int64_t t0, int64_t k0, int64_t k1, bool first) {
  const float* x[NT];
  const float* dy[NT];
  for (int t = 0; t < NT; ++t) {
    x[t] = w.xp + (t0 + t) * w.n_in * kT;
    dy[t] = w.gyp + (t0 + t) * w.n_out * kT;
  }
  const uint16_t* gm = group_base(w.gm, w.n_gates, t0);
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t p0 = k * kT;
    const int64_t n = std::min(kT, w.num_paths - p0);
    v16f m[kT];
    const int64_t o = w.ro[w.pr[p0]];
    if (n == kT && w.pr[p0] == w.pr[p0 + kT - 1]) {  // one row: its gate's masks once for the block
      v16f d[NT];
      for (int t = 0; t < NT; ++t) d[t] = load16(dy[t] + o * kT);
      MaskT mk[NT];
      load_masks<NT, KMOV>(gm + static_cast<int64_t>(w.pg[p0]) * kMaskTiles, mk);
#pragma GCC unroll 16
      for (int64_t j = 0; j < kT; ++j) {
        const int64_t i = static_cast<int64_t>(w.cp[p0 + j]) * kT;
        v16f acc = mul_masked(d[0], load16(x[0] + i), mk[0]);
        for (int t = 1; t < NT; ++t) acc = fma_masked_v(acc, d[t], load16(x[t] + i), mk[t]);
        m[j] = acc;
      }
    } else if (n == kT && w.ro[w.pr[p0 + kT - 1]] == o) {  // one output: its dy in registers, each path masked
      v16f d[NT];
      for (int t = 0; t < NT; ++t) d[t] = load16(dy[t] + o * kT);
#pragma GCC unroll 16
      for (int64_t j = 0; j < kT; ++j) {
        const int64_t i = static_cast<int64_t>(w.cp[p0 + j]) * kT;
        MaskT mk[NT];
        load_masks<NT, KMOV>(gm + static_cast<int64_t>(w.pg[p0 + j]) * kMaskTiles, mk);
        v16f acc = mul_masked(d[0], load16(x[0] + i), mk[0]);
        for (int t = 1; t < NT; ++t) acc = fma_masked_v(acc, d[t], load16(x[t] + i), mk[t]);
        m[j] = acc;
      }
    } else {
      for (int64_t j = 0; j < kT; ++j) {
        v16f acc = {0};
        if (j < n) {
          const int64_t i = static_cast<int64_t>(w.cp[p0 + j]) * kT, oj = w.ro[w.pr[p0 + j]] * kT;
          MaskT mk[NT];
          load_masks<NT, KMOV>(gm + static_cast<int64_t>(w.pg[p0 + j]) * kMaskTiles, mk);
          for (int t = 0; t < NT; ++t) acc = fma_masked_v(acc, load16(dy[t] + oj), load16(x[t] + i), mk[t]);
        }
        m[j] = acc;
      }
    }
    v16f s = reduce16(m);  // lane j: the sum of m[j]
    if (n == kT) {
      if (!first) s += load16(w.gv + p0);
      std::memcpy(w.gv + p0, &s, sizeof s);
    } else {
      float lanes[kT];
      std::memcpy(lanes, &s, sizeof s);
      for (int64_t j = 0; j < n; ++j) w.gv[p0 + j] = first ? lanes[j] : w.gv[p0 + j] + lanes[j];
    }
  }
}
std::tuple<at::Tensor, at::Tensor> estimator_bwd(
    const at::Tensor& grad_y, const at::Tensor& xt, const at::Tensor& gm, const at::Tensor& row_ptr,
    const at::Tensor& col, const at::Tensor& row_out, const at::Tensor& row_gate, const at::Tensor& path_row,
    const at::Tensor& path_gate, int64_t tiles_per_group, int64_t chunk_paths, int64_t mask_path) {
  check(grad_y, at::kFloat, 2, "grad_y");
  check(xt, at::kFloat, 3, "xt");
  check(gm, at::kShort, 3, "gm");
  check(row_ptr, at::kInt, 1, "row_ptr");
  check(col, at::kInt, 1, "col");
  check(row_out, at::kLong, 1, "row_out");
  check(row_gate, at::kLong, 1, "row_gate");
  check(path_row, at::kInt, 1, "path_row");
  check(path_gate, at::kInt, 1, "path_gate");
  TORCH_CHECK(tiles_per_group == 1 || tiles_per_group == 2 || tiles_per_group == 4, "tiles must be 1, 2 or 4, got ",
              tiles_per_group);
  TORCH_CHECK(chunk_paths >= 1, "chunk_paths must be >= 1, got ", chunk_paths);
  TORCH_CHECK(mask_path == 0 || mask_path == 1, "mask_path must be 0 or 1, got ", mask_path);
  const int64_t batch = grad_y.size(0), n_out = grad_y.size(1), tiles = num_tiles(batch);
  const int64_t num_paths = col.size(0);
  TORCH_CHECK(xt.size(0) == tiles && gm.size(0) == (tiles + kMaskTiles - 1) / kMaskTiles &&
                  gm.size(2) == kMaskTiles && xt.size(2) == kT,
              "xt/gm must come from the forward of this batch");
  TORCH_CHECK(path_row.size(0) == num_paths && path_gate.size(0) == num_paths,
              "path_row and path_gate must have one entry per path");

  at::Tensor gyt = to_tiles(grad_y.data_ptr<float>(), batch, n_out);  // [T, n_out, 16]
  // [P]: the first tile group writes every entry; an empty batch leaves zeros
  at::Tensor grad_values = tiles ? at::empty({num_paths}, at::kFloat) : at::zeros({num_paths}, at::kFloat);
  const Backward w{xt.data_ptr<float>(), reinterpret_cast<const uint16_t*>(gm.data_ptr<int16_t>()),
                   gyt.data_ptr<float>(), col.data_ptr<int32_t>(),
                   path_row.data_ptr<int32_t>(), row_out.data_ptr<int64_t>(), path_gate.data_ptr<int32_t>(),
                   grad_values.data_ptr<float>(), xt.size(1), gm.size(1), n_out, num_paths, tiles};
  const int64_t blocks = (num_paths + kT - 1) / kT;
  // Chunks of at most chunk_paths paths, as many as a multiple of the threads, of equal size (they split no sum:
  // dvalues do not depend on them).
  const int64_t threads = at::get_num_threads();
  int64_t chunks = (blocks + std::max<int64_t>(1, chunk_paths / kT) - 1) / std::max<int64_t>(1, chunk_paths / kT);
  chunks = std::min(blocks, (chunks + threads - 1) / threads * threads);
  const int64_t chunk_blocks = chunks ? (blocks + chunks - 1) / chunks : 1;
  chunks = chunks ? (blocks + chunk_blocks - 1) / chunk_blocks : 0;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t k0 = c * chunk_blocks, k1 = std::min(blocks, k0 + chunk_blocks);
      for_each_group(0, tiles, tiles_per_group, [&](auto nt, int64_t t) {
        if (mask_path == 1) {
          backward_group<decltype(nt)::value, true>(w, t, k0, k1, t == 0);
        } else {
          backward_group<decltype(nt)::value, false>(w, t, k0, k1, t == 0);
        }
      });
    }
  });
  return {grad_values, grad_y.sum(0)};
}

}  // namespace

TORCH_LIBRARY(glai_estimator_cpu, m) {
  m.def("fwd(Tensor x_tilde, Tensor gates, Tensor row_ptr, Tensor col, Tensor row_out, Tensor row_gate, "
        "Tensor values, Tensor bias, Tensor row_order, Tensor seg_ptr, int segments, int tiles, int chunk_paths, "
        "int skip_off_rows) -> "
        "(Tensor, Tensor, Tensor)");
  m.def("bwd(Tensor grad_y, Tensor xt, Tensor gm, Tensor row_ptr, Tensor col, Tensor row_out, Tensor row_gate, "
        "Tensor path_row, Tensor path_gate, int tiles, int chunk_paths, int mask_path) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(glai_estimator_cpu, CPU, m) {
  m.impl("fwd", &estimator_fwd);
  m.impl("bwd", &estimator_bwd);
}
