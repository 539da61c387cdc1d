/* kern_cuda_sample.cu — the next token chosen on the device (kern.h, kern_sample): greedy, or
 * temperature with top-k, top-p and min-p, after logit bias, the repetition / presence /
 * frequency penalties and a grammar's mask of allowed tokens (built on the host, a bit per
 * token), from a uniform the host drew, and the picks' log-probabilities when asked, so that
 * only the chosen ids (and logprobs) cross to the host. Driving thread.
 *
 * The rules are eng_sampler_sample's, step for step: bias then penalties (the host's float
 * operations, from its list of entries), banned tokens -inf (after both, so neither lifts a
 * ban: the host bans before the penalties, which leave -inf as it is), logits cleaned (NaN ->
 * -inf, +inf -> 3e38),
 * e = exp((x - max) / T) (0 below -88), candidates in id order, or sorted by (logit desc, id
 * asc) once top-k or top-p needs an order; top-k, then top-p (the shortest sorted prefix holding
 * top_p of the mass), then min-p (e >= min_p), then the first candidate whose running sum passes
 * u * total. What differs: expf is the device's (an ulp or two from glibc), and sums over the
 * whole vocabulary are per-thread runs joined by a fixed tree instead of one running sum, so a
 * pick can differ only where u * total falls within rounding of a boundary. Sorted candidates
 * (at most SAMPLE_CAP: the top k, or for top-p alone the first SAMPLE_CAP of the order, which
 * hold its prefix unless that is longer) are walked by one thread exactly as the host walks them.
 * Beyond that (top_k > 1024, or a top-p prefix of more than 1024 tokens: a very flat
 * distribution) the row's pick is -2 and the host samples it from the logits.
 *
 * One block of SAMPLE_THREADS per row; thread i owns a contiguous run of ids, so the runs in
 * thread order are the ids in order. Deterministic: no floating-point atomics (the radix
 * histogram counts with integer atomics, which commute). */
#include <math.h>

#include "kern_cuda_impl.h"

#define SAMPLE_THREADS 1024
#define SAMPLE_CAP 1024
static_assert(SAMPLE_CAP == SAMPLE_THREADS, "the id-order walk keeps a thread's last id in cand_id");

/* float -> uint32 with the same order (finite values and -inf) */
__device__ __forceinline__ uint32_t sample_key(float v)
{
    const uint32_t u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float sample_e(float x, float m, float inv_t)
{
    const float z = __fmul_rn(__fsub_rn(x, m), inv_t);
    return z < -88.0f ? 0.0f : expf(z);
}

/* Exclusive prefix sums over the block's threads, in thread order (Hillis-Steele on a shared
 * array of SAMPLE_THREADS; fixed order, so deterministic). Every thread gets its prefix, and
 * *total the sum. buf: shared scratch of SAMPLE_THREADS T. */
template <typename T> __device__ T sample_scan(T v, T *buf, T *total)
{
    const int tid = threadIdx.x;
    __syncthreads();
    buf[tid] = v;
    __syncthreads();
    for (int off = 1; off < SAMPLE_THREADS; off <<= 1) {
        const T add = tid >= off ? buf[tid - off] : (T)0;
        __syncthreads();
        buf[tid] += add;
        __syncthreads();
    }
    *total = buf[SAMPLE_THREADS - 1];
    return buf[tid] - v;
}

/* Block sum in a fixed tree order (for doubles and ints). */
template <typename T> __device__ T sample_sum(T v, T *buf)
{
    const int tid = threadIdx.x;
    __syncthreads();
    buf[tid] = v;
    __syncthreads();
    for (int s = SAMPLE_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) buf[tid] += buf[tid + s];
        __syncthreads();
    }
    return buf[0];
}

/* a comes before b: larger logit, then lower id */
__device__ __forceinline__ int sample_before(float xa, int ia, float xb, int ib)
{
    return xa > xb || (xa == xb && ia < ib);
}

