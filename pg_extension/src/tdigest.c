/*
 * tdigest.c — merging t-digest (k2 scale function normalised by n), the
 * PSGD wire format, and the CDF/quantile rules of docs/wire-format.md.
 *
 * No PostgreSQL calls and no allocation: see tdigest.h.
 */
#include "tdigest.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TD_SIGN_BIT UINT64_C(0x8000000000000000)

void
td_summary_init(TdSummary *s, int compression)
{
	memset(s, 0, sizeof(*s));
	s->compression = compression;
	s->min = 0.0;
	s->max = 0.0;
	s->sum = 0.0;
	s->sum_sq = 0.0;
}

uint32_t
td_centroid_bound(int compression)
{
	/*
	 * Greedy merging emits centroids c1..cm whose starts satisfy
	 * k(s[i+2]) - k(s[i]) > 1, so m < 2K + 4 with K = k(1-1/n) - k(1/n) =
	 * 2(δ/Z) ln(n-1).  Maximising over n (see docs/extension.md) gives
	 * 2K <= max(δ ln δ / 6, δ).  A margin absorbs rounding.
	 */
	double		d = (double) compression;
	double		b = d * log(d) / 6.0;
	double		bound;

	if (b < d)
		b = d;
	/* Heavy runs of ties (see merge_impl) may need up to four times as many. */
	bound = 4.0 * ceil(b * 1.02) + 16.0;
	if (bound > TD_MAX_CENTROIDS)
		bound = TD_MAX_CENTROIDS;
	return (uint32_t) bound;
}

/* ---------------------------------------------------------------------
 * Sorting
 * ---------------------------------------------------------------------
 */

/*
 * Insertion sort that gives up after `budget` element moves.  Returns true
 * when keys are sorted.  Either way keys remain a permutation of the input.
 */
static bool
insertion_sort_bounded(uint64_t *keys, size_t n, size_t budget)
{
	size_t		moves = 0;

	for (size_t i = 1; i < n; i++)
	{
		uint64_t	k = keys[i];
		size_t		j = i;

		while (j > 0 && keys[j - 1] > k)
		{
			keys[j] = keys[j - 1];
			j--;
		}
		keys[j] = k;
		moves += i - j;
		if (moves > budget)
			return false;
	}
	return true;
}

/* Plain LSD radix sort over all eight bytes, skipping bytes all keys share. */
static void
radix_sort_full(uint64_t *keys, uint64_t *scratch, size_t n)
{
	uint32_t	counts[8][256];
	uint64_t   *src = keys;
	uint64_t   *dst = scratch;

	memset(counts, 0, sizeof(counts));
	for (size_t i = 0; i < n; i++)
	{
		uint64_t	k = keys[i];

		for (int b = 0; b < 8; b++)
			counts[b][(k >> (8 * b)) & 0xff]++;
	}
	for (int pass = 0; pass < 8; pass++)
	{
		uint32_t   *c = counts[pass];
		int			shift = pass * 8;
		uint32_t	offset = 0;

		if (c[(src[0] >> shift) & 0xff] == n)
			continue;
		for (int b = 0; b < 256; b++)
		{
			uint32_t	cnt = c[b];

			c[b] = offset;
			offset += cnt;
		}
		for (size_t i = 0; i < n; i++)
		{
			uint64_t	k = src[i];

			dst[c[(k >> shift) & 0xff]++] = k;
		}
		{
			uint64_t   *t = src;

			src = dst;
			dst = t;
		}
	}
	if (src != keys)
		memcpy(keys, src, n * sizeof(uint64_t));
}

#define RADIX_BITS		12
#define RADIX_BUCKETS	(1 << RADIX_BITS)
#define RADIX_PASSES	2

/*
 * Sorting is most of the aggregate's own cost, so it sorts only what
 * matters: the 24 bits below the highest bit in which any two keys differ
 * (two 12-bit LSD passes).  Keys equal in those bits differ by less than
 * 2^-23 of the key range, so few are out of order, and a bounded insertion
 * sort puts them in order.  If
 * that takes too long (data concentrated in a tiny part of its range), a
 * full radix sort finishes the job.
 */
