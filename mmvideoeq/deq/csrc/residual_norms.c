/* Fused residual norms for the fixed-point solver on CPU (see mmvideoeq/deq/native.py).
 *
 * For each of `batch` rows of `n` contiguous elements it adds
 *     out[2 b]     += sum_i (a[b, i] - z[b, i])^2
 *     out[2 b + 1] += sum_i  a[b, i]^2
 * reading `a` (the image f(z)) and `z` (the iterate) once and writing nothing else: the plain
 * PyTorch path must materialise a - z, which on the 2-core CPU made the residual cost about twice
 * the memory traffic. Products and sums are formed in double (exact products for float input),
 * so the result is at least as accurate as torch's float32 reductions. Single-threaded on
 * purpose: a second thread competes with PyTorch's spinning OpenMP workers (measured 8x slower).
 */
#include <stdint.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MMVEQ_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MMVEQ_CLONES
#endif

/* One kernel per element type T; sums in double (for float input the products are exact). */
#define MMVEQ_RESIDUAL_NORMS(NAME, T)                                                          \
    MMVEQ_CLONES                                                                                \
    void NAME(const T *a, const T *z, int64_t n, int64_t batch, double *out) {                 \
        for (int64_t b = 0; b < batch; b++) {                                                  \
            const T *restrict ab = a + b * n;                                                  \
            const T *restrict zb = z + b * n;                                                  \
            double g = 0.0, m = 0.0;                                                           \
            _Pragma("omp simd reduction(+ : g, m)") for (int64_t i = 0; i < n; i++) {          \
                double ai = (double)ab[i];                                                     \
                double d = ai - (double)zb[i];                                                 \
                g += d * d;                                                                    \
                m += ai * ai;                                                                  \
            }                                                                                  \
            out[2 * b] += g;                                                                   \
            out[2 * b + 1] += m;                                                               \
        }                                                                                      \
    }

MMVEQ_RESIDUAL_NORMS(mmveq_residual_norms_f32, float)
MMVEQ_RESIDUAL_NORMS(mmveq_residual_norms_f64, double)

/* Version of this interface, checked by the loader. */
int mmveq_residual_norms_abi(void) { return 1; }
