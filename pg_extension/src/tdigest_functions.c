/*
 * tdigest_functions.c — SQL functions that read a tdigest: quantile and cdf
 * (scalar and array forms) and the summary accessors (count, min, max, sum,
 * mean, stddev, compression, centroid count, invalid-value counts).
 */
#include "pg_stat_guard.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(psg_tdigest_quantile);
PG_FUNCTION_INFO_V1(psg_tdigest_quantile_array);
PG_FUNCTION_INFO_V1(psg_tdigest_cdf);
PG_FUNCTION_INFO_V1(psg_tdigest_cdf_array);
PG_FUNCTION_INFO_V1(psg_tdigest_count);
PG_FUNCTION_INFO_V1(psg_tdigest_min);
PG_FUNCTION_INFO_V1(psg_tdigest_max);
PG_FUNCTION_INFO_V1(psg_tdigest_sum);
PG_FUNCTION_INFO_V1(psg_tdigest_mean);
PG_FUNCTION_INFO_V1(psg_tdigest_stddev);
PG_FUNCTION_INFO_V1(psg_tdigest_compression);
PG_FUNCTION_INFO_V1(psg_tdigest_centroid_count);
PG_FUNCTION_INFO_V1(psg_tdigest_invalid_counts);

/*
 * The summary fields alone (count, min, max, moments, counters, compression,
 * centroid count): what the scalar accessors need, without decoding and
 * allocating the centroids.  Stored values were fully validated on input;
 * the header is still checked.  A value stored as version 1 (by an older
 * library) is decoded whole, which converts its moments.
 */
