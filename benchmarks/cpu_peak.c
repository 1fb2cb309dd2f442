/*
 * The CPU's instruction peak for matrix products, the ceiling of `deploy.py`'s limit row: each thread (one per core,
 * OpenMP) runs independent chains of AVX-512 VNNI `vpdpbusd` (64 uint8 x int8 multiply-adds per instruction: the int8
 * kernels' instruction) and of fp32 `vfmadd231ps` (16 multiply-adds), in registers with no memory traffic, and times
 * short chunks (about a millisecond: shorter than a time slice, so some run unshared on a busy machine); a thread's rate is its best chunk, the machine's the sum over threads. A dependent chain of integer
 * adds (one per cycle) gives the clock the cores ran at. Prints one JSON line. Built and run by `deploy.py`:
 *
 *     cc -O2 -fopenmp -mavx512f -mavx512bw -mavx512vnni benchmarks/cpu_peak.c -o cpu_peak && ./cpu_peak
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define CHAINS(OP, TYPE, ZERO, A, B)                                                                      \
    TYPE c0 = ZERO, c1 = ZERO, c2 = ZERO, c3 = ZERO, c4 = ZERO, c5 = ZERO, c6 = ZERO, c7 = ZERO, c8 = ZERO, \
         c9 = ZERO, c10 = ZERO, c11 = ZERO;                                                               \
    for (long i = 0; i < iterations; i++) {                                                               \
        c0 = OP(c0, A, B); c1 = OP(c1, A, B); c2 = OP(c2, A, B); c3 = OP(c3, A, B);                       \
        c4 = OP(c4, A, B); c5 = OP(c5, A, B); c6 = OP(c6, A, B); c7 = OP(c7, A, B);                       \
        c8 = OP(c8, A, B); c9 = OP(c9, A, B); c10 = OP(c10, A, B); c11 = OP(c11, A, B);                   \
        /* the chains stay in registers and are not optimised away */                                    \
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5), "+v"(c6),        \
                         "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));                              \
    }

/* Operations per second of 12 independent chains (2 per multiply-add), one chunk of `iterations`. */
static double vnni_rate(long iterations) {
    __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5);
    double start = now();
    CHAINS(_mm512_dpbusd_epi32, __m512i, _mm512_setzero_si512(), a, b)
    return (double)iterations * 12 * 64 * 2 / (now() - start);
}

static double fma_rate(long iterations) {
    __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(1e-9f);
#define FMA(c, x, y) _mm512_fmadd_ps(x, y, c)
    double start = now();
    CHAINS(FMA, __m512, _mm512_setzero_ps(), a, b)
    return (double)iterations * 12 * 16 * 2 / (now() - start);
}

static double clock_rate(long iterations) {
    long x = 0;
    double start = now();
    for (long i = 0; i < iterations; i++)  /* ten adds a turn: the loop's own branch stays off the chain */
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
                         "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
                         : "+r"(x));
    return iterations * 10.0 / (now() - start);
}

int main(int argc, char **argv) {
    int chunks = 300;
    if (argc > 1) sscanf(argv[1], "%d", &chunks);
    double vnni = 0, fma = 0, clock = 0;
    int threads = 0;
#pragma omp parallel reduction(+ : vnni, fma, threads) reduction(max : clock)
    {
        double best_vnni = 0, best_fma = 0, best_clock = 0;
        for (int chunk = 0; chunk < chunks; chunk++) {  /* interleaved, so each sees the same machine */
            double rate = vnni_rate(200000);
            if (rate > best_vnni) best_vnni = rate;
            rate = fma_rate(200000);
            if (rate > best_fma) best_fma = rate;
            rate = clock_rate(300000);
            if (rate > best_clock) best_clock = rate;
        }
        vnni += best_vnni;
        fma += best_fma;
        clock = best_clock;
        threads += 1;
    }
    printf("{\"threads\": %d, \"clock_ghz\": %.3f, \"int8_vnni_gops\": %.1f, \"fp32_fma_gflops\": %.1f, "
           "\"int8_ops_per_cycle_per_core\": %.1f, \"fp32_flops_per_cycle_per_core\": %.1f}\n",
           threads, clock / 1e9, vnni / 1e9, fma / 1e9, vnni / threads / clock, fma / threads / clock);
    return 0;
}
