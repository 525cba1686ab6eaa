/*
 * tdigest_agg.c — aggregate support: tdigest_agg(value [, compression]) and
 * tdigest_merge(tdigest), with combine/serialize/deserialize for parallel
 * workers.
 *
 * The per-row cost decides the aggregate's speed, so the transition function
 * only appends the value's sort key to a flat buffer.  When the buffer fills,
 * sum and sum_sq are added up over it (in arrival order, as a per-row sum
 * would), then it is radix-sorted and merged with the centroids in one
 * linear pass (td_merge_points).
 */
#include "pg_stat_guard.h"

#include <math.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(psg_tdigest_agg_trans);
PG_FUNCTION_INFO_V1(psg_tdigest_agg_trans_compression);
PG_FUNCTION_INFO_V1(psg_tdigest_merge_trans);
PG_FUNCTION_INFO_V1(psg_tdigest_agg_combine);
PG_FUNCTION_INFO_V1(psg_tdigest_agg_serialize);
PG_FUNCTION_INFO_V1(psg_tdigest_agg_deserialize);
PG_FUNCTION_INFO_V1(psg_tdigest_agg_final);

/*
 * Buffer sizes in values.  It starts small so a GROUP BY with many small
 * groups stays small, and doubles up to the maximum, where a sort+merge pass
 * costs little per value and the keys plus scratch still fit in L2 cache.
 */
#define BUFFER_INITIAL		128
#define BUFFER_MAX			16384

typedef struct TdAggState
{
	MemoryContext context;		/* the aggregate context owning all arrays */
	TdSummary	s;				/* count, min, max, sum, sum_sq exclude the
								 * buffered values */
	uint32		n_centroids;
	uint32		cap_centroids;
	double	   *means;
	uint64	   *weights;
	uint32		cap_spare;		/* merge output, swapped with means/weights */
	double	   *spare_means;
	uint64	   *spare_weights;
	uint32		n_buffer;
	uint32		cap_buffer;
	uint64	   *buffer;			/* td_key_from_double of unmerged values */
	uint64	   *scratch;		/* radix sort scratch, cap_buffer keys */
} TdAggState;

static void
check_compression(int64 compression)
{
	if (compression < TD_MIN_COMPRESSION || compression > TD_MAX_COMPRESSION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("compression " INT64_FORMAT " is out of range", compression),
				 errhint("Compression must be between %d and %d.",
						 TD_MIN_COMPRESSION, TD_MAX_COMPRESSION)));
}

static TdAggState *
state_create(MemoryContext context, int compression)
{
	TdAggState *st = MemoryContextAllocZero(context, sizeof(TdAggState));

	st->context = context;
	td_summary_init(&st->s, compression);
	st->cap_buffer = BUFFER_INITIAL;
	st->buffer = MemoryContextAlloc(context, sizeof(uint64) * st->cap_buffer);
	return st;
}

static void
add_count(uint64 *target, uint64 amount, const char *what)
{
	if (*target + amount < *target)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("tdigest %s overflows 64 bits", what)));
	*target += amount;
}

/* Make sure the spare (merge output) arrays hold at least `need` centroids. */
static void
ensure_spare(TdAggState *st, uint32 need)
{
	if (st->cap_spare >= need)
		return;
	if (st->spare_means)
	{
		pfree(st->spare_means);
		pfree(st->spare_weights);
	}
	st->spare_means = MemoryContextAlloc(st->context, sizeof(double) * need);
	st->spare_weights = MemoryContextAlloc(st->context, sizeof(uint64) * need);
	st->cap_spare = need;
}

static void
swap_centroids(TdAggState *st, uint32 n_out)
{
	double	   *m = st->means;
	uint64	   *w = st->weights;
	uint32		cap = st->cap_centroids;

	st->means = st->spare_means;
	st->weights = st->spare_weights;
	st->cap_centroids = st->cap_spare;
	st->spare_means = m;
	st->spare_weights = w;
	st->cap_spare = cap;
	st->n_centroids = n_out;
}

/* Capacity a merge of `inputs` centroids/points needs: never above the bound. */
static uint32
merge_capacity(const TdAggState *st, uint64 inputs)
{
	uint32		bound = td_centroid_bound(st->s.compression);

	return inputs < bound ? (uint32) inputs : bound;
}

/* Sort the buffered values and merge them into the centroids. */
static void
state_flush(TdAggState *st)
{
	uint32		nb = st->n_buffer;
	double		lo,
				hi;
	uint64		total = st->s.count;
	uint32		n_out;

	if (nb == 0)
		return;

	{
		double		sum = st->s.sum;
		double		sum_sq = st->s.sum_sq;

		for (uint32 i = 0; i < nb; i++)
		{
			double		x = td_double_from_key(st->buffer[i]);

			sum += x;
			sum_sq += x * x;
		}
		st->s.sum = sum;
		st->s.sum_sq = sum_sq;
	}

	if (st->scratch == NULL)
		st->scratch = MemoryContextAlloc(st->context, sizeof(uint64) * st->cap_buffer);
	td_sort_keys(st->buffer, st->scratch, nb);

	lo = td_double_from_key(st->buffer[0]);
	hi = td_double_from_key(st->buffer[nb - 1]);
	if (st->s.count == 0)
	{
		st->s.min = lo;
		st->s.max = hi;
	}
	else
	{
		st->s.min = Min(st->s.min, lo);
		st->s.max = Max(st->s.max, hi);
	}
	add_count(&total, nb, "count");

	ensure_spare(st, merge_capacity(st, (uint64) st->n_centroids + nb));
	n_out = td_merge_points(st->s.compression, total,
							st->means, st->weights, st->n_centroids,
							st->buffer, nb,
							st->spare_means, st->spare_weights, st->cap_spare);
	swap_centroids(st, n_out);
	st->s.count = total;
	st->n_buffer = 0;
}