struct sample_smem {
    double d[SAMPLE_THREADS];        /* double scans and sums */
    int i[SAMPLE_THREADS];           /* int scans and sums, the max's ids */
    float f[SAMPLE_THREADS];         /* the max's values */
    int cand_id[SAMPLE_CAP];         /* the sorted candidates */
    float cand_x[SAMPLE_CAP];
    float cand_e[SAMPLE_CAP];
    int hist[256];
    uint32_t sel[4];                 /* radix select: prefix, mask, rank left */
};

/* The want_k first of x[lo, hi) (this thread's run) in "before" order, over the whole block:
 * sorted into sm->cand_id / cand_x [0, n); returns n (want_k, at most SAMPLE_CAP). A radix
 * select of the want_k-th largest key, 8 bits at a time (candidates: the keys above it and the
 * first `ties` keys equal to it, in id order), a gather in id order, a bitonic sort. Called by
 * every thread of the block. */
__device__ int sample_top(const float *x, int lo, int hi, int want_k, sample_smem *smp)
{
    sample_smem &sm = *smp;
    const int tid = threadIdx.x;
    uint32_t prefix = 0, mask = 0, want = (uint32_t)want_k;
    for (int shift = 24; shift >= 0; shift -= 8) {
        __syncthreads();
        if (tid < 256) sm.hist[tid] = 0;
        __syncthreads();
        for (int i = lo; i < hi; i++) {
            if (x[i] == -INFINITY) continue;
            const uint32_t k = sample_key(x[i]);
            if ((k & mask) == prefix) atomicAdd(&sm.hist[(k >> shift) & 255u], 1);
        }
        __syncthreads();
        if (tid == 0) {
            uint32_t acc = 0;
            for (int b = 255; b >= 0; b--) {
                const uint32_t h = (uint32_t)sm.hist[b];
                if (acc + h >= want) {
                    sm.sel[0] = prefix | ((uint32_t)b << shift);
                    sm.sel[2] = want - acc;
                    break;
                }
                acc += h;
            }
            sm.sel[1] = mask | (255u << shift);
        }
        __syncthreads();
        prefix = sm.sel[0];
        mask = sm.sel[1];
        want = sm.sel[2];
    }
    const uint32_t thr = prefix;
    const int ties = (int)want;

    /* gather: every key > thr, and the first `ties` keys == thr in id order; then sort */
    int ngt = 0, neq = 0;
    for (int i = lo; i < hi; i++) {
        if (x[i] == -INFINITY) continue;
        const uint32_t k = sample_key(x[i]);
        ngt += k > thr;
        neq += k == thr;
    }
    int tot_gt, tot_eq;
    const int at_gt = sample_scan<int>(ngt, sm.i, &tot_gt);
    const int at_eq = sample_scan<int>(neq, sm.i, &tot_eq);
    int g = at_gt, q = at_eq;
    for (int i = lo; i < hi; i++) {
        if (x[i] == -INFINITY) continue;
        const uint32_t k = sample_key(x[i]);
        int slot = -1;
        if (k > thr) slot = g++;
        else if (k == thr) { if (q < ties) slot = tot_gt + q; q++; }
        if (slot >= 0 && slot < SAMPLE_CAP) {
            sm.cand_id[slot] = i;
            sm.cand_x[slot] = x[i];
        }
    }
    const int n = min(tot_gt + min(ties, tot_eq), SAMPLE_CAP);
    int np2 = 1;
    while (np2 < n) np2 <<= 1;
    __syncthreads();
    if (tid >= n && tid < np2) {   /* padding sorts last */
        sm.cand_id[tid] = 0x7fffffff;
        sm.cand_x[tid] = -INFINITY;
    }
    for (int k = 2; k <= np2; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            __syncthreads();
            const int a = tid, b = tid ^ j;
            if (a < np2 && b > a) {
                const int first = sample_before(sm.cand_x[a], sm.cand_id[a], sm.cand_x[b],
                                                sm.cand_id[b]);
                const int up = (a & k) == 0;   /* this pair's run is ascending in "before" */
                if (up ? !first : first) {
                    const int ti = sm.cand_id[a];
                    const float tx = sm.cand_x[a];
                    sm.cand_id[a] = sm.cand_id[b];
                    sm.cand_x[a] = sm.cand_x[b];
                    sm.cand_id[b] = ti;
                    sm.cand_x[b] = tx;
                }
            }
        }
    }
    __syncthreads();
    return n;
}

