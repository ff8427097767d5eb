// Permutohedral lattice construction with keys packed into one 64-bit word (PermutohedralLattice
// with PackedKeyTable in Permutohedral.swift is the reference: this file does its float operations
// in the same order, so the offsets, weights, vertex ids and neighbours are the same, tested).
//
// What it does differently: the pixels are taken in blocks of 8; the first pass over a block
// computes every pixel's simplex (elevation, rounding, ranks, barycentric weights; for d = 5 with
// AVX2 all 8 at once, one per lane) and its corner keys, and asks for the table slots of the keys
// the recent-key cache cannot answer; the second pass inserts them, by then mostly in cache. The
// table holds keys alone at load <= 1/2 (ids beside them), sized to the image rather than to a
// bound. Tried and dropped: running pass 1 a block ahead of pass 2 (no gain).
#include "unseg_kernels.h"
#include <stdlib.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#define MAX_D 16
#define BLOCK 8
#define RECENT 256

struct unseg_lattice {
    int d, bits;
    int64_t count, key_capacity;
    uint64_t *keys;                 // [count] packed key of each vertex, in id order
    // Open addressing, linear probing, load <= 1/2: the keys alone (0 = empty: the bias keeps every
    // field of a real key positive), so a probe for an absent key, the common case when looking
    // for neighbours, reads one array; the id of a found key is beside it in `slot_ids`.
    uint64_t *slot_keys;
    int32_t *slot_ids;
    uint64_t mask;
    int shift;
    uint64_t recent_keys[RECENT];   // direct-mapped cache of recently inserted keys
    int32_t recent_ids[RECENT];
};

static inline uint64_t slot_of(const unseg_lattice *t, uint64_t k) {
    return ((k ^ (k >> 31)) * 0x9E3779B97F4A7C15ULL) >> t->shift;
}

static inline unsigned recent_of(uint64_t k) { return (unsigned)((k * 0x9E3779B97F4A7C15ULL) >> 56); }

static int alloc_slots(unseg_lattice *t, uint64_t capacity, int bits) {
    uint64_t *keys = (uint64_t *)calloc(capacity, sizeof(uint64_t));
    int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * capacity);
    if (!keys || !ids) { free(keys); free(ids); return -1; }
    t->slot_keys = keys;
    t->slot_ids = ids;
    t->mask = capacity - 1;
    t->shift = 64 - bits;
    return 0;
}

static int grow(unseg_lattice *t) {
    uint64_t *old_keys = t->slot_keys;
    int32_t *old_ids = t->slot_ids;
    uint64_t capacity = (t->mask + 1) * 2;
    if (alloc_slots(t, capacity, 64 - t->shift + 1) != 0) return -1;
    free(old_keys);
    free(old_ids);
    for (int64_t i = 0; i < t->count; i++) {
        uint64_t s = slot_of(t, t->keys[i]);
        while (t->slot_keys[s] != 0) s = (s + 1) & t->mask;
        t->slot_keys[s] = t->keys[i];
        t->slot_ids[s] = (int32_t)i;
    }
    return 0;
}

// Id of key k, inserted (next id) when absent; -1 when memory ran out.
static inline __attribute__((always_inline)) int32_t insert(unseg_lattice *t, uint64_t k) {
    const unsigned ci = recent_of(k);
    if (t->recent_keys[ci] == k && t->recent_ids[ci] >= 0) return t->recent_ids[ci];
    if ((uint64_t)(t->count + 1) * 2 > t->mask + 1 && grow(t) != 0) return -1;
    uint64_t s = slot_of(t, k);
    int32_t id;
    for (;;) {
        const uint64_t e = t->slot_keys[s];
        if (e == 0) {
            if (t->count == t->key_capacity) {
                int64_t capacity = t->key_capacity * 2;
                uint64_t *keys = (uint64_t *)realloc(t->keys, sizeof(uint64_t) * (size_t)capacity);
                if (!keys) return -1;
                t->keys = keys;
                t->key_capacity = capacity;
            }
            id = (int32_t)t->count;
            t->keys[t->count++] = k;
            t->slot_keys[s] = k;
            t->slot_ids[s] = id;
            break;
        }
        if (e == k) { id = t->slot_ids[s]; break; }
        s = (s + 1) & t->mask;
    }
    t->recent_keys[ci] = k;
    t->recent_ids[ci] = id;
    return id;
}

