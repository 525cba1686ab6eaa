/*
 * test_tdigest.c — unit tests of the pure digest code (src/tdigest.c,
 * tdigest_wire.c, tdigest_cdf.c),
 * without PostgreSQL.  Build and run: make -C pg_extension unittest
 */
#include "tdigest.h"

#define UNIT_RNG_SEED 0x9E3779B97F4A7C15ULL
#include "unit_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static double
rng_uniform(void)
{
	return (double) (rng_u64() >> 11) * (1.0 / 9007199254740992.0);
}

static double
rng_normal(void)
{
	double		u1 = 1.0 - rng_uniform();
	double		u2 = rng_uniform();

	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t	x = *(const uint64_t *) a,
				y = *(const uint64_t *) b;

	return x < y ? -1 : x > y;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ */

static void
check_sort_case(const char *name, double (*gen) (size_t), size_t n)
{
	uint64_t   *keys = malloc(n * sizeof(uint64_t));
	uint64_t   *expected = malloc(n * sizeof(uint64_t));
	uint64_t   *scratch = malloc(n * sizeof(uint64_t));
	bool		same = true;

	for (size_t i = 0; i < n; i++)
		keys[i] = expected[i] = td_key_from_double(gen(i) + 0.0);
	qsort(expected, n, sizeof(uint64_t), cmp_u64);
	td_sort_keys(keys, scratch, n);
	for (size_t i = 0; i < n; i++)
		same &= keys[i] == expected[i];
	CHECK(same, "sort case %s (n=%zu)", name, n);
	free(keys);
	free(expected);
	free(scratch);
}

static double gen_uniform(size_t i) { (void) i; return rng_uniform(); }
static double gen_normal(size_t i) { (void) i; return 100.0 + 15.0 * rng_normal(); }
static double gen_signed(size_t i) { (void) i; return rng_normal() * 1e6; }
static double gen_ties(size_t i) { (void) i; return (double) (rng_u64() % 7); }
static double gen_constant(size_t i) { (void) i; return 3.25; }
static double gen_tiny_range(size_t i) { (void) i; return 1.0 + rng_uniform() * 1e-12; }
static double gen_outlier(size_t i) { return i == 17 ? -1e300 : 1.0 + rng_uniform(); }
static double gen_extremes(size_t i)
{
	static const double v[] = {1e308, -1e308, 5e-324, -5e-324, 0.0, -0.0, 1.0, -1.0};

	return v[i % 8] * (1.0 + (double) (rng_u64() % 3) * 1e-10);
}

static void
test_sort(void)
{
	size_t		sizes[] = {0, 1, 2, 63, 64, 65, 1000, 16384};

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
	{
		size_t		n = sizes[k];

		check_sort_case("uniform", gen_uniform, n);
		check_sort_case("normal", gen_normal, n);
		check_sort_case("signed", gen_signed, n);
		check_sort_case("ties", gen_ties, n);
		check_sort_case("constant", gen_constant, n);
		check_sort_case("tiny range", gen_tiny_range, n);
		check_sort_case("outlier", gen_outlier, n);
		check_sort_case("extremes", gen_extremes, n);
	}
	/* Key order is double order. */
	CHECK(td_key_from_double(-1.0) < td_key_from_double(-0.5), "negative order");
	CHECK(td_key_from_double(-5e-324) < td_key_from_double(0.0), "denormal order");
	CHECK(td_key_from_double(0.0) < td_key_from_double(5e-324), "zero order");
	CHECK(td_double_from_key(td_key_from_double(-2.5)) == -2.5, "key round trip");
}

/* ------------------------------------------------------------------ */

/*
 * Digests built the way the aggregate builds them (td_builder_flush), in
 * malloc'd arrays sized for the worst case.
 */
typedef TdBuilder Builder;

static void
builder_init(Builder *b, int compression, uint32_t cap_buffer)
{
	uint32_t	cap = td_centroid_bound(compression);

	if (td_exact_limit(compression) + cap_buffer > cap)
		cap = (uint32_t) td_exact_limit(compression) + cap_buffer;

	memset(b, 0, sizeof(*b));
	td_summary_init(&b->s, compression);
	b->cap_centroids = b->cap_spare = cap;
	b->means = malloc(cap * sizeof(double));
	b->spare_means = malloc(cap * sizeof(double));
	b->weights = malloc(cap * sizeof(uint64_t));
	b->spare_weights = malloc(cap * sizeof(uint64_t));
	b->cap_buffer = cap_buffer;
	b->buffer = malloc(cap_buffer * sizeof(uint64_t));
	b->scratch = malloc(cap_buffer * sizeof(uint64_t));
}

static void
builder_free(Builder *b)
{
	free(b->means);
	free(b->spare_means);
	free(b->weights);
	free(b->spare_weights);
	free(b->buffer);
	free(b->scratch);
}

static void
builder_flush(Builder *b)
{
	if (!td_builder_flush(b))
	{
		fprintf(stderr, "count overflow while building a test digest\n");
		exit(2);
	}
}

static void
builder_add(Builder *b, double x)
{
	if (b->n_buffer == b->cap_buffer)
		builder_flush(b);
	b->buffer[b->n_buffer++] = td_key_from_double(x + 0.0);
}

static TdDigest
builder_digest(Builder *b)
{
	builder_flush(b);
	td_builder_finish(b);
	return td_builder_digest(b);
}

/* A flush that would overflow the 64-bit count is refused and changes nothing. */
static void
test_flush_refuses_count_overflow(void)
{
	Builder		b;
	TdSummary	before;

	builder_init(&b, 100, 16);
	for (int i = 0; i < 10; i++)
		builder_add(&b, (double) i);
	builder_flush(&b);
	b.s.count = UINT64_MAX - 2;
	for (int i = 0; i < 3; i++)
		builder_add(&b, (double) i);
	before = b.s;
	CHECK(!td_builder_flush(&b), "overflowing flush refused");
	CHECK(b.n_buffer == 3 && b.s.count == before.count && b.s.mean == before.mean,
		  "refused flush changed the builder");
	builder_free(&b);
}

static void
test_build_and_accuracy(void)
{
	int			compressions[] = {10, 100, 200, 1000};
	size_t		n = 1000000;
	double	   *values = malloc(n * sizeof(double));
	char		err[TD_ERRMSG_SIZE];

	for (size_t i = 0; i < n; i++)
		values[i] = exp(1.0 + 0.8 * rng_normal());

	for (size_t k = 0; k < sizeof(compressions) / sizeof(compressions[0]); k++)
	{
		Builder		b;
		TdDigest	d;
		TdAnchor   *anchors;
		uint32_t	na;
		double	   *sorted = malloc(n * sizeof(double));
		double		worst = 0.0;

		builder_init(&b, compressions[k], 4096);
		for (size_t i = 0; i < n; i++)
			builder_add(&b, values[i]);
		d = builder_digest(&b);
		CHECK(td_validate(&d, err, sizeof(err)), "built digest invalid: %s", err);
		CHECK(d.s.count == n, "count");
		CHECK(d.n_centroids <= td_centroid_bound(compressions[k]),
			  "%u centroids above bound %u", d.n_centroids, td_centroid_bound(compressions[k]));

		memcpy(sorted, values, n * sizeof(double));
		qsort(sorted, n, sizeof(double), cmp_double);
		CHECK(d.s.min == sorted[0] && d.s.max == sorted[n - 1], "min/max exact");

		anchors = malloc((d.n_centroids + 2) * sizeof(TdAnchor));
		na = td_build_anchors(&d, anchors);
		for (int j = 1; j < 1000; j++)
		{
			double		x = sorted[(size_t) ((double) j / 1000.0 * n)];
			size_t		lo = 0,
						hi = n;
			double		exact,
						err_rank;

			while (lo < hi)
			{
				size_t		mid = (lo + hi) / 2;

				if (sorted[mid] <= x)
					lo = mid + 1;
				else
					hi = mid;
			}
			exact = (double) lo / n;
			err_rank = fabs(td_cdf(&d, anchors, na, x) - exact);
			if (err_rank > worst)
				worst = err_rank;
		}
		/* Rank error shrinks roughly like 1/δ (k2 normalised: coarse at δ = 10). */
		CHECK(worst < 2.0 / compressions[k],
			  "compression %d: max rank error %g", compressions[k], worst);
		printf("compression %5d: %5u centroids, max rank error %.6f\n",
			   compressions[k], d.n_centroids, worst);
		free(anchors);
		free(sorted);
		builder_free(&b);
	}
	free(values);
}

static void
test_bound_holds_for_adversarial_inputs(void)
{
	/* Merging many tiny digests is where centroid counts could creep up. */
	int			compressions[] = {10, 50, 300, 10000};

	for (size_t k = 0; k < sizeof(compressions) / sizeof(compressions[0]); k++)
	{
		Builder		b;
		TdDigest	d;
		char		err[TD_ERRMSG_SIZE];

		builder_init(&b, compressions[k], 64);
		for (size_t i = 0; i < 300000; i++)
			builder_add(&b, (double) (i % 1000) + rng_uniform());
		d = builder_digest(&b);
		CHECK(td_validate(&d, err, sizeof(err)), "%s", err);
		CHECK(d.n_centroids <= td_centroid_bound(compressions[k]), "bound");
		builder_free(&b);
	}
}

/* ------------------------------------------------------------------ */

static void
test_huge_magnitudes(void)
{
	Builder		b;
	TdDigest	d;
	char		err[TD_ERRMSG_SIZE];

	builder_init(&b, 10, 256);
	for (int i = 0; i < 100000; i++)
		builder_add(&b, (i % 2) ? 1e308 : -1e308);
	d = builder_digest(&b);
	CHECK(td_validate(&d, err, sizeof(err)), "huge: %s", err);
	for (uint32_t i = 0; i < d.n_centroids; i++)
		CHECK(isfinite(d.means[i]), "huge mean finite");
	builder_free(&b);

	builder_init(&b, 10, 256);
	for (int i = 0; i < 100000; i++)
		builder_add(&b, 1e308 * (1.0 - 1e-3 * rng_uniform()));
	d = builder_digest(&b);
	CHECK(td_validate(&d, err, sizeof(err)), "same-sign huge: %s", err);
	CHECK(isinf(d.s.m2) && isfinite(d.s.mean) && d.s.mean <= 1e308, "m2 overflows to inf, mean stays finite");
	CHECK(isfinite(td_centroid_mean(&d)), "centroid mean finite");
	builder_free(&b);

	builder_init(&b, 10, 256);
	for (int i = 0; i < 1000; i++)
		builder_add(&b, (i % 2) ? 5e-324 : -5e-324);
	d = builder_digest(&b);
	CHECK(td_validate(&d, err, sizeof(err)), "denormal: %s", err);
	builder_free(&b);
}

/* ------------------------------------------------------------------ */

static void
test_wire_round_trip_and_rejection(void)
{
	Builder		b;
	TdDigest	d;
	uint8_t    *buf;
	size_t		size;
	TdSummary	s;
	uint32_t	n;
	char		err[TD_ERRMSG_SIZE];
	double	   *means;
	uint64_t   *weights;
	int			rejected = 0;

	builder_init(&b, 100, 1024);
	for (int i = 0; i < 50000; i++)
		builder_add(&b, rng_normal());
	d = builder_digest(&b);
	size = td_encoded_size(&d);
	buf = malloc(size + 16);
	CHECK(td_encode(&d, buf) == size, "encoded size");

	CHECK(td_decode_header(buf, size, &s, &n, err, sizeof(err)), "%s", err);
	means = malloc((n + 1) * sizeof(double));
	weights = malloc((n + 1) * sizeof(uint64_t));
	CHECK(td_decode_centroids(buf, size, &s, n, means, weights, err, sizeof(err)), "%s", err);
	CHECK(n == d.n_centroids && memcmp(means, d.means, n * sizeof(double)) == 0 &&
		  memcmp(weights, d.weights, n * sizeof(uint64_t)) == 0, "round trip");

	/* Every truncation and every trailing byte is rejected. */
	for (size_t len = 0; len < size; len++)
	{
		if (!td_decode_header(buf, len, &s, &n, err, sizeof(err)) ||
			!td_decode_centroids(buf, len, &s, n, means, weights, err, sizeof(err)))
			rejected++;
	}
	CHECK(rejected == (int) size, "all %zu truncations rejected (%d)", size, rejected);
	buf[size] = 0;
	CHECK(!(td_decode_header(buf, size + 1, &s, &n, err, sizeof(err)) &&
			td_decode_centroids(buf, size + 1, &s, n, means, weights, err, sizeof(err))),
		  "trailing byte rejected");

	free(means);
	free(weights);
	free(buf);
	builder_free(&b);
}

/* ------------------------------------------------------------------ */

static void
test_cdf_quantile_rules(void)
{
	/* Two atoms at the extremes and a half-split middle centroid. */
	double		means[] = {0.0, 5.0, 10.0};
	uint64_t	weights[] = {1, 8, 1};
	TdDigest	d;
	TdAnchor	a[5];
	uint32_t	na;

	td_summary_init(&d.s, 100);
	d.s.count = 10;
	d.s.min = 0.0;
	d.s.max = 10.0;
	d.n_centroids = 3;
	d.means = means;
	d.weights = weights;
	na = td_build_anchors(&d, a);
	CHECK(na == 3, "anchors %u", na);
	CHECK(td_cdf(&d, a, na, -1.0) == 0.0, "below min");
	CHECK(td_cdf(&d, a, na, 0.0) == 0.1, "atom at min");
	CHECK(td_cdf(&d, a, na, 5.0) == 0.5, "middle centroid");
	CHECK(fabs(td_cdf(&d, a, na, 2.5) - 0.3) < 1e-15, "interpolated");
	CHECK(td_cdf(&d, a, na, 10.0) == 1.0, "at max");
	CHECK(td_quantile(&d, a, na, 0.0) == 0.0, "q0");
	CHECK(td_quantile(&d, a, na, 0.05) == 0.0, "inside atom");
	CHECK(td_quantile(&d, a, na, 0.5) == 5.0, "median");
	CHECK(fabs(td_quantile(&d, a, na, 0.3) - 2.5) < 1e-15, "interpolated quantile");
	CHECK(td_quantile(&d, a, na, 1.0) == 10.0, "q1");
}

/* Heavy runs of ties become point masses: the CDF jumps exactly at each value. */
static void
test_heavy_ties_are_exact(void)
{
	Builder		b;
	TdDigest	d;
	TdAnchor   *anchors;
	uint32_t	na;
	char		err[TD_ERRMSG_SIZE];
	bool		exact = true;

	builder_init(&b, 100, 4096);
	for (int i = 0; i < 170000; i++)
		builder_add(&b, (double) (i % 17));
	d = builder_digest(&b);
	CHECK(td_validate(&d, err, sizeof(err)), "%s", err);
	anchors = malloc((d.n_centroids + 2) * sizeof(TdAnchor));
	na = td_build_anchors(&d, anchors);
	for (int v = 0; v < 17; v++)
	{
		exact &= td_cdf(&d, anchors, na, (double) v) == (double) (v + 1) / 17.0;
		exact &= td_cdf(&d, anchors, na, v + 0.5) == (double) (v + 1) / 17.0;
	}
	CHECK(exact, "cdf of 17 tied values is exact");
	CHECK(td_quantile(&d, anchors, na, 0.5) == 8.0, "median of ties");
	free(anchors);
	builder_free(&b);
}

/* ------------------------------------------------------------------ */

static double
rel_diff(double a, double b)
{
	if (a == b)
		return 0.0;
	return fabs(a - b) / fmax(fabs(a), fabs(b));
}

/*
 * Streaming moments (flushes of 4096 values, Chan et al. between them) and
 * merged halves match the exact ones to 1e-9 at any offset and scale.
 */
static void
test_moments_at_any_magnitude(void)
{
	static const double offsets[] = {1e12, 0.0, 1e9, -1e12, 0.0, 3.0};
	static const double scales[] = {1e-3, 1e-12, 1.0, 1e-3, 1e12, 1e-300};
	size_t		n = 200000;
	double	   *values = malloc(n * sizeof(double));

	for (size_t k = 0; k < sizeof(offsets) / sizeof(offsets[0]); k++)
	{
		Builder		whole,
					half1,
					half2;
		TdDigest	d,
					h2;
		double		mean,
					res,
					m2,
					lo = INFINITY,
					hi = -INFINITY;
		double		cm,
					cr,
					cm2;

		for (size_t i = 0; i < n; i++)
		{
			values[i] = offsets[k] + scales[k] * rng_normal();
			lo = fmin(lo, values[i]);
			hi = fmax(hi, values[i]);
		}
		td_exact_moments(values, (uint32_t) n, lo, hi, &mean, &res, &m2);
		builder_init(&whole, 100, 4096);
		builder_init(&half1, 100, 4096);
		builder_init(&half2, 100, 4096);
		for (size_t i = 0; i < n; i++)
		{
			builder_add(&whole, values[i]);
			builder_add(i % 3 ? &half1 : &half2, values[i]);
		}
		d = builder_digest(&whole);
		CHECK(rel_diff(d.s.mean, mean) < 1e-9 || fabs(d.s.mean - mean) < 1e-9 * sqrt(m2 / n),
			  "offset %g scale %g: mean %.17g vs %.17g", offsets[k], scales[k], d.s.mean, mean);
		CHECK(rel_diff(d.s.m2, m2) < 1e-9, "offset %g scale %g: m2 %.17g vs %.17g",
			  offsets[k], scales[k], d.s.m2, m2);
		h2 = builder_digest(&half2);
		(void) builder_digest(&half1);
		cm = half1.s.mean;
		cr = half1.s.mean_residual;
		cm2 = half1.s.m2;
		td_combine_moments(half1.s.count, &cm, &cr, &cm2, h2.s.count, h2.s.mean,
						   h2.s.mean_residual, h2.s.m2, lo, hi);
		CHECK(rel_diff(cm, mean) < 1e-9 || fabs(cm - mean) < 1e-9 * sqrt(m2 / n),
			  "merged mean %.17g vs %.17g", cm, mean);
		CHECK(rel_diff(cm2, m2) < 1e-9, "offset %g scale %g: merged m2 %.17g vs %.17g",
			  offsets[k], scales[k], cm2, m2);
		builder_free(&whole);
		builder_free(&half1);
		builder_free(&half2);
	}
	free(values);
}

/* Up to 75·δ values every value is a centroid, and the moments are the exact ones. */
static void
test_small_inputs_stay_exact(void)
{
	Builder		b;
	TdDigest	d;
	double		values[7500];
	double		mean,
				res,
				m2,
				lo = INFINITY,
				hi = -INFINITY;
	bool		all_single = true;

	CHECK(td_exact_limit(100) == 7500, "exact limit %llu", (unsigned long long) td_exact_limit(100));
	builder_init(&b, 100, 128);
	for (int i = 0; i < 7500; i++)
	{
		values[i] = 1e9 + rng_normal();
		lo = fmin(lo, values[i]);
		hi = fmax(hi, values[i]);
		builder_add(&b, values[i]);
	}
	d = builder_digest(&b);
	CHECK(d.n_centroids == 7500, "%u centroids for 7500 values", d.n_centroids);
	for (uint32_t i = 0; i < d.n_centroids; i++)
		all_single &= d.weights[i] == 1;
	CHECK(all_single, "every weight is 1");
	td_exact_moments(values, 7500, lo, hi, &mean, &res, &m2);
	CHECK(d.s.mean == mean && d.s.mean_residual == res && d.s.m2 == m2, "exact moments");
	builder_add(&b, 1e9);
	d = builder_digest(&b);
	CHECK(d.n_centroids < 500, "compressed past the exact range: %u", d.n_centroids);
	builder_free(&b);
}

/* A version 1 digest is read and converted to version 2 moments. */
static void
test_version_1_is_read(void)
{
	/* Three values 1, 2, 4: sum 7, sum_sq 21; one weight-2 centroid keeps it compressed. */
	uint8_t		buf[84 + 16 + 2];
	double		means[2] = {1.0, 3.0};
	TdSummary	s;
	uint32_t	n;
	double		m[2];
	uint64_t	w[2];
	char		err[TD_ERRMSG_SIZE];
	union
	{
		double		d;
		uint64_t	u;
	}			f;

	memset(buf, 0, sizeof(buf));
	memcpy(buf, "PSGD", 4);
	buf[4] = 1;
	buf[6] = 100;
	buf[8] = 3;
	f.d = 1.0;
	memcpy(buf + 48, &f.u, 8);
	f.d = 4.0;
	memcpy(buf + 56, &f.u, 8);
	f.d = 7.0;
	memcpy(buf + 64, &f.u, 8);
	f.d = 21.0;
	memcpy(buf + 72, &f.u, 8);
	buf[80] = 2;
	memcpy(buf + 84, &means[0], 8);
	memcpy(buf + 92, &means[1], 8);
	buf[100] = 1;
	buf[101] = 2;
	CHECK(td_decode_header(buf, sizeof(buf), &s, &n, err, sizeof(err)), "%s", err);
	CHECK(td_decode_centroids(buf, sizeof(buf), &s, n, m, w, err, sizeof(err)), "%s", err);
	CHECK(s.version == TD_WIRE_VERSION && s.mean == 7.0 / 3.0 && s.mean_residual == 0.0 &&
		  s.m2 == 21.0 - 7.0 * (7.0 / 3.0), "v1 converted: mean %g m2 %g", s.mean, s.m2);
	buf[4] = 4;
	CHECK(!td_decode_header(buf, sizeof(buf), &s, &n, err, sizeof(err)), "version 4 refused");
}

static bool
decodes(const uint8_t *buf, size_t len, double *means, uint64_t *weights, char *err)
{
	TdSummary	s;
	uint32_t	n;

	return td_decode_header(buf, len, &s, &n, err, TD_ERRMSG_SIZE) &&
		td_decode_centroids(buf, len, &s, n, means, weights, err, TD_ERRMSG_SIZE);
}

/*
 * Version 3 stores the means as key steps: a hand-made digest of -1, -0.0
 * written as +0.0, 2 reads back bit for bit; a step past max or onto -0.0
 * is refused; the version 2 layout of the same digest reads as the same
 * digest, and is larger.
 */
static void
test_version_3_steps(void)
{
	double		means[3] = {-1.0, 0.0, 2.0};
	uint64_t	weights[3] = {1, 2, 1};
	double		m[3];
	uint64_t	w[3];
	uint8_t		buf[128],
				v2[128];
	char		err[TD_ERRMSG_SIZE];
	TdDigest	d;
	size_t		size,
				pos;
	union
	{
		double		d;
		uint64_t	u;
	}			f;

	td_summary_init(&d.s, 100);
	d.s.count = 4;
	d.s.min = -1.0;
	d.s.max = 2.0;
	d.s.mean = 0.25;
	d.s.m2 = 4.75;
	d.n_centroids = 3;
	d.means = means;
	d.weights = weights;
	size = td_encode(&d, buf);
	CHECK(size == td_encoded_size(&d), "v3 size %zu", size);
	CHECK(buf[4] == 3 && size < sizeof(buf), "version 3 written");
	CHECK(decodes(buf, size, m, w, err), "%s", err);
	CHECK(memcmp(m, means, sizeof(means)) == 0 && memcmp(w, weights, sizeof(weights)) == 0,
		  "v3 round trip");

	/* Steps start right after the six one-byte header varints. */
	pos = TD_FIXED_SIZE + 6;
	CHECK(buf[pos] == 0, "step 0 is 0 (the first mean is min)");
	/* Step 1 from -1.0 to +0.0, minus one: lands on -0.0. */
	{
		uint64_t	step = td_key_from_double(0.0) - td_key_from_double(-1.0);
		uint8_t		mutated[128];
		size_t		mlen;
		uint8_t    *q;

		memcpy(mutated, buf, pos + 1);
		q = mutated + pos + 1;
		for (uint64_t v = step - 1; ; v >>= 7)
		{
			*q++ = (uint8_t) (v >= 0x80 ? (v & 0x7f) | 0x80 : v);
			if (v < 0x80)
				break;
		}
		/* the last step and the weights, as written */
		{
			size_t		rest = pos + 1;

			while (buf[rest] & 0x80)
				rest++;
			rest++;
			memcpy(q, buf + rest, size - rest);
			mlen = (size_t) (q - mutated) + (size - rest);
		}
		CHECK(!decodes(mutated, mlen, m, w, err) && strstr(err, "-0.0") != NULL,
			  "step onto -0.0 refused: %s", err);
	}
	/* max lowered below the last mean: the steps run past max. */
	{
		uint8_t		mutated[128];

		memcpy(mutated, buf, size);
		f.d = 1.5;
		memcpy(mutated + 16, &f.u, 8);
		CHECK(!decodes(mutated, size, m, w, err) && strstr(err, "above max") != NULL,
			  "step past max refused: %s", err);
	}

	/* The same digest in the version 2 layout. */
	memset(v2, 0, sizeof(v2));
	memcpy(v2, "PSGD", 4);
	v2[4] = 2;
	v2[6] = 100;
	v2[8] = 4;
	memcpy(v2 + 48, &d.s.min, 8);
	memcpy(v2 + 56, &d.s.max, 8);
	memcpy(v2 + 64, &d.s.mean, 8);
	memcpy(v2 + 80, &d.s.m2, 8);
	v2[88] = 3;
	memcpy(v2 + 92, means, sizeof(means));
	v2[116] = 1;
	v2[117] = 2;
	v2[118] = 1;
	CHECK(decodes(v2, 119, m, w, err), "v2: %s", err);
	CHECK(memcmp(m, means, sizeof(means)) == 0 && memcmp(w, weights, sizeof(weights)) == 0,
		  "v2 read as the same digest");
	CHECK(size < 119, "v3 (%zu bytes) smaller than v2 (119)", size);
}

int
main(void)
{
	test_moments_at_any_magnitude();
	test_small_inputs_stay_exact();
	test_version_1_is_read();
	test_version_3_steps();
	test_heavy_ties_are_exact();
	test_flush_refuses_count_overflow();
	test_sort();
	test_cdf_quantile_rules();
	test_wire_round_trip_and_rejection();
	test_huge_magnitudes();
	test_bound_holds_for_adversarial_inputs();
	test_build_and_accuracy();
	printf("%d checks, %d failures\n", checks, failures);
	return failures == 0 ? 0 : 1;
}
