/*
 * tdigest.h — the merging t-digest and its wire format (docs/wire-format.md):
 * tdigest.c (sort, merge, build), tdigest_wire.c (validate, encode, decode),
 * tdigest_cdf.c (anchors, CDF, quantiles).
 *
 * Pure C: no PostgreSQL headers, no allocation.  Callers own every array and
 * pass capacities in, so the same code runs inside a backend (palloc'd
 * memory) and in the stand-alone unit test (malloc'd memory).
 */
#ifndef PSG_TDIGEST_H
#define PSG_TDIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TD_MIN_COMPRESSION		10
#define TD_MAX_COMPRESSION		10000
#define TD_MAX_CENTROIDS		65536
#define TD_MAX_VARINT_BYTES		10
#define TD_ERRMSG_SIZE			160

/* Writers write version 3; readers read versions 1, 2 and 3. */
#define TD_WIRE_VERSION			3
#define TD_FIXED_SIZE			48	/* version 3: the part before the varints */
#define TD_MIN_SIZE				54	/* version 3: an empty digest */
#define TD_HEADER_SIZE_V2		92
#define TD_HEADER_SIZE_V1		84

/*
 * Up to EXACT_FACTOR * compression values (at most TD_MAX_CENTROIDS) every
 * value is a centroid of its own: small windows stay exact.  Python's
 * stat_guard.tdigest.EXACT_FACTOR is the same number.
 */
#define TD_EXACT_FACTOR			75

/*
 * The scale function: k2 (normalised by n) with a cap on a centroid's mass
 * of TD_MASS_CAP / compression of all values, so central centroids stay
 * small where KS and PSI look (docs/statistics.md).  Python's
 * stat_guard.tdigest.MASS_CAP is the same number.
 */
#define TD_MASS_CAP				0.44

/* Everything of a digest except its centroids. */
typedef struct TdSummary
{
	int			compression;
	uint64_t	count;			/* finite values summarised */
	uint64_t	null_count;
	uint64_t	nan_count;
	uint64_t	pos_inf_count;
	uint64_t	neg_inf_count;
	double		min;
	double		max;
	double		mean;			/* in [min, max] */
	double		mean_residual;	/* exact mean - mean, |.| <= ulp(mean) / 2 */
	double		m2;				/* sum of squared deviations from the mean;
								 * +Inf when it overflows */
	/* Set by td_decode_header for td_decode_centroids. */
	int			version;
	size_t		centroids_at;	/* offset of the centroid section */
	/* Read from a version 1 digest until td_decode_centroids converts them. */
	double		v1_sum;
	double		v1_sum_sq;
} TdSummary;

/* A digest whose centroid arrays belong to someone else. */
typedef struct TdDigest
{
	TdSummary	s;
	uint32_t	n_centroids;
	const double *means;
	const uint64_t *weights;
} TdDigest;

/* One point of the piecewise-linear CDF (wire-format section 2). */
typedef struct TdAnchor
{
	double		x;
	double		f_low;
	double		f_high;
} TdAnchor;

/* Summary of an empty digest with the given compression. */
extern void td_summary_init(TdSummary *s, int compression);

/* Values up to which every value is a centroid (EXACT_FACTOR * compression). */
extern uint64_t td_exact_limit(int compression);

/* Unit in the last place of |x| (2^-1074 for 0 and subnormals). */
extern double td_ulp(double x);

/*
 * Exact moments of values (any order, all finite, min/max their extremes):
 * the mean as mean + residual, and M2, from correctly rounded sums, so every
 * writer that follows docs/wire-format.md gets the same bits.
 */
extern void td_exact_moments(const double *values, uint32_t n, double min, double max,
							 double *mean, double *residual, double *m2);

/*
 * Add nb values with mean mb + rb and M2 m2b to the moments of na values
 * (Chan, Golub & LeVeque), the mean kept as a double-double; min and max are
 * those of all values.  Never NaN: an overflowing M2 is +Inf.
 */
extern void td_combine_moments(uint64_t na, double *mean, double *residual, double *m2,
							   uint64_t nb, double mb, double rb, double m2b,
							   double min, double max);

/*
 * Upper bound on the centroids td_merge_* can emit for this compression,
 * whatever the input size (<= TD_MAX_CENTROIDS).
 */
/*
 * Mean (hi + lo) and M2 of n sorted values given as order-preserving keys, from
 * deviations from their median, scaled so nothing overflows (tdigest_moments.c).
 */
extern void td_block_moments(const uint64_t *keys, uint32_t n, double *hi, double *lo,
							 double *m2);

extern uint32_t td_centroid_bound(int compression);

/*
 * Order-preserving map between doubles and unsigned 64-bit keys: a < b as
 * doubles iff key(a) < key(b) as integers (for non-NaN values).
 */
static inline uint64_t
td_key_from_double(double d)
{
	union
	{
		double		d;
		uint64_t	u;
	}			v;

	v.d = d;
	return (v.u & UINT64_C(0x8000000000000000)) ? ~v.u : (v.u | UINT64_C(0x8000000000000000));
}

static inline double
td_double_from_key(uint64_t k)
{
	union
	{
		double		d;
		uint64_t	u;
	}			v;

	v.u = (k & UINT64_C(0x8000000000000000)) ? (k & ~UINT64_C(0x8000000000000000)) : ~k;
	return v.d;
}

/* Sort keys ascending (LSD radix sort); scratch holds n keys. */
extern void td_sort_keys(uint64_t *keys, uint64_t *scratch, size_t n);

