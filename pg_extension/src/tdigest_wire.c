/*
 * tdigest_wire.c — the PSGD wire format (docs/wire-format.md, section 1):
 * every validity rule, the canonical encoding (version 3), and strict
 * decoding of versions 1, 2 and 3 (a version 1 digest is converted on reading).
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

/* The key steps of the means (docs/wire-format.md, section 1.1). */
static inline uint64_t
mean_step(const TdDigest *d, uint32_t i)
{
	uint64_t	prev = td_key_from_double(i == 0 ? d->s.min + 0.0 : d->means[i - 1] + 0.0);

	return td_key_from_double(d->means[i] + 0.0) - prev;
}

static inline uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80)
	{
		*p++ = (uint8_t) (v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t) v;
	return p;
}

size_t
td_encoded_size(const TdDigest *d)
{
	const TdSummary *s = &d->s;
	size_t		size = TD_FIXED_SIZE;

	size += varint_size(s->count) + varint_size(s->null_count) +
		varint_size(s->nan_count) + varint_size(s->pos_inf_count) +
		varint_size(s->neg_inf_count) + varint_size(d->n_centroids);
	for (uint32_t i = 0; i < d->n_centroids; i++)
		size += varint_size(mean_step(d, i)) + varint_size(d->weights[i]);
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
	put_f64(p + 8, empty ? 0.0 : s->min);
	put_f64(p + 16, empty ? 0.0 : s->max);
	put_f64(p + 24, empty ? 0.0 : s->mean);
	put_f64(p + 32, empty ? 0.0 : s->mean_residual);
	put_f64(p + 40, empty ? 0.0 : s->m2);
	p += TD_FIXED_SIZE;
	p = put_varint(p, s->count);
	p = put_varint(p, s->null_count);
	p = put_varint(p, s->nan_count);
	p = put_varint(p, s->pos_inf_count);
	p = put_varint(p, s->neg_inf_count);
	p = put_varint(p, d->n_centroids);
	for (uint32_t i = 0; i < d->n_centroids; i++)
		p = put_varint(p, mean_step(d, i));
	for (uint32_t i = 0; i < d->n_centroids; i++)
		p = put_varint(p, d->weights[i]);
	return (size_t) (p - out);
}

/*
 * Read one minimal unsigned LEB128 varint at *pos; what names the field in
 * the error ("weight of centroid 3").
 */
static bool
get_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out,
		   const char *what, uint32_t index, char *err, size_t errlen)
{
	uint64_t	v = 0;
	int			nbytes = 0;
	uint8_t		byte;
	char		name[64];

	if (index == UINT32_MAX)
		snprintf(name, sizeof(name), "%s", what);
	else
		snprintf(name, sizeof(name), "%s %u", what, (unsigned) index);
	do
	{
		if (*pos >= len)
		{
			snprintf(err, errlen, "digest ends inside the %s", name);
			return false;
		}
		if (nbytes == TD_MAX_VARINT_BYTES)
		{
			snprintf(err, errlen, "%s is longer than %d bytes", name, TD_MAX_VARINT_BYTES);
			return false;
		}
		byte = buf[(*pos)++];
		if (nbytes == TD_MAX_VARINT_BYTES - 1 && byte > 1)
		{
			snprintf(err, errlen, "%s does not fit 64 bits", name);
			return false;
		}
		v |= (uint64_t) (byte & 0x7f) << (7 * nbytes);
		nbytes++;
	} while (byte & 0x80);

	if (nbytes > 1 && byte == 0)
	{
		snprintf(err, errlen, "%s is not minimally encoded", name);
		return false;
	}
	*out = v;
	return true;
}

static bool
decode_header_v3(const uint8_t *buf, size_t len, TdSummary *s,
				 uint64_t *n, char *err, size_t errlen)
{
	size_t		pos = TD_FIXED_SIZE;

	s->min = get_f64(buf + 8);
	s->max = get_f64(buf + 16);
	s->mean = get_f64(buf + 24);
	s->mean_residual = get_f64(buf + 32);
	s->m2 = get_f64(buf + 40);
	if (!get_varint(buf, len, &pos, &s->count, "count", UINT32_MAX, err, errlen) ||
		!get_varint(buf, len, &pos, &s->null_count, "null_count", UINT32_MAX, err, errlen) ||
		!get_varint(buf, len, &pos, &s->nan_count, "nan_count", UINT32_MAX, err, errlen) ||
		!get_varint(buf, len, &pos, &s->pos_inf_count, "pos_inf_count", UINT32_MAX, err, errlen) ||
		!get_varint(buf, len, &pos, &s->neg_inf_count, "neg_inf_count", UINT32_MAX, err, errlen) ||
		!get_varint(buf, len, &pos, n, "n_centroids", UINT32_MAX, err, errlen))
		return false;
	s->centroids_at = pos;
	return true;
}

