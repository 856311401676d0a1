// The pruned GLAI estimator on CPU, compiled (backend "cpp"; glai/kernels/estimator/compiled.py builds it).
//
// Same (output, gate) row layout as the pure-PyTorch path (glai/kernels/estimator/layout.py):
//
//   forward   y[b, o] = sum_{r: o_r = o} gates[b, s_r] * sum_{p in r} values[p] * x~[b, i_p] + beta[o]
//   backward  dvalues[p] = sum_b dy[b, o_r] * gates[b, s_r] * x~[b, i_p],   dbeta[o] = sum_b dy[b, o]
//
// The batch is the vector dimension: x~ is transposed to xt [n_in, Bp] (Bp = B rounded up to 16, zero-padded),
// so one path costs one 16-float load and one fused multiply-add per 16 samples.
// - Forward: four independent accumulators per row break the multiply-add latency chain.
// - Backward: 16 consecutive paths at a time, each a 16-lane product accumulated over the batch tiles, then a
//   transpose-reduction (4 levels of two-vector shuffles) that leaves path j's sum in lane j: no per-path
//   horizontal sum.
// Both are deterministic: every sum runs in a fixed order, whatever the number of threads (the forward is
// parallel over outputs, the backward over blocks of paths; each writes its own entries).
// Written with GCC/Clang vector extensions (GCC >= 12 or Clang for __builtin_shufflevector), which the compiler
// lowers to AVX-512, AVX2 or NEON as the build machine allows.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <cstring>

namespace {

constexpr int64_t kT = 16;  // samples per vector, and paths per transpose-reduction block
constexpr int64_t kPrefetch = 64;  // paths ahead whose input rows the kernels prefetch
typedef float v16f __attribute__((vector_size(64)));

inline v16f load16(const float* p) {
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

// Transpose-reduction of 16 vectors: lane j of the result is the sum of the 16 lanes of m[j].
inline v16f reduce16(const v16f* m) {
  v16f t[8], u[4], v[2];
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) t[j] = GLAI_FOLD16(m[j], m[j + 8]);
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) u[j] = GLAI_FOLD8(t[j], t[j + 4]);
  for (int j = 0; j < 2; ++j) v[j] = GLAI_FOLD4(u[j], u[j + 2]);
  return GLAI_FOLD2(v[0], v[1]);
}

int64_t padded(int64_t batch) { return (batch + kT - 1) / kT * kT; }

