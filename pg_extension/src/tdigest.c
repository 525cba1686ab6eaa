/*
 * tdigest.c — the merging t-digest (k2 scale function normalised by n, with
 * a cap on a centroid's mass): merging sorted inputs into centroids, and
 * building a digest from single values.  tdigest_sort.c sorts the value keys,
 * tdigest_moments.c keeps the exact moments, tdigest_wire.c holds the PSGD wire
 * format and tdigest_cdf.c the CDF/quantile rules of docs/wire-format.md.
 *
 * No PostgreSQL calls and no allocation: see tdigest.h.
 */
#include "tdigest.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void
td_summary_init(TdSummary *s, int compression)
{
	memset(s, 0, sizeof(*s));
	s->compression = compression;
	s->version = TD_WIRE_VERSION;
	s->min = 0.0;
	s->max = 0.0;
	s->mean = 0.0;
	s->mean_residual = 0.0;
	s->m2 = 0.0;
}

uint64_t
td_exact_limit(int compression)
{
	uint64_t	limit = (uint64_t) TD_EXACT_FACTOR * (uint64_t) compression;

	return limit < TD_MAX_CENTROIDS ? limit : TD_MAX_CENTROIDS;
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
	/*
	 * The mass cap adds at most two centroids per TD_MASS_CAP / δ of the
	 * mass (two neighbours together exceed it).  Heavy runs of ties (see
	 * merge_impl) may need up to four times as many.
	 */
	b += 2.0 * d / TD_MASS_CAP + 2.0;
	bound = 4.0 * ceil(b * 1.02) + 16.0;
	if (bound > TD_MAX_CENTROIDS)
		bound = TD_MAX_CENTROIDS;
	return (uint32_t) bound;
}

/* ---------------------------------------------------------------------
 * Merging
 * ---------------------------------------------------------------------
 */

/*
 * Weight that the centroid starting after `before` may grow to: the k2
 * bound (k grows by at most 1), and at most cap_w more than `before`.
 */
static inline double
weight_limit(double before, double n, double odds_step, double cap_w)
{
	double		odds;
	double		k2_end;

	/* k(0) = -inf: the first centroid (the minimum) never absorbs anything. */
	if (before <= 0.0)
		return 0.0;
	odds = before / (n - before) * odds_step;
	k2_end = n * (odds / (1.0 + odds));
	return k2_end < before + cap_w ? k2_end : before + cap_w;
}

/*
 * Exact mode: the sorted union of both inputs, nothing merged.  out holds
 * na + nb centroids.
 */