// Id of key k starting the probe at slot s (= slot_of(k)), or -1.
static inline int32_t find_from(const unseg_lattice *t, uint64_t k, uint64_t s) {
    for (;;) {
        const uint64_t e = t->slot_keys[s];
        if (e == 0) return -1;
        if (e == k) return t->slot_ids[s];
        s = (s + 1) & t->mask;
    }
}

void unseg_lattice_free(unseg_lattice *t) {
    if (!t) return;
    free(t->keys);
    free(t->slot_keys);
    free(t->slot_ids);
    free(t);
}

// One point's simplex: remainder-0 point r0, ranks rk, barycentric weights b (PermutohedralLattice.build).
static inline __attribute__((always_inline)) void simplex(const float *f, int d, const float *scale, float down, float up, int64_t *r0, int64_t *rk,
                           float *b) {
    const int d1 = d + 1;
    float el[MAX_D + 1], res[MAX_D + 1];
    float sm = 0;
    for (int j = d; j > 0; j--) {
        const float cf = f[j - 1] * scale[j - 1];
        el[j] = sm - (float)j * cf;
        sm += cf;
    }
    el[0] = sm;
    int64_t sum = 0;
    for (int i = 0; i <= d; i++) {
        const float v = down * el[i];
        const float near = (v + 12582912.0f) - 12582912.0f;
        const float fl = near > v ? near - 1 : near, ce = near < v ? near + 1 : near;
        const float upV = ce * up, downV = fl * up;
        const int64_t q = (int64_t)(upV - el[i] < el[i] - downV ? ce : fl);
        r0[i] = q * d1;
        sum += q;
    }
    for (int i = 0; i <= d; i++) { rk[i] = 0; res[i] = el[i] - (float)r0[i]; }
    for (int i = 0; i < d; i++) {
        const float di = res[i];
        int64_t ri = rk[i];
        for (int j = i + 1; j <= d; j++) {
            const int64_t c = di < res[j] ? 1 : 0;
            ri += c;
            rk[j] += 1 - c;
        }
        rk[i] = ri;
    }
    for (int i = 0; i <= d; i++) {
        rk[i] += sum;
        if (rk[i] < 0) {
            rk[i] += d1; r0[i] += d1;
        } else if (rk[i] > d) {
            rk[i] -= d1; r0[i] -= d1;
        }
    }
    for (int i = 0; i <= d + 1; i++) b[i] = 0;
    for (int i = 0; i <= d; i++) {
        const float v = (el[i] - (float)r0[i]) * down;
        b[d - rk[i]] += v;
        b[d - rk[i] + 1] -= v;
    }
    b[0] += 1 + b[d + 1];
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define LATTICE_X86 1
// `simplex` for 8 points of dimension 5 at once (one point per lane), the same float operations in
// the same order, so the same bits. The barycentric scatter `b[d - rk_i] += v_i; b[d - rk_i + 1]
// -= v_i` becomes a gather by rank: b[r] = w[d - r] - w[d - r + 1] with w[k] the v of the
// coordinate of rank k (each b[r] gets exactly one + and one - term, and 0 + a - b = 0 - b + a = a - b).
__attribute__((target("avx2"))) static void simplex8_d5(const float *f, const float *scale, float down, float up,
                                                         int64_t r0o[][MAX_D + 1], int64_t rko[][MAX_D + 1],
                                                         float bo[][MAX_D + 2]) {
    const __m256i idx = _mm256_setr_epi32(0, 5, 10, 15, 20, 25, 30, 35);
    __m256 fv[5], el[6], res[6], w[6], b[7];
    __m256i r0[6], rk[6];
    for (int j = 0; j < 5; j++) fv[j] = _mm256_i32gather_ps(f + j, idx, 4);
    __m256 sm = _mm256_setzero_ps();
    for (int j = 5; j > 0; j--) {
        const __m256 cf = _mm256_mul_ps(fv[j - 1], _mm256_set1_ps(scale[j - 1]));
        el[j] = _mm256_sub_ps(sm, _mm256_mul_ps(_mm256_set1_ps((float)j), cf));
        sm = _mm256_add_ps(sm, cf);
    }
    el[0] = sm;
    const __m256 vdown = _mm256_set1_ps(down), vup = _mm256_set1_ps(up), magic = _mm256_set1_ps(12582912.0f);
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256i sum = _mm256_setzero_si256();
    for (int i = 0; i < 6; i++) {
        const __m256 v = _mm256_mul_ps(vdown, el[i]);
        const __m256 near = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
        const __m256 fl = _mm256_blendv_ps(near, _mm256_sub_ps(near, one), _mm256_cmp_ps(near, v, _CMP_GT_OQ));
        const __m256 ce = _mm256_blendv_ps(near, _mm256_add_ps(near, one), _mm256_cmp_ps(near, v, _CMP_LT_OQ));
        const __m256 upV = _mm256_mul_ps(ce, vup), downV = _mm256_mul_ps(fl, vup);
        const __m256 q = _mm256_blendv_ps(fl, ce, _mm256_cmp_ps(_mm256_sub_ps(upV, el[i]), _mm256_sub_ps(el[i], downV), _CMP_LT_OQ));
        const __m256i qi = _mm256_cvttps_epi32(q);
        r0[i] = _mm256_mullo_epi32(qi, _mm256_set1_epi32(6));
        sum = _mm256_add_epi32(sum, qi);
    }
    const __m256i ione = _mm256_set1_epi32(1);
    for (int i = 0; i < 6; i++) { rk[i] = _mm256_setzero_si256(); res[i] = _mm256_sub_ps(el[i], _mm256_cvtepi32_ps(r0[i])); }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 6; j++) {
            const __m256i c = _mm256_castps_si256(_mm256_cmp_ps(res[i], res[j], _CMP_LT_OQ));   // -1 where res_i < res_j
            rk[i] = _mm256_sub_epi32(rk[i], c);
            rk[j] = _mm256_add_epi32(rk[j], _mm256_add_epi32(ione, c));
        }
    const __m256i six = _mm256_set1_epi32(6), five = _mm256_set1_epi32(5), zero = _mm256_setzero_si256();
    for (int i = 0; i < 6; i++) {
        rk[i] = _mm256_add_epi32(rk[i], sum);
        const __m256i adj = _mm256_sub_epi32(_mm256_and_si256(_mm256_cmpgt_epi32(zero, rk[i]), six),
                                             _mm256_and_si256(_mm256_cmpgt_epi32(rk[i], five), six));
        rk[i] = _mm256_add_epi32(rk[i], adj);
        r0[i] = _mm256_add_epi32(r0[i], adj);
    }
    for (int k = 0; k < 6; k++) w[k] = _mm256_setzero_ps();
    for (int i = 0; i < 6; i++) {
        const __m256 v = _mm256_mul_ps(_mm256_sub_ps(el[i], _mm256_cvtepi32_ps(r0[i])), vdown);
        for (int k = 0; k < 6; k++)
            w[k] = _mm256_blendv_ps(w[k], v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(rk[i], _mm256_set1_epi32(k))));
    }
    for (int r = 1; r <= 5; r++) b[r] = _mm256_sub_ps(w[5 - r], w[6 - r]);
    b[0] = _mm256_add_ps(w[5], _mm256_add_ps(one, _mm256_sub_ps(_mm256_setzero_ps(), w[0])));
    int32_t ri[6][8], ki[6][8];
    float bf[6][8];
    for (int i = 0; i < 6; i++) {
        _mm256_storeu_si256((__m256i *)ri[i], r0[i]);
        _mm256_storeu_si256((__m256i *)ki[i], rk[i]);
        _mm256_storeu_ps(bf[i], b[i]);
    }
    for (int p = 0; p < 8; p++)
        for (int i = 0; i < 6; i++) { r0o[p][i] = ri[i][p]; rko[p][i] = ki[i][p]; bo[p][i] = bf[i][p]; }
}
#endif