/* Row t of x [n][vocab] (cleaned in place), params p[t], pick out[t]. */
__global__ void __launch_bounds__(SAMPLE_THREADS)
kern_cuda_sample_k(float *__restrict__ x_all, int vocab, const kern_sample_params *__restrict__ prm,
                   const kern_sample_adj *__restrict__ adj, const uint32_t *__restrict__ allow,
                   int32_t *__restrict__ out)
{
    __shared__ sample_smem sm;
    const int t = blockIdx.x, tid = threadIdx.x;
    float *x = x_all + (int64_t)t * vocab;
    const kern_sample_params p = prm[t];
    const int run = (vocab + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int lo = min(vocab, tid * run), hi = min(vocab, lo + run);

    /* bias entries in their order (one thread: a token may be biased twice), then the penalty
     * entries (distinct tokens, in parallel); ids outside the row are never written */
    if (adj && (p.n_bias > 0 || p.n_pen > 0)) {
        const kern_sample_adj *a = adj + p.adj_off;
        if (tid == 0)
            for (int j = 0; j < p.n_bias; j++)
                if (a[j].token >= 0 && a[j].token < vocab)
                    x[a[j].token] = __fadd_rn(x[a[j].token], a[j].val);
        __syncthreads();
        for (int j = tid; j < p.n_pen; j += SAMPLE_THREADS) {
            const kern_sample_adj e = a[p.n_bias + j];
            if (e.token < 0 || e.token >= vocab) continue;
            float v = x[e.token];
            if (isnan(v)) continue;
            if (e.rep != 1.0f) v = v > 0.0f ? __fdiv_rn(v, e.rep) : __fmul_rn(v, e.rep);
            x[e.token] = __fsub_rn(v, e.val);
        }
        __syncthreads();
    }

    /* mask, clean, count the finite logits, and the max (lowest id on ties) */
    const uint32_t *mask = allow && p.has_allow ? allow + p.allow_off : NULL;
    float bm = -INFINITY;
    int bi = -1, nfin = 0;
    for (int i = lo; i < hi; i++) {
        float v = x[i];
        if (mask && !((mask[i >> 5] >> (i & 31)) & 1u)) v = -INFINITY;
        else if (isnan(v)) v = -INFINITY;
        else if (v == INFINITY) v = 3.0e38f;
        x[i] = v;
        if (v != -INFINITY) {
            nfin++;
            if (bi < 0 || v > bm) { bm = v; bi = i; }
        }
    }
    __syncthreads();
    sm.f[tid] = bm;
    sm.i[tid] = bi;
    __syncthreads();
    for (int s = SAMPLE_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) {
            const int j = sm.i[tid + s];
            if (j >= 0 && (sm.i[tid] < 0 || sm.f[tid + s] > sm.f[tid] ||
                           (sm.f[tid + s] == sm.f[tid] && j < sm.i[tid]))) {
                sm.f[tid] = sm.f[tid + s];
                sm.i[tid] = j;
            }
        }
        __syncthreads();
    }
    const int amax = sm.i[0];
    const float m = sm.f[0];
    const int n_fin = sample_sum<int>(nfin, sm.i);
    const float inv_t = p.temperature > 0.0f ? __fdiv_rn(1.0f, p.temperature) : INFINITY;
    if (amax < 0 || isinf(inv_t)) {   /* nothing finite (-1), or greedy */
        if (tid == 0) out[t] = amax;
        return;
    }

    const int topk = p.top_k > 0 && p.top_k < n_fin;
    const int topp = p.top_p < 1.0f;
    if (!topk && !topp) {
        /* id order: runs' sums, their prefix, and the run holding u * total walks it */
        double part = 0.0;
        for (int i = lo; i < hi; i++) {
            const float e = sample_e(x[i], m, inv_t);
            if (!(p.min_p > 0.0f && e < p.min_p)) part += e;
        }
        double total;
        double cum = sample_scan<double>(part, sm.d, &total);
        const double r = p.u * total;
        int pick = -1, last = -1;
        if (r >= cum && r < cum + part) {
            for (int i = lo; i < hi; i++) {
                const float e = sample_e(x[i], m, inv_t);
                if (p.min_p > 0.0f && e < p.min_p) continue;
                cum += e;
                if (r < cum && e > 0.0f) { pick = i; break; }
            }
        }
        for (int i = hi - 1; i >= lo && last < 0; i--) {
            const float e = sample_e(x[i], m, inv_t);
            if (e > 0.0f && !(p.min_p > 0.0f && e < p.min_p)) last = i;
        }
        /* the lowest claiming run wins (rounding can make two runs claim, or none: then the
         * last candidate, as the host's walk ends) */
        __syncthreads();
        sm.i[tid] = pick;
        sm.cand_id[tid] = last;   /* SAMPLE_CAP == SAMPLE_THREADS */
        __syncthreads();
        if (tid == 0) {
            int tok = -1;
            for (int k = 0; k < SAMPLE_THREADS && tok < 0; k++) tok = sm.i[k];
            for (int k = SAMPLE_THREADS - 1; k >= 0 && tok < 0; k--) tok = sm.cand_id[k];
            out[t] = tok < 0 ? amax : tok;
        }
        return;
    }

    /* ---- a sorted candidate set: the top k (top-k), or the top SAMPLE_CAP (top-p alone: its
     * kept prefix is the head of the same order, so whenever the first SAMPLE_CAP candidates
     * hold top_p of the mass they contain it; when they do not, the row goes to the host) ---- */
    double need = 0.0;         /* top-p without top-k: its target mass, from the whole row */
    int want_k;
    if (topk) {
        if (p.top_k > SAMPLE_CAP) {
            if (tid == 0) out[t] = -2;
            return;
        }
        want_k = p.top_k;
    } else {
        double part = 0.0;
        for (int i = lo; i < hi; i++) part += sample_e(x[i], m, inv_t);
        need = (double)p.top_p * sample_sum<double>(part, sm.d);
        want_k = min(n_fin, SAMPLE_CAP);
    }
    const int n = sample_top(x, lo, hi, want_k, &sm);
    if (tid != 0) return;

    /* the host's walk over the sorted candidates */
    int cn = n;
    double sum = 0.0;
    for (int j = 0; j < cn; j++) {
        sm.cand_e[j] = sample_e(sm.cand_x[j], m, inv_t);
        sum += sm.cand_e[j];
    }
    if (topp) {
        if (topk) need = (double)p.top_p * sum;
        double cum = 0.0;
        int held = 0;
        for (int j = 0; j < cn; j++) {
            cum += sm.cand_e[j];
            if (cum >= need) { cn = j + 1; held = 1; break; }
        }
        if (!held && !topk && n < n_fin) {   /* the prefix runs past SAMPLE_CAP candidates */
            out[t] = -2;
            return;
        }
    }
    if (p.min_p > 0.0f) {
        int k = 0;
        for (int j = 0; j < cn; j++) {
            if (sm.cand_e[j] >= p.min_p) {
                sm.cand_id[k] = sm.cand_id[j];
                sm.cand_e[k] = sm.cand_e[j];
                k++;
            }
        }
        cn = k;
    }
    double total = 0.0;
    for (int j = 0; j < cn; j++) total += sm.cand_e[j];
    const double r = p.u * total;
    int tok = sm.cand_id[cn - 1];
    double cum = 0.0;
    for (int j = 0; j < cn; j++) {
        cum += sm.cand_e[j];
        if (r < cum && sm.cand_e[j] > 0.0f) { tok = sm.cand_id[j]; break; }
    }
    out[t] = tok;
}

