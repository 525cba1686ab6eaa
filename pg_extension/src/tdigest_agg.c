/*
 * tdigest_agg.c — aggregate support: tdigest_agg(value [, compression]) and
 * tdigest_merge(tdigest), with combine/serialize/deserialize for parallel
 * workers.
 *
 * The per-row cost decides the aggregate's speed, so the transition function
 * only appends the value's sort key to a flat buffer.  When the buffer fills,
 * td_builder_flush (tdigest.c, the same code the unit test runs) radix-sorts
 * it, adds its mean and M2 to the moments (Chan et al.) and merges it with
 * the centroids in one linear pass.  Up to td_exact_limit values every value
 * stays a centroid, and td_builder_finish then gives the exact moments, so a
 * small window has the same bytes serially, in parallel and from Python.
 * This file owns the memory: it sizes the arrays the pure code writes into.
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
	TdBuilder	b;				/* scratch allocated at the first flush */
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
	td_summary_init(&st->b.s, compression);
	st->b.cap_buffer = BUFFER_INITIAL;
	st->b.buffer = MemoryContextAlloc(context, sizeof(uint64) * st->b.cap_buffer);
	return st;
}

static void
count_overflow(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("tdigest %s overflows 64 bits", what)));
}

static void
add_count(uint64 *target, uint64 amount, const char *what)
{
	if (*target + amount < *target)
		count_overflow(what);
	*target += amount;
}

/*
 * Make sure the spare (merge output) arrays hold a merge of `inputs`
 * centroids/points of total weight `total`.
 */
static void
ensure_spare(TdAggState *st, uint64 total, uint64 inputs)
{
	uint32		need = td_merge_capacity(st->b.s.compression, total, inputs);

	if (st->b.cap_spare >= need)
		return;
	if (st->b.spare_means)
	{
		pfree(st->b.spare_means);
		pfree(st->b.spare_weights);
	}
	st->b.spare_means = MemoryContextAlloc(st->context, sizeof(double) * need);
	st->b.spare_weights = MemoryContextAlloc(st->context, sizeof(uint64) * need);
	st->b.cap_spare = need;
}

/* Sort the buffered values and merge them into the centroids. */
static void
state_flush(TdAggState *st)
{
	if (st->b.n_buffer == 0)
		return;
	if (st->b.scratch == NULL)
		st->b.scratch = MemoryContextAlloc(st->context, sizeof(uint64) * st->b.cap_buffer);
	if (st->b.s.count + st->b.n_buffer < st->b.s.count)
		count_overflow("count");
	ensure_spare(st, st->b.s.count + st->b.n_buffer,
				 (uint64) st->b.n_centroids + st->b.n_buffer);
	if (!td_builder_flush(&st->b))
		count_overflow("count");
}

/* Grow the buffer while it is below its maximum, otherwise flush it. */
static void
state_make_room(TdAggState *st)
{
	if (st->b.cap_buffer < BUFFER_MAX)
	{
		st->b.cap_buffer *= 2;
		st->b.buffer = repalloc(st->b.buffer, sizeof(uint64) * st->b.cap_buffer);
		if (st->b.scratch)
		{
			pfree(st->b.scratch);
			st->b.scratch = NULL;
		}
	}
	else
		state_flush(st);
}

/* The state as a digest, its buffer flushed first. */
static TdDigest
state_as_digest(TdAggState *st)
{
	state_flush(st);
	td_builder_finish(&st->b);
	return td_builder_digest(&st->b);
}

/*
 * Add a whole digest (summary + sorted centroids) to the state.  Counts are
 * checked for overflow; moments combine by Chan et al.'s formula (never NaN).
 */
static void
state_add_digest(TdAggState *st, const TdDigest *d)
{
	TdSummary  *s = &st->b.s;
	uint64		total;
	double		new_min,
				new_max;

	state_flush(st);
	total = s->count;
	add_count(&s->null_count, d->s.null_count, "null_count");
	add_count(&s->nan_count, d->s.nan_count, "nan_count");
	add_count(&s->pos_inf_count, d->s.pos_inf_count, "pos_inf_count");
	add_count(&s->neg_inf_count, d->s.neg_inf_count, "neg_inf_count");
	if (d->s.compression > s->compression)
		s->compression = d->s.compression;
	if (d->s.count == 0)
		return;

	add_count(&total, d->s.count, "count");

	new_min = s->count == 0 ? d->s.min : Min(s->min, d->s.min);
	new_max = s->count == 0 ? d->s.max : Max(s->max, d->s.max);
	td_combine_moments(s->count, &s->mean, &s->mean_residual, &s->m2,
					   d->s.count, d->s.mean, d->s.mean_residual, d->s.m2,
					   new_min, new_max);
	s->min = new_min;
	s->max = new_max;

	ensure_spare(st, total, (uint64) st->b.n_centroids + d->n_centroids);
	td_builder_swap(&st->b,
					td_merge_centroids(s->compression, total,
									   st->b.means, st->b.weights, st->b.n_centroids,
									   d->means, d->weights, d->n_centroids,
									   st->b.spare_means, st->b.spare_weights,
									   st->b.cap_spare));
	s->count = total;
}

/*
 * Add a decoded digest to st (a new state in context when st is NULL), then
 * free the digest's arrays.
 */
static TdAggState *
state_absorb(TdAggState *st, MemoryContext context, TdDigest *d)
{
	if (st == NULL)
		st = state_create(context, d->s.compression);
	state_add_digest(st, d);
	psg_free_digest(d);
	return st;
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
		add_count(&st->b.s.null_count, 1, "null_count");
		PG_RETURN_POINTER(st);
	}
	x = PG_GETARG_FLOAT8(1);
	if (unlikely(!isfinite(x)))
	{
		if (isnan(x))
			add_count(&st->b.s.nan_count, 1, "nan_count");
		else if (x > 0)
			add_count(&st->b.s.pos_inf_count, 1, "pos_inf_count");
		else
			add_count(&st->b.s.neg_inf_count, 1, "neg_inf_count");
		PG_RETURN_POINTER(st);
	}
	if (unlikely(st->b.n_buffer == st->b.cap_buffer))
		state_make_room(st);
	/* x + 0.0 turns -0.0 into +0.0, so the digest never holds a negative zero. */
	st->b.buffer[st->b.n_buffer++] = td_key_from_double(x + 0.0);
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
	PG_RETURN_POINTER(state_absorb(st, context, &d));
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
		st1 = state_create(context, st2->b.s.compression);

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
	d = state_as_digest(st);
	PG_RETURN_BYTEA_P((bytea *) psg_digest_to_varlena(&d));
}

Datum
psg_tdigest_agg_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	MemoryContext context = agg_context(fcinfo, "tdigest_agg_deserialize");
	TdDigest	d;

	psg_decode_bytes((const uint8 *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), &d,
					 ERRCODE_INVALID_BINARY_REPRESENTATION);
	/* state_add_digest skips the moments of an empty digest; they are zero anyway. */
	PG_RETURN_POINTER(state_absorb(NULL, context, &d));
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
		st = state_absorb(st, CurrentMemoryContext, &d);
	}
	d = state_as_digest(st);
	return psg_digest_to_varlena(&d);
}