// The build for one dimension d; inlined with d a constant (5 and 2, the dense CRF's) so the
// compiler unrolls the per-coordinate loops, and once with d a variable for the others.
static inline __attribute__((always_inline)) unseg_lattice *build(const float *features, int64_t n, const int d,
                                                                  const float *scale, int32_t *offsets, float *weights,
                                                                  int64_t *vertex_count, const int simd) {
    const int d1 = d + 1, bits = 64 / d;
    const int64_t bias = (int64_t)1 << (bits - 1);
    unseg_lattice *t = (unseg_lattice *)calloc(1, sizeof(unseg_lattice));
    if (!t) return NULL;
    t->d = d;
    t->bits = bits;
    int tb = 10;
    while (((uint64_t)1 << tb) < (uint64_t)(n > 0 ? n : 1) * 4) tb++;   // load <= 1/4 at M = n
    t->key_capacity = n > 256 ? n : 256;
    t->keys = (uint64_t *)malloc(sizeof(uint64_t) * (size_t)t->key_capacity);
    if (!t->keys || alloc_slots(t, (uint64_t)1 << tb, tb) != 0) { unseg_lattice_free(t); return NULL; }
    for (int i = 0; i < RECENT; i++) { t->recent_keys[i] = 0; t->recent_ids[i] = -1; }
    // canonical[r * d1 + j]: coordinate j of the remainder-r corner of the canonical simplex.
    int64_t canonical[(MAX_D + 1) * (MAX_D + 1)];
    for (int i = 0; i <= d; i++) {
        for (int j = 0; j <= d - i; j++) canonical[i * d1 + j] = i;
        for (int j = d - i + 1; j <= d; j++) canonical[i * d1 + j] = i - d1;
    }
    const float down = 1 / (float)d1, up = (float)d1;
    int64_t prev_r0[MAX_D + 1], prev_rk[MAX_D + 1];
    int64_t r0[BLOCK][MAX_D + 1], rk[BLOCK][MAX_D + 1];
    uint64_t keys[BLOCK][MAX_D + 1];
    int same[BLOCK];
    float bs[BLOCK][MAX_D + 2];
    (void)simd;   // unused without x86-64
    for (int64_t k0 = 0; k0 < n; k0 += BLOCK) {
        const int count = n - k0 < BLOCK ? (int)(n - k0) : BLOCK;
        // Pass 1: simplices, weights, corner keys; ask for the slots the recent cache will miss.
#ifdef LATTICE_X86
        const int wide = d == 5 && simd && count == BLOCK;
        if (wide) simplex8_d5(features + k0 * d, scale, down, up, r0, rk, bs);
#else
        const int wide = 0;
#endif
        for (int p = 0; p < count; p++) {
            const int64_t k = k0 + p;
            float *b = bs[p];
            if (!wide) simplex(features + k * d, d, scale, down, up, r0[p], rk[p], b);
            for (int r = 0; r <= d; r++) weights[k * d1 + r] = b[r];
            int s = k > 0;
            for (int i = 0; s && i <= d; i++) if (r0[p][i] != prev_r0[i] || rk[p][i] != prev_rk[i]) s = 0;
            same[p] = s;
            for (int i = 0; i <= d; i++) { prev_r0[i] = r0[p][i]; prev_rk[i] = rk[p][i]; }
            if (s) continue;
            for (int r = 0; r <= d; r++) {
                uint64_t key = 0;
                for (int i = 0; i < d; i++)
                    key |= (uint64_t)(r0[p][i] + canonical[r * d1 + rk[p][i]] + bias) << (i * bits);
                keys[p][r] = key;
                const unsigned ci = recent_of(key);
                if (t->recent_keys[ci] != key || t->recent_ids[ci] < 0) __builtin_prefetch(&t->slot_keys[slot_of(t, key)]);
            }
        }
        // Pass 2: the vertex ids, in the reference's insertion order.
        for (int p = 0; p < count; p++) {
            const int64_t k = k0 + p;
            if (same[p]) {
                for (int r = 0; r <= d; r++) offsets[k * d1 + r] = offsets[(k - 1) * d1 + r];
                continue;
            }
            for (int r = 0; r <= d; r++) {
                const int32_t id = insert(t, keys[p][r]);
                if (id < 0) { unseg_lattice_free(t); return NULL; }
                offsets[k * d1 + r] = id + 1;
            }
        }
    }
    *vertex_count = t->count;
    return t;
}