/*
 * Merge sorted centroids (am/aw, na) with sorted unit-weight points given as
 * keys (bkeys, nb) into out (capacity ocap >= 1), compressing with the k2
 * scale function normalised by total = sum of all weights.  Returns the
 * number of centroids written.  out must not alias the inputs.
 */
extern uint32_t td_merge_points(int compression, uint64_t total,
								const double *am, const uint64_t *aw, uint32_t na,
								const uint64_t *bkeys, uint32_t nb,
								double *om, uint64_t *ow, uint32_t ocap);

/* As td_merge_points, but the second input is weighted centroids too. */
extern uint32_t td_merge_centroids(int compression, uint64_t total,
								   const double *am, const uint64_t *aw, uint32_t na,
								   const double *bm, const uint64_t *bw, uint32_t nb,
								   double *om, uint64_t *ow, uint32_t ocap);

/*
 * A digest built from single values (the aggregate's state, the unit test's
 * builder): the summary and centroids of the values merged so far, spare
 * arrays the next merge writes into, and a buffer of the sort keys of values
 * not merged yet.  The caller owns and sizes every array.
 */
typedef struct TdBuilder
{
	TdSummary	s;				/* count, min, max and moments exclude the
								 * buffered values */
	uint32_t	n_centroids;
	uint32_t	cap_centroids;
	double	   *means;
	uint64_t   *weights;
	uint32_t	cap_spare;		/* merge output, swapped with means/weights */
	double	   *spare_means;
	uint64_t   *spare_weights;
	uint32_t	n_buffer;
	uint32_t	cap_buffer;
	uint64_t   *buffer;			/* td_key_from_double of unmerged values */
	uint64_t   *scratch;		/* radix sort scratch, n_buffer keys at least */
} TdBuilder;

/*
 * Capacity a merge of `inputs` centroids and points of total weight `total`
 * needs: all of them while total is within td_exact_limit, else never above
 * the bound.
 */
extern uint32_t td_merge_capacity(int compression, uint64_t total, uint64_t inputs);

/*
 * Merge the buffered values into the centroids: the keys radix-sorted, the
 * buffer's mean and M2 found in one shifted pass and combined with the
 * moments so far, min, max and count updated, and the merge written to the
 * spare arrays, which then become the centroids.  The spare arrays must hold
 * td_merge_capacity(compression, count + n_buffer, n_centroids + n_buffer)
 * centroids.  Returns false, changing nothing, when the count would overflow
 * 64 bits.
 */
extern bool td_builder_flush(TdBuilder *b);

/*
 * After the last flush: when every value is a centroid of its own, the
 * moments become the exact ones of td_exact_moments, so the digest has the
 * same bytes however the values were split and merged.
 */
extern void td_builder_finish(TdBuilder *b);

/* The spare arrays, holding n_out merged centroids, become the centroids. */
extern void td_builder_swap(TdBuilder *b, uint32_t n_out);

/* The merged values as a digest (the buffer must be empty to count them all). */
extern TdDigest td_builder_digest(const TdBuilder *b);

/*
 * Check every rule of wire-format section 1 that does not concern bytes.
 * Returns true when valid; otherwise writes a message to err.
 */
extern bool td_validate(const TdDigest *d, char *err, size_t errlen);

/*
 * Version 1 fields (sum, sum_sq in s->v1_sum, s->v1_sum_sq) into version 2
 * moments, as docs/wire-format.md says: from the centroids when every value
 * is one, else from the sums.  d must have passed the version 1 checks.
 */
extern void td_convert_v1(TdDigest *d);

/*
 * Check a digest read as version 1 (its sums in s.v1_sum, s.v1_sum_sq) by
 * every version 1 rule and convert it (td_convert_v1).  Returns true when
 * valid.
 */
extern bool td_check_v1(TdDigest *d, char *err, size_t errlen);

/* Exact size of the canonical encoding of d. */
extern size_t td_encoded_size(const TdDigest *d);

/* Write the canonical encoding of d to out (td_encoded_size bytes). */
extern size_t td_encode(const TdDigest *d, uint8_t *out);

/*
 * First step of decoding (version 1, 2 or 3): check the header and that
 * the input is long enough for the centroid count it announces (header +
 * 2n <= len in version 3, header + 9n in versions 1 and 2), so a caller may
 * allocate n means and weights.  Returns true when valid.
 */
extern bool td_decode_header(const uint8_t *buf, size_t len, TdSummary *s,
							 uint32_t *n_centroids, char *err, size_t errlen);

/*
 * Second step: read the centroids into caller arrays of n_centroids entries
 * and validate the whole digest (varints, trailing bytes, all of
 * td_validate).  A version 1 digest is converted (its moments computed; s is
 * updated).  Returns true when valid.
 */
extern bool td_decode_centroids(const uint8_t *buf, size_t len, TdSummary *s,
								uint32_t n_centroids, double *means, uint64_t *weights,
								char *err, size_t errlen);

/*
 * Build the CDF anchors of a valid, non-empty digest into out, which must
 * hold n_centroids + 2 anchors.  Returns the number of anchors.
 */
extern uint32_t td_build_anchors(const TdDigest *d, TdAnchor *out);

/* cdf(x) of a non-empty digest, x not NaN. */
extern double td_cdf(const TdDigest *d, const TdAnchor *a, uint32_t na, double x);

/* quantile(q) of a non-empty digest, 0 <= q <= 1. */
extern double td_quantile(const TdDigest *d, const TdAnchor *a, uint32_t na, double q);

/* Weighted mean of the centroids, clamped to [min, max]; NaN when empty. */
extern double td_centroid_mean(const TdDigest *d);

#endif							/* PSG_TDIGEST_H */