void check(const at::Tensor& t, at::ScalarType dtype, int64_t dim, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, name, " must have ", dim, " dimensions, got ", t.dim());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// [B, n] row-major -> [n, Bp] (zero-padded columns B..Bp).
template <typename In>
at::Tensor transpose_padded(const In* src, int64_t batch, int64_t n, int64_t bp) {
  at::Tensor out = at::zeros({n, bp}, at::kFloat);
  float* dst = out.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    const In* row = src + b * n;
    for (int64_t j = 0; j < n; ++j) dst[j * bp + b] = static_cast<float>(row[j]);
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> estimator_fwd(
    const at::Tensor& x_tilde, const at::Tensor& gates, const at::Tensor& row_ptr, const at::Tensor& col,
    const at::Tensor& row_out, const at::Tensor& row_gate, const at::Tensor& values, const at::Tensor& bias) {
  check(x_tilde, at::kFloat, 2, "x_tilde");
  check(gates, at::kByte, 2, "gates");
  check(row_ptr, at::kInt, 1, "row_ptr");
  check(col, at::kInt, 1, "col");
  check(row_out, at::kLong, 1, "row_out");
  check(row_gate, at::kLong, 1, "row_gate");
  check(values, at::kFloat, 1, "values");
  check(bias, at::kFloat, 1, "bias");
  const int64_t batch = x_tilde.size(0), n_in = x_tilde.size(1), n_gates = gates.size(1);
  const int64_t n_out = bias.size(0), num_rows = row_out.size(0), num_paths = col.size(0), bp = padded(batch);
  TORCH_CHECK(gates.size(0) == batch, "gates must have ", batch, " rows");
  TORCH_CHECK(row_ptr.size(0) == num_rows + 1 && row_gate.size(0) == num_rows, "row_ptr/row_gate length");
  TORCH_CHECK(col.size(0) == values.size(0), "col and values must have one entry per path");

  at::Tensor xt = transpose_padded(x_tilde.data_ptr<float>(), batch, n_in, bp);  // [n_in, Bp]
  at::Tensor gt = transpose_padded(gates.data_ptr<uint8_t>(), batch, n_gates, bp);  // [n_gates, Bp]
  at::Tensor yt = at::zeros({n_out, bp}, at::kFloat);                                // [n_out, Bp]
  const float* xp = xt.data_ptr<float>();
  const float* gp = gt.data_ptr<float>();
  const float* vp = values.data_ptr<float>();
  const int32_t* rp = row_ptr.data_ptr<int32_t>();
  const int32_t* cp = col.data_ptr<int32_t>();
  const int64_t* ro = row_out.data_ptr<int64_t>();
  const int64_t* rg = row_gate.data_ptr<int64_t>();
  float* yp = yt.data_ptr<float>();

  // Rows are sorted by output: out_row[o]..out_row[o+1] are output o's rows.
  std::vector<int64_t> out_row(n_out + 1, 0);
  for (int64_t r = 0; r < num_rows; ++r) out_row[ro[r] + 1] += 1;
  for (int64_t o = 0; o < n_out; ++o) out_row[o + 1] += out_row[o];

  at::parallel_for(0, n_out, 1, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      float* yo = yp + o * bp;
      for (int64_t r = out_row[o]; r < out_row[o + 1]; ++r) {
        const float* g = gp + rg[r] * bp;
        const int32_t start = rp[r], end = rp[r + 1];
        for (int64_t b0 = 0; b0 < bp; b0 += kT) {
          v16f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
          int32_t p = start;
          for (; p + 4 <= end; p += 4) {
            if (bp == kT && p + kPrefetch + 4 <= num_paths) {  // paths ahead, across rows
              for (int q = 0; q < 4; ++q) __builtin_prefetch(xp + static_cast<int64_t>(cp[p + kPrefetch + q]) * kT);
            }
            a0 += vp[p] * load16(xp + static_cast<int64_t>(cp[p]) * bp + b0);
            a1 += vp[p + 1] * load16(xp + static_cast<int64_t>(cp[p + 1]) * bp + b0);
            a2 += vp[p + 2] * load16(xp + static_cast<int64_t>(cp[p + 2]) * bp + b0);
            a3 += vp[p + 3] * load16(xp + static_cast<int64_t>(cp[p + 3]) * bp + b0);
          }
          for (; p < end; ++p) a0 += vp[p] * load16(xp + static_cast<int64_t>(cp[p]) * bp + b0);
          const v16f acc = load16(yo + b0) + load16(g + b0) * ((a0 + a1) + (a2 + a3));
          std::memcpy(yo + b0, &acc, sizeof acc);
        }
      }
    }
  });

  at::Tensor y = at::empty({batch, n_out}, at::kFloat);  // [B, n_out]
  float* out = y.data_ptr<float>();
  const float* beta = bias.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t o = 0; o < n_out; ++o) out[b * n_out + o] = yp[o * bp + b] + beta[o];
  return {y, xt, gt};
}