void
td_sort_keys(uint64_t *keys, uint64_t *scratch, size_t n)
{
	uint32_t	counts[RADIX_PASSES][RADIX_BUCKETS];
	uint64_t	diff = 0;
	uint64_t	first;
	int			top_bit;
	int			low_bit;
	uint64_t   *src = keys;
	uint64_t   *dst = scratch;

	if (n < 64)
	{
		(void) insertion_sort_bounded(keys, n, SIZE_MAX);
		return;
	}

	first = keys[0];
	for (size_t i = 1; i < n; i++)
		diff |= keys[i] ^ first;
	if (diff == 0)
		return;					/* all equal */
	top_bit = 63 - __builtin_clzll(diff);
	low_bit = top_bit + 1 - RADIX_BITS * RADIX_PASSES;
	if (low_bit < 0)
		low_bit = 0;

	memset(counts, 0, sizeof(counts));
	for (size_t i = 0; i < n; i++)
	{
		uint64_t	k = keys[i] >> low_bit;

		counts[0][k & (RADIX_BUCKETS - 1)]++;
		counts[1][(k >> RADIX_BITS) & (RADIX_BUCKETS - 1)]++;
	}
	for (int pass = 0; pass < RADIX_PASSES; pass++)
	{
		uint32_t   *c = counts[pass];
		int			shift = low_bit + pass * RADIX_BITS;
		uint32_t	offset = 0;

		if (shift > 63 || c[(src[0] >> shift) & (RADIX_BUCKETS - 1)] == n)
			continue;
		for (int b = 0; b < RADIX_BUCKETS; b++)
		{
			uint32_t	cnt = c[b];

			c[b] = offset;
			offset += cnt;
		}
		for (size_t i = 0; i < n; i++)
		{
			uint64_t	k = src[i];

			dst[c[(k >> shift) & (RADIX_BUCKETS - 1)]++] = k;
		}
		{
			uint64_t   *t = src;

			src = dst;
			dst = t;
		}
	}
	if (src != keys)
		memcpy(keys, src, n * sizeof(uint64_t));

	if (low_bit > 0 && !insertion_sort_bounded(keys, n, 8 * n))
		radix_sort_full(keys, scratch, n);
}

/* ---------------------------------------------------------------------
 * Merging
 * ---------------------------------------------------------------------
 */

/* Weight that the centroid starting after `before` may grow to (k2 bound). */
static inline double
k2_weight_limit(double before, double n, double odds_step)
{
	double		odds;

	/* k(0) = -inf: the first centroid (the minimum) never absorbs anything. */
	if (before <= 0.0)
		return 0.0;
	odds = before / (n - before) * odds_step;
	return n * (odds / (1.0 + odds));
}

/*
 * Mean of a group when its plain weighted sum overflowed: m1*(w1/W) + ...
 * never leaves the range of the means.
 */
static double
group_mean_safe(const double *am, const uint64_t *aw, uint32_t a0, uint32_t a1,
				const double *bm, const uint64_t *bw, const uint64_t *bkeys,
				uint32_t b0, uint32_t b1, double total_w)
{
	double		mean = 0.0;

	for (uint32_t i = a0; i < a1; i++)
		mean += am[i] * ((double) aw[i] / total_w);
	for (uint32_t i = b0; i < b1; i++)
	{
		if (bkeys)
			mean += td_double_from_key(bkeys[i]) * (1.0 / total_w);
		else
			mean += bm[i] * ((double) bw[i] / total_w);
	}
	return mean;
}

/*
 * The merge loop, specialised by the compiler for the two kinds of second
 * input: unit-weight points as sort keys (bkeys != NULL) or centroids.
 */