unseg_lattice *unseg_lattice_build(const float *features, int64_t n, int d, const float *scale, int32_t *offsets,
                                   float *weights, int64_t *vertex_count) {
    if (d < 2 || d > MAX_D || n < 0) return NULL;   // d = 1 would need 64-bit fields
#ifdef LATTICE_X86
    __builtin_cpu_init();
    const int simd = __builtin_cpu_supports("avx2");
#else
    const int simd = 0;
#endif
    switch (d) {
    case 5: return build(features, n, 5, scale, offsets, weights, vertex_count, simd);
    case 2: return build(features, n, 2, scale, offsets, weights, vertex_count, simd);
    default: return build(features, n, d, scale, offsets, weights, vertex_count, simd);
    }
}

void unseg_lattice_neighbors(const unseg_lattice *t, int32_t *neighbors) {
    const int d = t->d, bits = t->bits;
    const int64_t m = t->count;
    memset(neighbors, 0, sizeof(int32_t) * (size_t)(d + 1) * (size_t)m * 2);
    for (int j = 0; j <= d; j++) {
        // Packed offset to the first neighbour along j: key - 1 + (d+1) e_j (mod 2^64, as the reference).
        uint64_t delta = 0;
        for (int q = 0; q < d; q++) delta += (uint64_t)(int64_t)(q == j ? d : -1) * ((uint64_t)1 << (q * bits));
        int32_t *nj = neighbors + (size_t)j * (size_t)m * 2;
        // The probes are random reads: the slot of vertex i + AHEAD is computed (and its line
        // requested) AHEAD vertices before it is probed.
        enum { AHEAD = 16 };
        uint64_t ring[AHEAD];
        for (int64_t i = 0; i < AHEAD && i < m; i++) {
            ring[i] = slot_of(t, t->keys[i] + delta);
            __builtin_prefetch(&t->slot_keys[ring[i]]);
        }
        for (int64_t i = 0; i < m; i++) {
            const uint64_t s = ring[i % AHEAD];
            if (i + AHEAD < m) {
                const uint64_t ahead = slot_of(t, t->keys[i + AHEAD] + delta);
                ring[i % AHEAD] = ahead;
                __builtin_prefetch(&t->slot_keys[ahead]);
            }
            const int32_t a = find_from(t, t->keys[i] + delta, s);
            nj[2 * i] = a + 1;
            if (a >= 0) nj[2 * (int64_t)a + 1] = (int32_t)(i + 1);
        }
    }
}

int unseg_lattice_filter_ones(const int32_t *offsets, const float *weights, const int32_t *neighbors, int64_t n,
                              int d1, int64_t m, float alpha, float *out) {
    float *v = (float *)calloc((size_t)m + 1, sizeof(float));
    float *nv = (float *)calloc((size_t)m + 1, sizeof(float));
    if (!v || !nv) { free(v); free(nv); return -1; }
    for (int64_t i = 0; i < n; i++)
        for (int r = 0; r < d1; r++) v[offsets[i * d1 + r]] += weights[i * d1 + r];
    for (int j = 0; j < d1; j++) {
        const int32_t *nj = neighbors + (size_t)j * (size_t)m * 2;
        for (int64_t i = 0; i < m; i++) nv[i + 1] = v[i + 1] + 0.5f * (v[nj[2 * i]] + v[nj[2 * i + 1]]);
        float *t = v; v = nv; nv = t;
    }
    for (int64_t i = 0; i < n; i++) {
        float acc = 0;
        for (int r = 0; r < d1; r++) acc += (weights[i * d1 + r] * alpha) * v[offsets[i * d1 + r]];
        out[i] = acc;
    }
    free(v);
    free(nv);
    return 0;
}