/* Row t's log-probabilities for its pick out[t] (rows with n_logprobs >= 0 and a pick >= 0):
 * as eng_sampler's fill_lp on the adjusted, cleaned row the sample kernel left in x: the log of
 * the sum of exp(x - max) over the finite logits in double (a fixed tree here, a running sum
 * there: the last bits of a double, gone in the float results), the pick's x - lse, and the
 * n_logprobs best tokens (sample_top). */
__global__ void __launch_bounds__(SAMPLE_THREADS)
kern_cuda_sample_lp_k(const float *__restrict__ x_all, int vocab,
                      const kern_sample_params *__restrict__ prm, const int32_t *__restrict__ out,
                      kern_sample_lp *__restrict__ lp)
{
    __shared__ sample_smem sm;
    const int t = blockIdx.x, tid = threadIdx.x;
    const int want = prm[t].n_logprobs, tok = out[t];
    if (want < 0 || tok < 0 || tok >= vocab) return;   /* uniform per block */
    const float *x = x_all + (int64_t)t * vocab;
    const int run = (vocab + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int lo = min(vocab, tid * run), hi = min(vocab, lo + run);
    float lm = -INFINITY;
    int nf = 0;
    for (int i = lo; i < hi; i++) {
        lm = fmaxf(lm, x[i]);
        nf += x[i] != -INFINITY;
    }
    __syncthreads();
    sm.f[tid] = lm;
    __syncthreads();
    for (int s = SAMPLE_THREADS / 2; s > 0; s >>= 1) {
        if (tid < s) sm.f[tid] = fmaxf(sm.f[tid], sm.f[tid + s]);
        __syncthreads();
    }
    const double m = (double)sm.f[0];
    double part = 0.0;
    for (int i = lo; i < hi; i++)
        if (x[i] != -INFINITY) part += exp((double)x[i] - m);
    const double lse = m + log(sample_sum<double>(part, sm.d));
    const int n_fin = sample_sum<int>(nf, sm.i);
    const int k = min(min(want, KERN_MAX_TOP_LOGPROBS), n_fin);
    const int n = k > 0 ? sample_top(x, lo, hi, k, &sm) : 0;
    if (tid != 0) return;
    kern_sample_lp *o = lp + t;
    o->token = tok;
    o->logprob = (float)((double)x[tok] - lse);
    o->n_top = n;
    for (int j = 0; j < n; j++) {
        o->top_ids[j] = sm.cand_id[j];
        o->top_logprobs[j] = (float)((double)sm.cand_x[j] - lse);
    }
}

int kern_cuda__sample(kern_cuda_ctx *c, float *x, int n, int vocab, const kern_sample_params *p,
                      const kern_sample_adj *adj, const uint32_t *allow, int32_t *out,
                      kern_sample_lp *lp)
{
    if (n <= 0 || n > 65535 || vocab <= 0) return KERN_E_INVAL;
    kern_cuda_sample_k<<<(unsigned)n, SAMPLE_THREADS, 0, c->stream>>>(x, vocab, p, adj, allow,
                                                                       out);
    KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_sample_k");
    if (lp) {
        kern_cuda_sample_lp_k<<<(unsigned)n, SAMPLE_THREADS, 0, c->stream>>>(x, vocab, p, out, lp);
        KERN_CUDA_CHECK_LAUNCH(c, "kern_cuda_sample_lp_k");
    }
    return KERN_OK;
}