static inline __attribute__((always_inline)) uint32_t
merge_impl(int compression, uint64_t total,
		   const double *am, const uint64_t *aw, uint32_t na,
		   const double *bm, const uint64_t *bw, const uint64_t *bkeys, uint32_t nb,
		   double *om, uint64_t *ow, uint32_t ocap)
{
	double		n = (double) total;
	double		ratio = n / (double) compression;
	double		z;
	double		odds_step;
	uint32_t	ia = 0,
				ib = 0,
				no = 0;
	uint32_t	a_start = 0,
				b_start = 0;
	bool		have_cur = false;
	double		before = 0.0;	/* weight of the centroids already emitted */
	double		cur_sum = 0.0;	/* sum of mean*weight of the current group */
	double		cur_wd = 0.0;
	uint64_t	cur_w = 0;
	double		cur_lo = 0.0,
				cur_hi = 0.0;
	double		limit = 0.0;
	bool		have_light = false;	/* a run of ties already found light */
	double		light_value = 0.0;

	if (na + (uint64_t) nb == 0 || ocap == 0)
		return 0;

	if (ratio < 1.0)
		ratio = 1.0;
	z = 4.0 * log(ratio) + 24.0;
	/* k grows by one when the odds q/(1-q) grow by exp(Z/δ). */
	odds_step = exp(z / (double) compression);

#define EMIT_CURRENT() \
	do { \
		double mean_ = cur_sum / cur_wd; \
		if (!isfinite(cur_sum)) \
			mean_ = group_mean_safe(am, aw, a_start, ia, bm, bw, bkeys, b_start, ib, cur_wd); \
		if (mean_ < cur_lo) mean_ = cur_lo; \
		if (mean_ > cur_hi) mean_ = cur_hi; \
		om[no] = mean_ + 0.0;	/* -0.0 becomes +0.0 */ \
		ow[no] = cur_w; \
		no++; \
	} while (0)

	while (ia < na || ib < nb)
	{
		double		x;
		uint64_t	w;
		bool		take_a;

		if (ia < na)
		{
			if (ib < nb)
			{
				double		bx = bkeys ? td_double_from_key(bkeys[ib]) : bm[ib];

				take_a = am[ia] <= bx;
				x = take_a ? am[ia] : bx;
			}
			else
			{
				take_a = true;
				x = am[ia];
			}
		}
		else
		{
			take_a = false;
			x = bkeys ? td_double_from_key(bkeys[ib]) : bm[ib];
		}
		w = take_a ? aw[ia] : (bkeys ? 1 : bw[ib]);

		/*
		 * Heavy ties.  A run of equal values carrying at least an eighth of
		 * the weight a centroid may hold here becomes two centroids of
		 * exactly that value, which readers take as a point mass: discrete
		 * and rounded data keep exact CDF jumps instead of being smeared
		 * into their neighbours.  Needs three free slots (the current
		 * centroid and the pair) plus one for what follows.
		 */
		if (!(have_light && x == light_value))
		{
			uint32_t	ra = ia,
						rb = ib;
			uint64_t	run_w = 0;

			while (ra < na && am[ra] == x)
				run_w += aw[ra++];
			while (rb < nb && (bkeys ? td_double_from_key(bkeys[rb]) : bm[rb]) == x)
			{
				run_w += bkeys ? 1 : bw[rb];
				rb++;
			}
			if ((ra - ia) + (rb - ib) >= 2)
			{
				double		q = (before + (have_cur ? cur_wd : 0.0) + (double) run_w / 2.0) / n;
				double		local = n * q * (1.0 - q) * z / (double) compression;

				if (run_w >= 2 && (double) run_w * 8.0 >= local && no + 3 < ocap)
				{
					if (have_cur)
					{
						EMIT_CURRENT();
						before += cur_wd;
						have_cur = false;
					}
					om[no] = x + 0.0;
					ow[no] = run_w / 2;
					om[no + 1] = x + 0.0;
					ow[no + 1] = run_w - run_w / 2;
					no += 2;
					before += (double) run_w;
					ia = ra;
					ib = rb;
					continue;
				}
				have_light = true;
				light_value = x;
			}
		}

		if (have_cur &&
			(before + cur_wd + (double) w <= limit || no + 1 >= ocap))
		{
			/* Absorb; the last free slot absorbs everything left. */
			cur_sum += bkeys && !take_a ? x : x * (double) w;
			cur_w += w;
			cur_wd += (double) w;
			cur_hi = x;
		}
		else
		{
			if (have_cur)
			{
				EMIT_CURRENT();
				before += cur_wd;
			}
			have_cur = true;
			cur_sum = bkeys && !take_a ? x : x * (double) w;
			cur_w = w;
			cur_wd = (double) w;
			cur_lo = cur_hi = x;
			a_start = ia;
			b_start = ib;
			limit = k2_weight_limit(before, n, odds_step);
		}
		if (take_a)
			ia++;
		else
			ib++;

		/*
		 * Points fast path: absorb the run of points that lie before the
		 * next centroid and fit under the limit, without the general
		 * per-item bookkeeping.  Same decisions as the loop above; it stops
		 * where a run of ties may start, for the tie check to see it.
		 */
		if (bkeys && ib < nb)
		{
			double		room = limit - before - cur_wd;
			uint32_t	end;
			double		next_a = ia < na ? am[ia] : INFINITY;
			double		run_sum = 0.0;
			double		last = cur_hi;
			uint32_t	start = ib;

			if (no + 1 >= ocap)
				room = (double) (nb - ib);
			if (room < 1.0)
				continue;
			end = room >= (double) (nb - ib) ? nb : ib + (uint32_t) room;
			while (ib < end)
			{
				double		y = td_double_from_key(bkeys[ib]);

				if (y >= next_a)
					break;
				if (ib + 1 < nb && bkeys[ib + 1] == bkeys[ib] &&
					!(have_light && y == light_value))
					break;		/* a run of ties starts: the loop above decides */
				run_sum += y;
				last = y;
				ib++;
			}
			cur_sum += run_sum;
			cur_w += ib - start;
			cur_wd += (double) (ib - start);
			cur_hi = last;
		}
	}
	if (have_cur)
		EMIT_CURRENT();
#undef EMIT_CURRENT
	return no;
}