/* Grow the buffer while it is below its maximum, otherwise flush it. */
static void
state_make_room(TdAggState *st)
{
	if (st->cap_buffer < BUFFER_MAX)
	{
		st->cap_buffer *= 2;
		st->buffer = repalloc(st->buffer, sizeof(uint64) * st->cap_buffer);
		if (st->scratch)
		{
			pfree(st->scratch);
			st->scratch = NULL;
		}
	}
	else
		state_flush(st);
}

/* The state as a digest; the buffer must be flushed. */
static TdDigest
state_as_digest(const TdAggState *st)
{
	TdDigest	d;

	Assert(st->n_buffer == 0);
	d.s = st->s;
	d.n_centroids = st->n_centroids;
	d.means = st->means;
	d.weights = st->weights;
	return d;
}

/*
 * Add a whole digest (summary + sorted centroids) to the state.  Counts are
 * checked for overflow; an infinite sum of each sign cannot give NaN.
 */
static void
state_add_digest(TdAggState *st, const TdDigest *d)
{
	uint64		total;
	uint32		n_out;
	double		sum;

	state_flush(st);
	total = st->s.count;
	add_count(&st->s.null_count, d->s.null_count, "null_count");
	add_count(&st->s.nan_count, d->s.nan_count, "nan_count");
	add_count(&st->s.pos_inf_count, d->s.pos_inf_count, "pos_inf_count");
	add_count(&st->s.neg_inf_count, d->s.neg_inf_count, "neg_inf_count");
	if (d->s.compression > st->s.compression)
		st->s.compression = d->s.compression;
	if (d->s.count == 0)
		return;

	add_count(&total, d->s.count, "count");

	sum = st->s.sum + d->s.sum;
	if (isnan(sum))
	{
		/*
		 * +Inf + -Inf: both sums overflowed.  Fall back to the centroid
		 * estimate of the combined mean times the count.
		 */
		TdDigest	mine = state_as_digest(st);
		double		n = (double) total;

		sum = (td_centroid_mean(&mine) * ((double) st->s.count / n) +
			   td_centroid_mean(d) * ((double) d->s.count / n)) * n;
	}
	st->s.sum = sum;
	st->s.sum_sq += d->s.sum_sq;

	if (st->s.count == 0)
	{
		st->s.min = d->s.min;
		st->s.max = d->s.max;
	}
	else
	{
		st->s.min = Min(st->s.min, d->s.min);
		st->s.max = Max(st->s.max, d->s.max);
	}

	ensure_spare(st, merge_capacity(st, (uint64) st->n_centroids + d->n_centroids));
	n_out = td_merge_centroids(st->s.compression, total,
							   st->means, st->weights, st->n_centroids,
							   d->means, d->weights, d->n_centroids,
							   st->spare_means, st->spare_weights, st->cap_spare);
	swap_centroids(st, n_out);
	st->s.count = total;
}

static MemoryContext
agg_context(FunctionCallInfo fcinfo, const char *fname)
{
	MemoryContext context;

	if (!AggCheckCallContext(fcinfo, &context))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s called in non-aggregate context", fname)));
	return context;
}

/* The per-row work, shared by both tdigest_agg variants. */
static inline Datum
agg_add_value(FunctionCallInfo fcinfo, TdAggState *st)
{
	double		x;

	if (PG_ARGISNULL(1))
	{
		add_count(&st->s.null_count, 1, "null_count");
		PG_RETURN_POINTER(st);
	}
	x = PG_GETARG_FLOAT8(1);
	if (unlikely(!isfinite(x)))
	{
		if (isnan(x))
			add_count(&st->s.nan_count, 1, "nan_count");
		else if (x > 0)
			add_count(&st->s.pos_inf_count, 1, "pos_inf_count");
		else
			add_count(&st->s.neg_inf_count, 1, "neg_inf_count");
		PG_RETURN_POINTER(st);
	}
	if (unlikely(st->n_buffer == st->cap_buffer))
		state_make_room(st);
	/* x + 0.0 turns -0.0 into +0.0, so the digest never holds a negative zero. */
	st->buffer[st->n_buffer++] = td_key_from_double(x + 0.0);
	PG_RETURN_POINTER(st);
}