static uint32_t
merge_exact(const double *am, const uint64_t *aw, uint32_t na,
			const double *bm, const uint64_t *bw, const uint64_t *bkeys, uint32_t nb,
			double *om, uint64_t *ow)
{
	uint32_t	ia = 0,
				ib = 0,
				no = 0;

	while (ia < na || ib < nb)
	{
		double		bx = ib < nb ? (bkeys ? td_double_from_key(bkeys[ib]) : bm[ib]) : 0.0;

		if (ib >= nb || (ia < na && am[ia] <= bx))
		{
			om[no] = am[ia];
			ow[no++] = aw[ia++];
		}
		else
		{
			om[no] = bx + 0.0;
			ow[no++] = bkeys ? 1 : bw[ib];
			ib++;
		}
	}
	return no;
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
	double		cap_w = n * (TD_MASS_CAP / (double) compression);
	double		z;
	double		odds_step;
	uint32_t	ia = 0,
				ib = 0,
				no = 0;
	uint32_t	a_start = 0,
				b_start = 0;
	bool		have_cur = false;
	double		before = 0.0;	/* weight of the centroids already emitted */
	double		cur_sum = 0.0;	/* sum of (mean - cur_lo) * weight of the
								 * current group: exact means at any offset */
	double		cur_wd = 0.0;
	uint64_t	cur_w = 0;
	double		cur_lo = 0.0,
				cur_hi = 0.0;
	double		limit = 0.0;
	bool		have_light = false;	/* a run of ties already found light */
	double		light_value = 0.0;

	if (na + (uint64_t) nb == 0 || ocap == 0)
		return 0;
	if (total <= td_exact_limit(compression) && na + (uint64_t) nb <= ocap)
		return merge_exact(am, aw, na, bm, bw, bkeys, nb, om, ow);

	if (ratio < 1.0)
		ratio = 1.0;
	z = 4.0 * log(ratio) + 24.0;
	/* k grows by one when the odds q/(1-q) grow by exp(Z/δ). */
	odds_step = exp(z / (double) compression);

#define EMIT_CURRENT() \
	do { \
		double mean_ = cur_lo + cur_sum / cur_wd; \
		if (!isfinite(mean_)) \
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

			/*
			 * Equal means are ties only where readers take them as a point
			 * mass: two or more centroids, or a weight of 1.  One heavier
			 * centroid whose mean a value happens to equal is a spread of
			 * values, not a run of them.
			 */
			while (ra < na && am[ra] == x)
				run_w += aw[ra++];
			if (ra - ia == 1 && aw[ia] > 1)
			{
				ra = ia;
				run_w = 0;
			}
			while (rb < nb && (bkeys ? td_double_from_key(bkeys[rb]) : bm[rb]) == x)
			{
				run_w += bkeys ? 1 : bw[rb];
				rb++;
			}
			if (!bkeys && rb - ib == 1 && bw[ib] > 1)
			{
				rb = ib;
				run_w -= bw[ib];
			}
			if ((ra - ia) + (rb - ib) >= 2)
			{
				double		q = (before + (have_cur ? cur_wd : 0.0) + (double) run_w / 2.0) / n;
				double		local = n * q * (1.0 - q) * z / (double) compression;

				if (local > cap_w)
					local = cap_w;

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
			cur_sum += bkeys && !take_a ? x - cur_lo : (x - cur_lo) * (double) w;
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
			cur_sum = 0.0;
			cur_w = w;
			cur_wd = (double) w;
			cur_lo = cur_hi = x;
			a_start = ia;
			b_start = ib;
			limit = weight_limit(before, n, odds_step, cap_w);
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
			double		base = cur_lo;
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
				run_sum += y - base;
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
 * Building from single values
 * ---------------------------------------------------------------------
 */

uint32_t
td_merge_capacity(int compression, uint64_t total, uint64_t inputs)
{
	uint32_t	bound = td_centroid_bound(compression);

	if (total <= td_exact_limit(compression))
		return (uint32_t) inputs;	/* inputs <= total <= TD_MAX_CENTROIDS */
	return inputs < bound ? (uint32_t) inputs : bound;
}

void
td_builder_swap(TdBuilder *b, uint32_t n_out)
{
	double	   *means = b->means;
	uint64_t   *weights = b->weights;
	uint32_t	cap = b->cap_centroids;

	b->means = b->spare_means;
	b->weights = b->spare_weights;
	b->cap_centroids = b->cap_spare;
	b->spare_means = means;
	b->spare_weights = weights;
	b->cap_spare = cap;
	b->n_centroids = n_out;
}

bool
td_builder_flush(TdBuilder *b)
{
	uint32_t	nb = b->n_buffer;
	uint64_t	total = b->s.count + nb;
	double		lo,
				hi,
				block_hi,
				block_lo,
				block_m2;

	if (nb == 0)
		return true;
	if (total < b->s.count)
		return false;

	td_sort_keys(b->buffer, b->scratch, nb);
	lo = td_double_from_key(b->buffer[0]);
	hi = td_double_from_key(b->buffer[nb - 1]);
	if (b->s.count == 0)
	{
		b->s.min = lo;
		b->s.max = hi;
	}
	else
	{
		b->s.min = lo < b->s.min ? lo : b->s.min;
		b->s.max = hi > b->s.max ? hi : b->s.max;
	}
	td_block_moments(b->buffer, nb, &block_hi, &block_lo, &block_m2);
	td_combine_moments(b->s.count, &b->s.mean, &b->s.mean_residual, &b->s.m2,
					   nb, block_hi, block_lo, block_m2, b->s.min, b->s.max);

	td_builder_swap(b, td_merge_points(b->s.compression, total,
									   b->means, b->weights, b->n_centroids,
									   b->buffer, nb,
									   b->spare_means, b->spare_weights, b->cap_spare));
	b->s.count = total;
	b->n_buffer = 0;
	return true;
}

void
td_builder_finish(TdBuilder *b)
{
	if (b->s.count > 0 && b->s.count == b->n_centroids)
		td_exact_moments(b->means, b->n_centroids, b->s.min, b->s.max,
						 &b->s.mean, &b->s.mean_residual, &b->s.m2);
}

TdDigest
td_builder_digest(const TdBuilder *b)
{
	TdDigest	d;

	d.s = b->s;
	d.n_centroids = b->n_centroids;
	d.means = b->means;
	d.weights = b->weights;
	return d;
}