uint32_t
td_merge_points(int compression, uint64_t total,
				const double *am, const uint64_t *aw, uint32_t na,
				const uint64_t *bkeys, uint32_t nb,
				double *om, uint64_t *ow, uint32_t ocap)
{
	return merge_impl(compression, total, am, aw, na, NULL, NULL, bkeys, nb,
					  om, ow, ocap);
}

uint32_t
td_merge_centroids(int compression, uint64_t total,
				   const double *am, const uint64_t *aw, uint32_t na,
				   const double *bm, const uint64_t *bw, uint32_t nb,
				   double *om, uint64_t *ow, uint32_t ocap)
{
	return merge_impl(compression, total, am, aw, na, bm, bw, NULL, nb,
					  om, ow, ocap);
}

/* ---------------------------------------------------------------------
 * Validation and wire format
 * ---------------------------------------------------------------------
 */

static bool
is_positive_zero(double d)
{
	return d == 0.0 && !signbit(d);
}

static bool
is_negative_zero(double d)
{
	return d == 0.0 && signbit(d);
}

bool
td_validate(const TdDigest *d, char *err, size_t errlen)
{
	const TdSummary *s = &d->s;
	uint64_t	total = 0;

	if (s->compression < TD_MIN_COMPRESSION || s->compression > TD_MAX_COMPRESSION)
	{
		snprintf(err, errlen, "compression %d is outside [%d, %d]",
				 s->compression, TD_MIN_COMPRESSION, TD_MAX_COMPRESSION);
		return false;
	}
	if (d->n_centroids > TD_MAX_CENTROIDS)
	{
		snprintf(err, errlen, "%u centroids exceed the limit of %d",
				 (unsigned) d->n_centroids, TD_MAX_CENTROIDS);
		return false;
	}
	if (isnan(s->sum))
	{
		snprintf(err, errlen, "sum is NaN");
		return false;
	}
	if (isnan(s->sum_sq) || s->sum_sq < 0.0)
	{
		snprintf(err, errlen, "sum_sq must be a number >= 0");
		return false;
	}

	if (s->count == 0)
	{
		if (d->n_centroids != 0)
		{
			snprintf(err, errlen, "empty digest (count 0) has %u centroids",
					 (unsigned) d->n_centroids);
			return false;
		}
		if (!is_positive_zero(s->min) || !is_positive_zero(s->max) ||
			!is_positive_zero(s->sum) || !is_positive_zero(s->sum_sq))
		{
			snprintf(err, errlen, "empty digest must have min, max, sum and sum_sq equal to +0.0");
			return false;
		}
		return true;
	}

	if (d->n_centroids == 0)
	{
		snprintf(err, errlen, "digest with count %llu has no centroids",
				 (unsigned long long) s->count);
		return false;
	}
	if ((uint64_t) d->n_centroids > s->count)
	{
		snprintf(err, errlen, "%u centroids exceed count %llu",
				 (unsigned) d->n_centroids, (unsigned long long) s->count);
		return false;
	}
	if (!isfinite(s->min) || !isfinite(s->max))
	{
		snprintf(err, errlen, "min and max must be finite");
		return false;
	}
	if (s->min > s->max)
	{
		snprintf(err, errlen, "min is greater than max");
		return false;
	}
	/* One value, one byte string: -0.0 is never written, so never accepted. */
	if (is_negative_zero(s->min) || is_negative_zero(s->max) || is_negative_zero(s->sum))
	{
		snprintf(err, errlen, "min, max and sum must not be -0.0 (canonical form is +0.0)");
		return false;
	}

	for (uint32_t i = 0; i < d->n_centroids; i++)
	{
		double		m = d->means[i];

		if (!isfinite(m))
		{
			snprintf(err, errlen, "centroid %u mean is not finite", (unsigned) i);
			return false;
		}
		if (is_negative_zero(m))
		{
			snprintf(err, errlen, "centroid %u mean is -0.0 (canonical form is +0.0)", (unsigned) i);
			return false;
		}
		if (m < s->min || m > s->max)
		{
			snprintf(err, errlen, "centroid %u mean lies outside [min, max]", (unsigned) i);
			return false;
		}
		if (i > 0 && m < d->means[i - 1])
		{
			snprintf(err, errlen, "centroid means are not sorted (centroid %u)", (unsigned) i);
			return false;
		}
		if (d->weights[i] == 0)
		{
			snprintf(err, errlen, "centroid %u has weight 0", (unsigned) i);
			return false;
		}
		if (total + d->weights[i] < total)
		{
			snprintf(err, errlen, "centroid weights overflow 64 bits");
			return false;
		}
		total += d->weights[i];
	}
	if (total != s->count)
	{
		snprintf(err, errlen, "centroid weights sum to %llu but count is %llu",
				 (unsigned long long) total, (unsigned long long) s->count);
		return false;
	}
	return true;
}