std::tuple<at::Tensor, at::Tensor> estimator_bwd(
    const at::Tensor& grad_y, const at::Tensor& xt, const at::Tensor& gt, const at::Tensor& row_ptr,
    const at::Tensor& col, const at::Tensor& row_out, const at::Tensor& row_gate, const at::Tensor& path_row) {
  check(grad_y, at::kFloat, 2, "grad_y");
  check(xt, at::kFloat, 2, "xt");
  check(gt, at::kFloat, 2, "gt");
  check(row_ptr, at::kInt, 1, "row_ptr");
  check(col, at::kInt, 1, "col");
  check(row_out, at::kLong, 1, "row_out");
  check(row_gate, at::kLong, 1, "row_gate");
  check(path_row, at::kInt, 1, "path_row");
  const int64_t batch = grad_y.size(0), n_out = grad_y.size(1), bp = xt.size(1);
  const int64_t num_rows = row_out.size(0), num_paths = col.size(0);
  TORCH_CHECK(bp == padded(batch) && gt.size(1) == bp, "xt/gt must come from the forward of this batch");
  TORCH_CHECK(path_row.size(0) == num_paths, "path_row must have one entry per path");

  at::Tensor gyt = transpose_padded(grad_y.data_ptr<float>(), batch, n_out, bp);  // [n_out, Bp]
  at::Tensor coef = at::empty({num_rows, bp}, at::kFloat);  // [R, Bp]: dy[b, o_r] * gates[b, s_r]
  const float* gyp = gyt.data_ptr<float>();
  const float* gp = gt.data_ptr<float>();
  const float* xp = xt.data_ptr<float>();
  const int64_t* ro = row_out.data_ptr<int64_t>();
  const int64_t* rg = row_gate.data_ptr<int64_t>();
  const int32_t* cp = col.data_ptr<int32_t>();
  const int32_t* pr = path_row.data_ptr<int32_t>();
  float* cf = coef.data_ptr<float>();
  at::parallel_for(0, num_rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* g = gp + rg[r] * bp;
      const float* dy = gyp + ro[r] * bp;
      float* c = cf + r * bp;
      for (int64_t b = 0; b < bp; ++b) c[b] = dy[b] * g[b];
    }
  });

  at::Tensor grad_values = at::empty({num_paths}, at::kFloat);  // [P]
  float* gv = grad_values.data_ptr<float>();
  const int64_t blocks = (num_paths + kT - 1) / kT;
  at::parallel_for(0, blocks, 256, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t p0 = k * kT;
      const int64_t n = std::min(kT, num_paths - p0);
      v16f m[kT];
      if (n == kT && bp == kT) {  // the training batch: one tile, a full block (straight-line code)
        if (p0 + kPrefetch + kT <= num_paths) {  // xt rows of a block ahead (scattered: the prefetcher misses them)
#pragma GCC unroll 16
          for (int64_t j = 0; j < kT; ++j) __builtin_prefetch(xp + static_cast<int64_t>(cp[p0 + kPrefetch + j]) * kT);
        }
#pragma GCC unroll 16
        for (int64_t j = 0; j < kT; ++j)
          m[j] = load16(cf + static_cast<int64_t>(pr[p0 + j]) * kT) * load16(xp + static_cast<int64_t>(cp[p0 + j]) * kT);
      } else {
        for (int64_t j = 0; j < kT; ++j) {
          v16f acc = {0};
          if (j < n) {
            const float* c = cf + static_cast<int64_t>(pr[p0 + j]) * bp;
            const float* x = xp + static_cast<int64_t>(cp[p0 + j]) * bp;
            for (int64_t b0 = 0; b0 < bp; b0 += kT) acc += load16(c + b0) * load16(x + b0);
          }
          m[j] = acc;
        }
      }
      const v16f s = reduce16(m);  // lane j: the sum of m[j]
      if (n == kT) {
        std::memcpy(gv + p0, &s, sizeof s);
      } else {
        float lanes[kT];
        std::memcpy(lanes, &s, sizeof s);
        for (int64_t j = 0; j < n; ++j) gv[p0 + j] = lanes[j];
      }
    }
  });
  return {grad_values, grad_y.sum(0)};
}

}  // namespace

TORCH_LIBRARY(glai_estimator_cpu, m) {
  m.def("fwd(Tensor x_tilde, Tensor gates, Tensor row_ptr, Tensor col, Tensor row_out, Tensor row_gate, "
        "Tensor values, Tensor bias) -> (Tensor, Tensor, Tensor)");
  m.def("bwd(Tensor grad_y, Tensor xt, Tensor gt, Tensor row_ptr, Tensor col, Tensor row_out, Tensor row_gate, "
        "Tensor path_row) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(glai_estimator_cpu, CPU, m) {
  m.impl("fwd", &estimator_fwd);
  m.impl("bwd", &estimator_bwd);
}
