/* This core's float32 FMA peak: 24 independent AVX-512 multiply-add chains (enough to hide the FMA latency
 * on any x86 core with AVX-512), timed five times. The ceiling every engine's GFLOP/s in bench/ is read
 * against: torch's sgemm reaches ~85% of it on Zen 4.
 *   gcc -O2 -mavx512f bench/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

enum { CHAINS = 24 };

int main(void) {
    __m512 acc[CHAINS];
    const __m512 mul = _mm512_set1_ps(1.0000001f), add = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    const long steps = 50000000;
    for (int rep = 0; rep < 5; rep++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long n = 0; n < steps; n++) {
#pragma GCC unroll 24
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], mul, add);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        float sum = 0;  /* keeps the chains live */
        for (int i = 0; i < CHAINS; i++) sum += _mm512_reduce_add_ps(acc[i]);
        printf("%.1f GFLOP/s (checksum %g)\n", (double)steps * CHAINS * 16 * 2 / seconds / 1e9, sum);
    }
    return 0;
}