static inline void
put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}

static inline void
put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static inline void
put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static inline void
put_f64(uint8_t *p, double d)
{
	union
	{
		double		d;
		uint64_t	u;
	}			v;

	/* Canonical: +0.0 for -0.0. */
	v.d = d + 0.0;
	put_u64(p, v.u);
}

static inline uint16_t
get_u16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static inline uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static inline uint64_t
get_u64(const uint8_t *p)
{
	uint64_t	v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline double
get_f64(const uint8_t *p)
{
	union
	{
		double		d;
		uint64_t	u;
	}			v;

	v.u = get_u64(p);
	return v.d;
}

static inline size_t
varint_size(uint64_t v)
{
	size_t		n = 1;

	while (v >= 0x80)
	{
		v >>= 7;
		n++;
	}
	return n;
}

size_t
td_encoded_size(const TdDigest *d)
{
	size_t		size = TD_HEADER_SIZE + 8 * (size_t) d->n_centroids;

	for (uint32_t i = 0; i < d->n_centroids; i++)
		size += varint_size(d->weights[i]);
	return size;
}

size_t
td_encode(const TdDigest *d, uint8_t *out)
{
	const TdSummary *s = &d->s;
	uint8_t    *p = out;
	bool		empty = s->count == 0;

	memcpy(p, "PSGD", 4);
	p[4] = TD_WIRE_VERSION;
	p[5] = 0;
	put_u16(p + 6, (uint16_t) s->compression);
	put_u64(p + 8, s->count);
	put_u64(p + 16, s->null_count);
	put_u64(p + 24, s->nan_count);
	put_u64(p + 32, s->pos_inf_count);
	put_u64(p + 40, s->neg_inf_count);
	put_f64(p + 48, empty ? 0.0 : s->min);
	put_f64(p + 56, empty ? 0.0 : s->max);
	put_f64(p + 64, empty ? 0.0 : s->sum);
	put_f64(p + 72, empty ? 0.0 : s->sum_sq);
	put_u32(p + 80, d->n_centroids);
	p += TD_HEADER_SIZE;
	for (uint32_t i = 0; i < d->n_centroids; i++, p += 8)
		put_f64(p, d->means[i]);
	for (uint32_t i = 0; i < d->n_centroids; i++)
	{
		uint64_t	v = d->weights[i];

		while (v >= 0x80)
		{
			*p++ = (uint8_t) (v | 0x80);
			v >>= 7;
		}
		*p++ = (uint8_t) v;
	}
	return (size_t) (p - out);
}

bool
td_decode_header(const uint8_t *buf, size_t len, TdSummary *s,
				 uint32_t *n_centroids, char *err, size_t errlen)
{
	uint32_t	n;

	if (len < TD_HEADER_SIZE)
	{
		snprintf(err, errlen, "digest is %zu bytes, shorter than the %d-byte header",
				 len, TD_HEADER_SIZE);
		return false;
	}
	if (memcmp(buf, "PSGD", 4) != 0)
	{
		snprintf(err, errlen, "digest does not start with magic \"PSGD\"");
		return false;
	}
	if (buf[4] != TD_WIRE_VERSION)
	{
		snprintf(err, errlen, "unsupported digest version %u", (unsigned) buf[4]);
		return false;
	}
	if (buf[5] != 0)
	{
		snprintf(err, errlen, "reserved flags byte is %u, must be 0", (unsigned) buf[5]);
		return false;
	}
	s->compression = get_u16(buf + 6);
	if (s->compression < TD_MIN_COMPRESSION || s->compression > TD_MAX_COMPRESSION)
	{
		snprintf(err, errlen, "compression %d is outside [%d, %d]",
				 s->compression, TD_MIN_COMPRESSION, TD_MAX_COMPRESSION);
		return false;
	}
	s->count = get_u64(buf + 8);
	s->null_count = get_u64(buf + 16);
	s->nan_count = get_u64(buf + 24);
	s->pos_inf_count = get_u64(buf + 32);
	s->neg_inf_count = get_u64(buf + 40);
	s->min = get_f64(buf + 48);
	s->max = get_f64(buf + 56);
	s->sum = get_f64(buf + 64);
	s->sum_sq = get_f64(buf + 72);
	n = get_u32(buf + 80);
	if (n > TD_MAX_CENTROIDS)
	{
		snprintf(err, errlen, "%u centroids exceed the limit of %d",
				 (unsigned) n, TD_MAX_CENTROIDS);
		return false;
	}
	if ((uint64_t) n > s->count)
	{
		snprintf(err, errlen, "%u centroids exceed count %llu",
				 (unsigned) n, (unsigned long long) s->count);
		return false;
	}
	/* Each centroid needs at least 9 bytes: check before anyone allocates. */
	if (TD_HEADER_SIZE + 9 * (size_t) n > len)
	{
		snprintf(err, errlen, "digest of %zu bytes is too short for %u centroids",
				 len, (unsigned) n);
		return false;
	}
	*n_centroids = n;
	return true;
}

bool
td_decode_centroids(const uint8_t *buf, size_t len, const TdSummary *s,
					uint32_t n_centroids, double *means, uint64_t *weights,
					char *err, size_t errlen)
{
	size_t		pos = TD_HEADER_SIZE + 8 * (size_t) n_centroids;
	TdDigest	d;

	for (uint32_t i = 0; i < n_centroids; i++)
		means[i] = get_f64(buf + TD_HEADER_SIZE + 8 * (size_t) i);

	for (uint32_t i = 0; i < n_centroids; i++)
	{
		uint64_t	v = 0;
		int			nbytes = 0;
		uint8_t		byte;

		do
		{
			if (pos >= len)
			{
				snprintf(err, errlen, "digest ends inside the weight of centroid %u",
						 (unsigned) i);
				return false;
			}
			if (nbytes == TD_MAX_VARINT_BYTES)
			{
				snprintf(err, errlen, "weight of centroid %u is longer than %d bytes",
						 (unsigned) i, TD_MAX_VARINT_BYTES);
				return false;
			}
			byte = buf[pos++];
			if (nbytes == TD_MAX_VARINT_BYTES - 1 && byte > 1)
			{
				snprintf(err, errlen, "weight of centroid %u does not fit 64 bits",
						 (unsigned) i);
				return false;
			}
			v |= (uint64_t) (byte & 0x7f) << (7 * nbytes);
			nbytes++;
		} while (byte & 0x80);

		if (nbytes > 1 && byte == 0)
		{
			snprintf(err, errlen, "weight of centroid %u is not minimally encoded",
					 (unsigned) i);
			return false;
		}
		weights[i] = v;
	}
	if (pos != len)
	{
		snprintf(err, errlen, "%zu trailing bytes after the last centroid weight",
				 len - pos);
		return false;
	}

	d.s = *s;
	d.n_centroids = n_centroids;
	d.means = means;
	d.weights = weights;
	return td_validate(&d, err, errlen);
}

/* ---------------------------------------------------------------------
 * Reading: anchors, CDF, quantiles (wire-format section 2)
 * ---------------------------------------------------------------------
 */

uint32_t
td_build_anchors(const TdDigest *d, TdAnchor *out)
{
	uint32_t	na = 0;
	uint32_t	i = 0;
	uint64_t	before = 0;
	bool		last_atom = false;
	double		n = (double) d->s.count;

	while (i < d->n_centroids)
	{
		double		m = d->means[i];
		uint64_t	w = d->weights[i];
		uint32_t	j = i + 1;
		bool		atom;
		double		c;

		/* Collapse runs of equal means. */
		while (j < d->n_centroids && d->means[j] == m)
			w += d->weights[j++];
		atom = (j - i >= 2) || w == 1 || m == d->s.min || m == d->s.max;
		c = (double) before;

		if (i == 0 && !atom)
		{
			out[na].x = d->s.min;
			out[na].f_low = 0.0;
			out[na].f_high = 0.0;
			na++;
		}
		out[na].x = m;
		if (atom)
		{
			out[na].f_low = c;
			out[na].f_high = c + (double) w;
		}
		else
		{
			out[na].f_low = c + (double) w / 2.0;
			out[na].f_high = out[na].f_low;
		}
		na++;
		before += w;
		last_atom = atom;
		i = j;
	}
	if (!last_atom)
	{
		out[na].x = d->s.max;
		out[na].f_low = n;
		out[na].f_high = n;
		na++;
	}
	return na;
}

/* Fraction (x - xa) / (xb - xa) without overflowing for huge magnitudes. */
static double
position_between(double xa, double xb, double x)
{
	double		span = xb - xa;

	if (isfinite(span))
		return (x - xa) / span;
	return (x / 2.0 - xa / 2.0) / (xb / 2.0 - xa / 2.0);
}

/* xa + f * (xb - xa), clamped to [xa, xb], without overflow. */
static double
interpolate(double xa, double xb, double f)
{
	double		span = xb - xa;
	double		x;

	if (isfinite(span))
		x = xa + f * span;
	else
		x = 2.0 * (xa / 2.0 + f * (xb / 2.0 - xa / 2.0));
	if (x < xa)
		x = xa;
	if (x > xb)
		x = xb;
	return x;
}

double
td_cdf(const TdDigest *d, const TdAnchor *a, uint32_t na, double x)
{
	double		n = (double) d->s.count;
	uint32_t	lo,
				hi;
	double		f;

	if (x < d->s.min)
		return 0.0;
	if (x >= d->s.max)
		return 1.0;

	/* Find the last anchor with a.x <= x. */
	if (x < a[0].x)
		return 0.0;				/* only an atom lies ahead, with F_low = 0 */
	lo = 0;
	hi = na;
	while (hi - lo > 1)
	{
		uint32_t	mid = lo + (hi - lo) / 2;

		if (a[mid].x <= x)
			lo = mid;
		else
			hi = mid;
	}
	if (a[lo].x == x || lo + 1 == na)
		f = a[lo].f_high;
	else
	{
		const TdAnchor *l = &a[lo];
		const TdAnchor *r = &a[lo + 1];

		f = l->f_high + (r->f_low - l->f_high) * position_between(l->x, r->x, x);
	}
	f /= n;
	if (f < 0.0)
		f = 0.0;
	if (f > 1.0)
		f = 1.0;
	return f;
}

double
td_quantile(const TdDigest *d, const TdAnchor *a, uint32_t na, double q)
{
	double		t;
	uint32_t	lo,
				hi;

	if (q <= 0.0)
		return d->s.min;
	if (q >= 1.0)
		return d->s.max;
	t = q * (double) d->s.count;

	/* First anchor with f_high >= t. */
	lo = 0;
	hi = na;
	while (lo < hi)
	{
		uint32_t	mid = lo + (hi - lo) / 2;

		if (a[mid].f_high < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == na)
		return d->s.max;
	if (a[lo].f_low <= t || lo == 0)
		return a[lo].x;
	{
		const TdAnchor *l = &a[lo - 1];
		const TdAnchor *r = &a[lo];
		double		gap = r->f_low - l->f_high;

		if (gap <= 0.0)
			return l->x;
		return interpolate(l->x, r->x, (t - l->f_high) / gap);
	}
}

double
td_centroid_mean(const TdDigest *d)
{
	double		n = (double) d->s.count;
	double		mean = 0.0;

	if (d->s.count == 0)
		return NAN;
	for (uint32_t i = 0; i < d->n_centroids; i++)
		mean += d->means[i] * ((double) d->weights[i] / n);
	if (mean < d->s.min)
		mean = d->s.min;
	if (mean > d->s.max)
		mean = d->s.max;
	return mean;
}
