/*
 * tdigest_moments.c — exact moments of a digest: count, mean (a double-double)
 * and M2, from values (correctly rounded sums) and combined by Chan et al.'s
 * formula.  No PostgreSQL calls and no allocation: see tdigest.h.
 */
#include "tdigest.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------
 * Moments: count, mean (a double-double) and M2
 * ---------------------------------------------------------------------
 */

double
td_ulp(double x)
{
	int			e;

	if (x == 0.0)
		return ldexp(1.0, -1074);
	(void) frexp(fabs(x), &e);
	/* |x| = f * 2^e with f in [0.5, 1): 53 significant bits below 2^e. */
	return e - 53 >= -1074 ? ldexp(1.0, e - 53) : ldexp(1.0, -1074);
}

/*
 * Correctly rounded sums: the running sum is kept exactly as non-overlapping
 * partials (Shewchuk's expansion), rounded once at the end.  Inputs never
 * overflow here (td_exact_moments scales them into [-2, 2]); the partials
 * cover at most the 2,098 bit positions of binary64.
 */
#define EXACT_PARTIALS 2112

typedef struct ExactSum
{
	int			n;
	double		p[EXACT_PARTIALS];
} ExactSum;

static void
exact_add(ExactSum *s, double x)
{
	int			kept = 0;

	for (int j = 0; j < s->n; j++)
	{
		double		y = s->p[j];
		double		hi,
					lo;

		if (fabs(x) < fabs(y))
		{
			double		t = x;

			x = y;
			y = t;
		}
		hi = x + y;
		lo = y - (hi - x);
		if (lo != 0.0)
			s->p[kept++] = lo;
		x = hi;
	}
	s->p[kept] = x;
	s->n = kept + 1;
}

static double
exact_round(const ExactSum *s)
{
	int			n = s->n;
	double		hi,
				lo = 0.0;

	if (n == 0)
		return 0.0;
	hi = s->p[--n];
	/* Add the partials from the top until a sum is inexact. */
	while (n > 0)
	{
		double		x = hi;
		double		y = s->p[--n];

		hi = x + y;
		lo = y - (hi - x);
		if (lo != 0.0)
			break;
	}
	/*
	 * hi + lo is exact, |lo| at most half an ulp of hi.  When lo is exactly
	 * half an ulp (a tie, rounded to even) and the partials left below have
	 * the same sign, the true sum lies beyond the tie: round away.
	 */
	if (n > 0 && ((lo < 0.0 && s->p[n - 1] < 0.0) || (lo > 0.0 && s->p[n - 1] > 0.0)))
	{
		double		y = lo * 2.0;
		double		x = hi + y;

		if (x - hi == y)
			hi = x;
	}
	return hi;
}

/* The exponent e with |m| * 2^-e in [1, 2). */
static int
unit_exponent(double m)
{
	int			e;

	(void) frexp(m, &e);
	return e - 1;
}

/*
 * mean and residual from a double-double hi + lo: mean in [min, max]
 * (residual 0 when clamped), |residual| <= ulp(mean) / 2, no -0.0.
 */
static void
finish_mean(double hi, double lo, double min, double max, double *mean, double *residual)
{
	double		m = hi + lo;
	double		r = lo - (m - hi);

	if (!isfinite(m) || !isfinite(r))
	{
		m = hi;
		r = 0.0;
	}
	if (!(m >= min))
	{
		m = min;
		r = 0.0;
	}
	if (!(m <= max))
	{
		m = max;
		r = 0.0;
	}
	if (!(2.0 * fabs(r) <= td_ulp(m)))
		r = 0.0;
	*mean = m + 0.0;
	*residual = r + 0.0;
}

