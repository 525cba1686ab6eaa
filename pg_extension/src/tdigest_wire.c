/*
 * tdigest_wire.c — the PSGD wire format (docs/wire-format.md, section 1):
 * every validity rule, the canonical encoding (version 2), and strict
 * decoding of versions 1 and 2 (a version 1 digest is converted on reading).
 *
 * No PostgreSQL calls and no allocation: see tdigest.h.
 */
#include "tdigest.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
	if (!isfinite(s->mean) || !isfinite(s->mean_residual))
	{
		snprintf(err, errlen, "mean and mean_residual must be finite");
		return false;
	}
	if (isnan(s->m2) || s->m2 < 0.0)
	{
		snprintf(err, errlen, "m2 must be a number >= 0");
		return false;
	}
	if (is_negative_zero(s->mean) || is_negative_zero(s->mean_residual) ||
		is_negative_zero(s->m2))
	{
		snprintf(err, errlen, "mean, mean_residual and m2 must not be -0.0 (canonical form is +0.0)");
		return false;
	}
	if (!(2.0 * fabs(s->mean_residual) <= td_ulp(s->mean)))
	{
		snprintf(err, errlen, "mean_residual exceeds half an ulp of mean");
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
			!is_positive_zero(s->mean) || !is_positive_zero(s->mean_residual) ||
			!is_positive_zero(s->m2))
		{
			snprintf(err, errlen, "empty digest must have min, max, mean, mean_residual and m2 equal to +0.0");
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
	if (is_negative_zero(s->min) || is_negative_zero(s->max))
	{
		snprintf(err, errlen, "min and max must not be -0.0 (canonical form is +0.0)");
		return false;
	}
	if (s->mean < s->min || s->mean > s->max)
	{
		snprintf(err, errlen, "mean lies outside [min, max]");
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

/*
 * The version 1 rules on sum and sum_sq (docs/wire-format.md, section 1.3),
 * checked before conversion; the rest is td_validate on the result.
 */
static bool
validate_v1_sums(const TdSummary *s, char *err, size_t errlen)
{
	if (isnan(s->v1_sum))
	{
		snprintf(err, errlen, "sum is NaN");
		return false;
	}
	if (isnan(s->v1_sum_sq) || s->v1_sum_sq < 0.0)
	{
		snprintf(err, errlen, "sum_sq must be a number >= 0");
		return false;
	}
	if (s->count == 0)
	{
		if (!is_positive_zero(s->v1_sum) || !is_positive_zero(s->v1_sum_sq))
		{
			snprintf(err, errlen, "empty digest must have min, max, sum and sum_sq equal to +0.0");
			return false;
		}
	}
	else if (is_negative_zero(s->v1_sum))
	{
		snprintf(err, errlen, "min, max and sum must not be -0.0 (canonical form is +0.0)");
		return false;
	}
	return true;
}

void
td_convert_v1(TdDigest *d)
{
	TdSummary  *s = &d->s;
	double		n = (double) s->count;

	s->version = TD_WIRE_VERSION;
	s->mean = s->mean_residual = s->m2 = 0.0;
	if (s->count == 0)
		return;
	if (s->count == d->n_centroids)
	{
		/* Every value is a centroid: the exact moments, as a writer gives them. */
		td_exact_moments(d->means, d->n_centroids, s->min, s->max,
						 &s->mean, &s->mean_residual, &s->m2);
		return;
	}
	if (isfinite(s->v1_sum))
		s->mean = fmin(fmax(s->v1_sum / n, s->min), s->max) + 0.0;
	else
		s->mean = td_centroid_mean(d) + 0.0;
	/* A version 1 reader's variance; unknown (+Inf) when a sum overflowed. */
	if (isfinite(s->v1_sum) && isfinite(s->v1_sum_sq))
	{
		double		m2 = s->v1_sum_sq - s->v1_sum * (s->v1_sum / n);

		s->m2 = m2 > 0.0 ? m2 : 0.0;
	}
	else
		s->m2 = INFINITY;
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
	put_f64(p + 64, empty ? 0.0 : s->mean);
	put_f64(p + 72, empty ? 0.0 : s->mean_residual);
	put_f64(p + 80, empty ? 0.0 : s->m2);
	put_u32(p + 88, d->n_centroids);
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

/* Header size of a digest of this version (0: unsupported). */
static size_t
header_size(uint8_t version)
{
	return version == 1 ? TD_HEADER_SIZE_V1 : version == 2 ? TD_HEADER_SIZE : 0;
}

bool
td_decode_header(const uint8_t *buf, size_t len, TdSummary *s,
				 uint32_t *n_centroids, char *err, size_t errlen)
{
	uint32_t	n;
	size_t		header;

	memset(s, 0, sizeof(*s));
	if (len < TD_MIN_HEADER_SIZE)
	{
		snprintf(err, errlen, "digest is %zu bytes, shorter than the %d-byte header",
				 len, TD_MIN_HEADER_SIZE);
		return false;
	}
	if (memcmp(buf, "PSGD", 4) != 0)
	{
		snprintf(err, errlen, "digest does not start with magic \"PSGD\"");
		return false;
	}
	header = header_size(buf[4]);
	if (header == 0)
	{
		snprintf(err, errlen, "unsupported digest version %u", (unsigned) buf[4]);
		return false;
	}
	if (len < header)
	{
		snprintf(err, errlen, "digest is %zu bytes, shorter than the %zu-byte header",
				 len, header);
		return false;
	}
	s->version = buf[4];
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
	if (s->version == 1)
	{
		s->v1_sum = get_f64(buf + 64);
		s->v1_sum_sq = get_f64(buf + 72);
		n = get_u32(buf + 80);
	}
	else
	{
		s->mean = get_f64(buf + 64);
		s->mean_residual = get_f64(buf + 72);
		s->m2 = get_f64(buf + 80);
		n = get_u32(buf + 88);
	}
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
	if (header + 9 * (size_t) n > len)
	{
		snprintf(err, errlen, "digest of %zu bytes is too short for %u centroids",
				 len, (unsigned) n);
		return false;
	}
	*n_centroids = n;
	return true;
}

bool
td_decode_centroids(const uint8_t *buf, size_t len, TdSummary *s,
					uint32_t n_centroids, double *means, uint64_t *weights,
					char *err, size_t errlen)
{
	size_t		header = header_size((uint8_t) s->version);
	size_t		pos = header + 8 * (size_t) n_centroids;
	TdDigest	d;

	for (uint32_t i = 0; i < n_centroids; i++)
		means[i] = get_f64(buf + header + 8 * (size_t) i);

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
	if (s->version == 1)
	{
		if (!td_check_v1(&d, err, errlen))
			return false;
		*s = d.s;
	}
	return td_validate(&d, err, errlen);
}

bool
td_check_v1(TdDigest *d, char *err, size_t errlen)
{
	if (!validate_v1_sums(&d->s, err, errlen))
		return false;
	/* The conversion reads the centroids: they must be valid first. */
	d->s.mean = d->s.count > 0 ? d->s.min + 0.0 : 0.0;
	d->s.mean_residual = d->s.m2 = 0.0;
	if (!td_validate(d, err, errlen))
		return false;
	td_convert_v1(d);
	return true;
}