Datum
psg_tdigest_agg_trans(PG_FUNCTION_ARGS)
{
	TdAggState *st;

	if (likely(!PG_ARGISNULL(0)))
		st = (TdAggState *) PG_GETARG_POINTER(0);
	else
		st = state_create(agg_context(fcinfo, "tdigest_agg"), PSG_DEFAULT_COMPRESSION);
	return agg_add_value(fcinfo, st);
}

Datum
psg_tdigest_agg_trans_compression(PG_FUNCTION_ARGS)
{
	TdAggState *st;

	if (likely(!PG_ARGISNULL(0)))
		st = (TdAggState *) PG_GETARG_POINTER(0);
	else
	{
		MemoryContext context = agg_context(fcinfo, "tdigest_agg");

		/* The first row's compression is the digest's. */
		if (PG_ARGISNULL(2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("compression must not be NULL")));
		check_compression(PG_GETARG_INT32(2));
		st = state_create(context, PG_GETARG_INT32(2));
	}
	return agg_add_value(fcinfo, st);
}

Datum
psg_tdigest_merge_trans(PG_FUNCTION_ARGS)
{
	TdAggState *st = PG_ARGISNULL(0) ? NULL : (TdAggState *) PG_GETARG_POINTER(0);
	MemoryContext context = agg_context(fcinfo, "tdigest_merge");
	TdDigest	d;

	if (PG_ARGISNULL(1))
	{
		if (st == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st);
	}
	psg_decode_tdigest(PG_GETARG_TDIGEST_PP(1), &d);
	if (st == NULL)
		st = state_create(context, d.s.compression);
	state_add_digest(st, &d);
	psg_free_digest(&d);
	PG_RETURN_POINTER(st);
}

Datum
psg_tdigest_agg_combine(PG_FUNCTION_ARGS)
{
	TdAggState *st1 = PG_ARGISNULL(0) ? NULL : (TdAggState *) PG_GETARG_POINTER(0);
	TdAggState *st2 = PG_ARGISNULL(1) ? NULL : (TdAggState *) PG_GETARG_POINTER(1);
	MemoryContext context = agg_context(fcinfo, "tdigest_agg_combine");
	TdDigest	d;

	if (st2 == NULL)
	{
		if (st1 == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(st1);
	}
	/* The result must live in the aggregate context: copy into a new state. */
	if (st1 == NULL)
		st1 = state_create(context, st2->s.compression);

	state_flush(st2);
	d = state_as_digest(st2);
	state_add_digest(st1, &d);
	PG_RETURN_POINTER(st1);
}

/* Internal state between workers: the wire-format digest. */
Datum
psg_tdigest_agg_serialize(PG_FUNCTION_ARGS)
{
	TdAggState *st = (TdAggState *) PG_GETARG_POINTER(0);
	TdDigest	d;

	agg_context(fcinfo, "tdigest_agg_serialize");
	state_flush(st);
	d = state_as_digest(st);
	PG_RETURN_BYTEA_P((bytea *) psg_digest_to_varlena(&d));
}

Datum
psg_tdigest_agg_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	MemoryContext context = agg_context(fcinfo, "tdigest_agg_deserialize");
	TdDigest	d;
	TdAggState *st;

	psg_decode_bytes((const uint8 *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), &d,
					 ERRCODE_INVALID_BINARY_REPRESENTATION);
	st = state_create(context, d.s.compression);
	state_add_digest(st, &d);
	/* state_add_digest skips sums of an empty digest; they are zero anyway. */
	psg_free_digest(&d);
	PG_RETURN_POINTER(st);
}

/*
 * Zero input rows give an empty digest (count 0) rather than NULL, so a
 * window without rows still has a digest to ship and compare.
 */
Datum
psg_tdigest_agg_final(PG_FUNCTION_ARGS)
{
	TdAggState *st = PG_ARGISNULL(0) ? NULL : (TdAggState *) PG_GETARG_POINTER(0);
	TdDigest	d;

	if (st == NULL)
	{
		memset(&d, 0, sizeof(d));
		td_summary_init(&d.s, PSG_DEFAULT_COMPRESSION);
		PG_RETURN_POINTER(psg_digest_to_varlena(&d));
	}
	state_flush(st);
	d = state_as_digest(st);
	PG_RETURN_POINTER(psg_digest_to_varlena(&d));
}

/*
 * Merge wire-format digests into one (allocated in the current memory
 * context).  Each input is fully validated; a zero length means "no rows" and
 * is skipped.  With no rows at all the result is an empty digest.
 */
struct varlena *
psg_merge_digest_bytes(int n, const char *const *bufs, const size_t *lens, int compression)
{
	TdAggState *st;
	TdDigest	d;
	int			i;

	check_compression(compression);
	st = state_create(CurrentMemoryContext, compression);
	for (i = 0; i < n; i++)
	{
		if (lens[i] == 0)
			continue;
		psg_decode_bytes((const uint8 *) bufs[i], lens[i], &d, ERRCODE_DATA_CORRUPTED);
		state_add_digest(st, &d);
		psg_free_digest(&d);
	}
	state_flush(st);
	d = state_as_digest(st);
	return psg_digest_to_varlena(&d);
}