void
td_exact_moments(const double *values, uint32_t n, double min, double max,
				 double *mean, double *residual, double *m2)
{
	ExactSum	sum;
	double		biggest = fmax(fabs(min), fabs(max));
	double		ms,
				rs,
				hi,
				lo,
				ss;
	int			e;

	*mean = *residual = *m2 = 0.0;
	if (n == 0 || biggest == 0.0)
		return;
	/* Scaled by a power of two into [-2, 2]: no sum below can overflow. */
	e = unit_exponent(biggest);

	sum.n = 0;
	for (uint32_t i = 0; i < n; i++)
		exact_add(&sum, ldexp(values[i], -e));
	ms = exact_round(&sum) / (double) n;
	ms = fmin(fmax(ms, ldexp(min, -e)), ldexp(max, -e));
	/* residual: (sum - n * ms) / n, the sum taken exactly */
	for (uint32_t i = 0; i < n; i++)
		exact_add(&sum, -ms);
	rs = exact_round(&sum) / (double) n;
	hi = ms + rs;
	lo = rs - (hi - ms);

	sum.n = 0;
	for (uint32_t i = 0; i < n; i++)
	{
		double		d = ldexp(values[i], -e) - hi;

		exact_add(&sum, d * d);
	}
	/* The squares are about hi; the exact mean is hi + lo. */
	ss = exact_round(&sum) - (double) n * (lo * lo);
	if (!(ss > 0.0))
		ss = 0.0;

	finish_mean(ldexp(hi, e), ldexp(lo, e), min, max, mean, residual);
	*m2 = ldexp(ss, 2 * e) + 0.0;
}

/* s + err = a + b exactly (when s is finite). */
static inline void
two_sum(double a, double b, double *s, double *err)
{
	double		sum = a + b;
	double		bb = sum - a;

	*s = sum;
	*err = (a - (sum - bb)) + (b - bb);
}

void
td_combine_moments(uint64_t na, double *mean, double *residual, double *m2,
				   uint64_t nb, double mb, double rb, double m2b,
				   double min, double max)
{
	double		n,
				wb,
				d_hi,
				d_lo,
				delta;

	if (nb == 0)
		return;
	if (na == 0)
	{
		finish_mean(mb, rb, min, max, mean, residual);
		*m2 = m2b;
		return;
	}
	n = (double) na + (double) nb;
	wb = (double) nb / n;
	two_sum(mb, -*mean, &d_hi, &d_lo);
	if (!isfinite(d_hi))
	{
		/* Means of opposite signs near the ends of the range: M2 overflows. */
		double		wa = (double) na / n;

		finish_mean(*mean * wa + mb * wb, 0.0, min, max, mean, residual);
		*m2 = INFINITY;
		return;
	}
	delta = d_hi + (d_lo + (rb - *residual));
	{
		double		shift = delta * wb;
		double		hi,
					lo;

		two_sum(*mean, shift, &hi, &lo);
		lo += *residual;
		if (!isfinite(hi))
		{
			hi = *mean * ((double) na / n) + mb * wb;
			lo = 0.0;
		}
		/* M2 terms are >= 0 or +Inf: their sum is never NaN. */
		*m2 = *m2 + m2b + (delta * delta) * ((double) na * wb);
		finish_mean(hi, lo, min, max, mean, residual);
	}
}

/*
 * Mean (hi + lo) and M2 of n sorted values given as keys, in one pass over
 * deviations from the median: M2 = Σd² − (Σd)²/n loses at most a bit, as the
 * mean lies within a standard deviation of the median.  Values far from 1 in
 * magnitude are scaled by a power of two first, so nothing overflows or
 * underflows on the way.
 */
void
td_block_moments(const uint64_t *keys, uint32_t n, double *hi, double *lo, double *m2)
{
	double		first = td_double_from_key(keys[0]);
	double		last = td_double_from_key(keys[n - 1]);
	double		biggest = fmax(fabs(first), fabs(last));
	double		scale = 1.0,
				unscale = 1.0;
	double		shift,
				s1 = 0.0,
				s2 = 0.0,
				dn = (double) n;

	if (biggest > 0x1p400 || (biggest > 0.0 && biggest < 0x1p-400))
	{
		int			e = unit_exponent(biggest);

		if (e < -1022)
			e = -1022;
		scale = ldexp(1.0, -e);
		unscale = ldexp(1.0, e);
	}
	shift = td_double_from_key(keys[n / 2]) * scale;
	for (uint32_t i = 0; i < n; i++)
	{
		double		d = td_double_from_key(keys[i]) * scale - shift;

		s1 += d;
		s2 += d * d;
	}
	two_sum(shift, s1 / dn, hi, lo);
	*hi *= unscale;
	*lo *= unscale;
	s2 -= s1 * (s1 / dn);
	*m2 = s2 > 0.0 ? s2 * unscale * unscale : 0.0;
}