bool
td_decode_header(const uint8_t *buf, size_t len, TdSummary *s,
				 uint32_t *n_centroids, char *err, size_t errlen)
{
	uint64_t	n;
	size_t		need;

	memset(s, 0, sizeof(*s));
	if (len < 8)
	{
		snprintf(err, errlen, "digest is %zu bytes, shorter than the smallest digest (%d bytes)",
				 len, TD_MIN_SIZE);
		return false;
	}
	if (memcmp(buf, "PSGD", 4) != 0)
	{
		snprintf(err, errlen, "digest does not start with magic \"PSGD\"");
		return false;
	}
	s->version = buf[4];
	need = s->version == 3 ? TD_MIN_SIZE : s->version == 2 ? TD_HEADER_SIZE_V2 :
		s->version == 1 ? TD_HEADER_SIZE_V1 : 0;
	if (need == 0)
	{
		snprintf(err, errlen, "unsupported digest version %u", (unsigned) buf[4]);
		return false;
	}
	if (len < need)
	{
		snprintf(err, errlen, "digest is %zu bytes, shorter than the %zu-byte header",
				 len, need);
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
	if (s->version == 3)
	{
		if (!decode_header_v3(buf, len, s, &n, err, errlen))
			return false;
	}
	else
	{
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
		s->centroids_at = need;
	}
	if (n > TD_MAX_CENTROIDS)
	{
		snprintf(err, errlen, "%llu centroids exceed the limit of %d",
				 (unsigned long long) n, TD_MAX_CENTROIDS);
		return false;
	}
	if (n > s->count)
	{
		snprintf(err, errlen, "%llu centroids exceed count %llu",
				 (unsigned long long) n, (unsigned long long) s->count);
		return false;
	}
	/*
	 * Each centroid needs at least 2 bytes (version 3: a step and a weight)
	 * or 9 (a double and a weight): check before anyone allocates.
	 */
	if (s->centroids_at + (s->version == 3 ? 2 : 9) * (size_t) n > len)
	{
		snprintf(err, errlen, "digest of %zu bytes is too short for %u centroids",
				 len, (unsigned) n);
		return false;
	}
	*n_centroids = (uint32_t) n;
	return true;
}

/*
 * Version 3 means: running key sums from key(min), never past key(max) and
 * never onto -0.0.  An invalid min or max is reported by td_validate; here
 * only the steps are checked, against the keys of whatever min and max hold.
 */
static bool
decode_steps(const uint8_t *buf, size_t len, size_t *pos, const TdSummary *s,
			 uint32_t n, double *means, char *err, size_t errlen)
{
	uint64_t	key = td_key_from_double(s->min);
	uint64_t	key_max = td_key_from_double(s->max);
	const uint64_t key_neg_zero = UINT64_C(0x7FFFFFFFFFFFFFFF);

	if (n > 0 && (!isfinite(s->min) || !isfinite(s->max) || s->min > s->max))
	{
		snprintf(err, errlen, "min and max must be finite with min <= max");
		return false;
	}
	for (uint32_t i = 0; i < n; i++)
	{
		uint64_t	step;

		if (!get_varint(buf, len, pos, &step, "mean step of centroid", i, err, errlen))
			return false;
		if (step > key_max - key)
		{
			snprintf(err, errlen, "centroid %u mean lies above max", (unsigned) i);
			return false;
		}
		key += step;
		if (key == key_neg_zero)
		{
			snprintf(err, errlen, "centroid %u mean is -0.0 (canonical form is +0.0)", (unsigned) i);
			return false;
		}
		means[i] = td_double_from_key(key);
	}
	return true;
}

bool
td_decode_centroids(const uint8_t *buf, size_t len, TdSummary *s,
					uint32_t n_centroids, double *means, uint64_t *weights,
					char *err, size_t errlen)
{
	size_t		pos = s->centroids_at;
	TdDigest	d;

	if (s->version == 3)
	{
		if (!decode_steps(buf, len, &pos, s, n_centroids, means, err, errlen))
			return false;
	}
	else
	{
		for (uint32_t i = 0; i < n_centroids; i++)
			means[i] = get_f64(buf + pos + 8 * (size_t) i);
		pos += 8 * (size_t) n_centroids;
	}

	for (uint32_t i = 0; i < n_centroids; i++)
	{
		if (!get_varint(buf, len, &pos, &weights[i], "weight of centroid", i, err, errlen))
			return false;
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