static uint32
decode_summary(struct varlena *v, TdSummary *s)
{
	char		err[TD_ERRMSG_SIZE];
	uint32_t	n;

	if (!td_decode_header((const uint8 *) VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), s, &n,
						  err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid tdigest: %s", err)));
	if (s->version == 1)
	{
		TdDigest	d;

		psg_decode_tdigest(v, &d);
		*s = d.s;
		psg_free_digest(&d);
	}
	return n;
}

/* ---------------------------------------------------------------------
 * Quantiles and CDF
 * ---------------------------------------------------------------------
 */

static void
check_quantile_arg(double q)
{
	if (isnan(q) || q < 0.0 || q > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quantile %g is not in [0, 1]", q)));
}

static void
check_cdf_arg(double x)
{
	if (isnan(x))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cdf is undefined at NaN")));
}

static void
check_arg(double arg, bool is_quantile)
{
	if (is_quantile)
		check_quantile_arg(arg);
	else
		check_cdf_arg(arg);
}

/* Decoded digest plus its anchors, ready for cdf/quantile evaluation. */
typedef struct DigestReader
{
	TdDigest	d;
	TdAnchor   *anchors;
	uint32		n_anchors;
} DigestReader;

/* Returns false for an empty digest (no CDF: the SQL result is NULL). */
static bool
reader_open(struct varlena *v, DigestReader *r)
{
	psg_decode_tdigest(v, &r->d);
	if (r->d.s.count == 0)
		return false;
	r->anchors = (TdAnchor *) palloc(sizeof(TdAnchor) * (r->d.n_centroids + 2));
	r->n_anchors = td_build_anchors(&r->d, r->anchors);
	return true;
}

static double
reader_evaluate(const DigestReader *r, double arg, bool is_quantile)
{
	return is_quantile ? td_quantile(&r->d, r->anchors, r->n_anchors, arg)
		: td_cdf(&r->d, r->anchors, r->n_anchors, arg);
}

/* quantile(q) or cdf(x) at one point; NULL for an empty digest. */
static Datum
evaluate_float8(FunctionCallInfo fcinfo, bool is_quantile)
{
	struct varlena *v = PG_GETARG_TDIGEST_PP(0);
	double		arg = PG_GETARG_FLOAT8(1);
	DigestReader r;

	check_arg(arg, is_quantile);
	if (!reader_open(v, &r))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(reader_evaluate(&r, arg, is_quantile));
}

/*
 * Evaluate a float8[] elementwise; NULL elements stay NULL, the result has
 * the input's shape.  An empty digest gives NULL for the whole array.
 */
static Datum
map_float8_array(FunctionCallInfo fcinfo, bool is_quantile)
{
	struct varlena *v = PG_GETARG_TDIGEST_PP(0);
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(1);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	DigestReader r;
	ArrayType  *result;

	if (ARR_ELEMTYPE(arr) != FLOAT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("expected a double precision array")));
	deconstruct_array(arr, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			check_arg(DatumGetFloat8(elems[i]), is_quantile);
	if (!reader_open(v, &r))
		PG_RETURN_NULL();

	for (int i = 0; i < n; i++)
		if (!nulls[i])
			elems[i] = Float8GetDatum(reader_evaluate(&r, DatumGetFloat8(elems[i]), is_quantile));
	result = construct_md_array(elems, nulls, ARR_NDIM(arr), ARR_DIMS(arr),
								ARR_LBOUND(arr), FLOAT8OID, sizeof(float8),
								FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	PG_RETURN_ARRAYTYPE_P(result);
}

Datum
psg_tdigest_quantile(PG_FUNCTION_ARGS)
{
	return evaluate_float8(fcinfo, true);
}

Datum
psg_tdigest_cdf(PG_FUNCTION_ARGS)
{
	return evaluate_float8(fcinfo, false);
}

Datum
psg_tdigest_quantile_array(PG_FUNCTION_ARGS)
{
	return map_float8_array(fcinfo, true);
}

Datum
psg_tdigest_cdf_array(PG_FUNCTION_ARGS)
{
	return map_float8_array(fcinfo, false);
}

/* ---------------------------------------------------------------------
 * Summary accessors
 * ---------------------------------------------------------------------
 */

static int64
count_to_int64(uint64 c, const char *what)
{
	if (c > (uint64) PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s " UINT64_FORMAT " is out of range for bigint", what, c)));
	return (int64) c;
}

Datum
psg_tdigest_count(PG_FUNCTION_ARGS)
{
	TdSummary	s;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	PG_RETURN_INT64(count_to_int64(s.count, "count"));
}

/* The summary values min, max and sum: NULL for an empty digest. */
typedef enum SummaryValue
{
	SUMMARY_MIN,
	SUMMARY_MAX,
	SUMMARY_SUM
} SummaryValue;

static Datum
summary_value(FunctionCallInfo fcinfo, SummaryValue which)
{
	TdSummary	s;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	if (s.count == 0)
		PG_RETURN_NULL();
	switch (which)
	{
		case SUMMARY_MIN:
			PG_RETURN_FLOAT8(s.min);
		case SUMMARY_MAX:
			PG_RETURN_FLOAT8(s.max);
		case SUMMARY_SUM:
			break;
	}
	/* mean * count: ±Infinity when that overflows */
	PG_RETURN_FLOAT8(s.mean * (double) s.count);
}

Datum
psg_tdigest_min(PG_FUNCTION_ARGS)
{
	return summary_value(fcinfo, SUMMARY_MIN);
}

Datum
psg_tdigest_max(PG_FUNCTION_ARGS)
{
	return summary_value(fcinfo, SUMMARY_MAX);
}

Datum
psg_tdigest_sum(PG_FUNCTION_ARGS)
{
	return summary_value(fcinfo, SUMMARY_SUM);
}

/* The exact mean (within [min, max]). */
Datum
psg_tdigest_mean(PG_FUNCTION_ARGS)
{
	TdSummary	s;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	if (s.count == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(s.mean);
}

/*
 * Sample standard deviation sqrt(m2 / (n - 1)).  NULL with fewer than two
 * values or when m2 overflowed (+Inf: the spread exceeds about 1e154).
 */
Datum
psg_tdigest_stddev(PG_FUNCTION_ARGS)
{
	TdSummary	s;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	if (s.count < 2 || !isfinite(s.m2))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(sqrt(s.m2 / ((double) s.count - 1.0)));
}

Datum
psg_tdigest_compression(PG_FUNCTION_ARGS)
{
	TdSummary	s;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	PG_RETURN_INT32(s.compression);
}

Datum
psg_tdigest_centroid_count(PG_FUNCTION_ARGS)
{
	TdSummary	summary;

	PG_RETURN_INT32((int32) decode_summary(PG_GETARG_TDIGEST_PP(0), &summary));
}

/* Any u64 as numeric (no int64 detour: the counters may use all 64 bits). */
static Datum
uint64_numeric(uint64 v)
{
	char		buf[24];

	snprintf(buf, sizeof(buf), UINT64_FORMAT, v);
	return DirectFunctionCall3(numeric_in, CStringGetDatum(buf),
							   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
}

/*
 * NULL/NaN/Inf counts as numeric: they are only ever added up, and a digest
 * may legitimately carry any u64 there.
 */
Datum
psg_tdigest_invalid_counts(PG_FUNCTION_ARGS)
{
	TdSummary	s;
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("tdigest_invalid_counts must be called where a record is accepted")));
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = uint64_numeric(s.null_count);
	values[1] = uint64_numeric(s.nan_count);
	values[2] = uint64_numeric(s.pos_inf_count);
	values[3] = uint64_numeric(s.neg_inf_count);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
