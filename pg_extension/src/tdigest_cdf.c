/*
 * tdigest_cdf.c — reading a digest: CDF anchors, cdf(x) and quantile(q) by
 * the rules of docs/wire-format.md, section 2.
 *
 * No PostgreSQL calls and no allocation: see tdigest.h.
 */
#include "tdigest.h"

#include <math.h>

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
