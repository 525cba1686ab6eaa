/*
 * tdigest_type.c — the tdigest type: text and binary I/O, bytea casts and
 * the SQL-callable accessors (quantile, cdf, count, ...).
 */
#include "pg_stat_guard.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(psg_tdigest_in);
PG_FUNCTION_INFO_V1(psg_tdigest_out);
PG_FUNCTION_INFO_V1(psg_tdigest_recv);
PG_FUNCTION_INFO_V1(psg_tdigest_send);
PG_FUNCTION_INFO_V1(psg_tdigest_to_bytea);
PG_FUNCTION_INFO_V1(psg_bytea_to_tdigest);
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

/* ---------------------------------------------------------------------
 * Shared encode/decode helpers
 * ---------------------------------------------------------------------
 */

struct varlena *
psg_digest_to_varlena(const TdDigest *d)
{
	size_t		size = td_encoded_size(d);
	struct varlena *v;

	/* size <= 84 + 18 * 65536: far below MaxAllocSize. */
	v = (struct varlena *) palloc(VARHDRSZ + size);
	SET_VARSIZE(v, VARHDRSZ + size);
	td_encode(d, (uint8_t *) VARDATA(v));
	return v;
}

void
psg_decode_bytes(const uint8 *bytes, size_t len, TdDigest *d, int errcode_on_failure)
{
	char		err[TD_ERRMSG_SIZE];
	uint32_t	n;
	double	   *means;
	uint64_t   *weights;

	if (!td_decode_header(bytes, len, &d->s, &n, err, sizeof(err)))
		ereport(ERROR,
				(errcode(errcode_on_failure),
				 errmsg("invalid tdigest: %s", err)));

	/* td_decode_header proved 84 + 9n <= len, so n is backed by input bytes. */
	means = (double *) palloc(sizeof(double) * (n > 0 ? n : 1));
	weights = (uint64_t *) palloc(sizeof(uint64_t) * (n > 0 ? n : 1));
	if (!td_decode_centroids(bytes, len, &d->s, n, means, weights, err, sizeof(err)))
		ereport(ERROR,
				(errcode(errcode_on_failure),
				 errmsg("invalid tdigest: %s", err)));
	d->n_centroids = n;
	d->means = means;
	d->weights = weights;
}

/*
 * The summary fields alone (count, min, max, sum, counters, compression,
 * centroid count): what the scalar accessors need, without decoding and
 * allocating the centroids.  Stored values were fully validated on input;
 * the header is still checked.
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
	return n;
}

void
psg_decode_tdigest(struct varlena *v, TdDigest *d)
{
	psg_decode_bytes((const uint8 *) VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v), d,
					 ERRCODE_DATA_CORRUPTED);
}

void
psg_free_digest(TdDigest *d)
{
	if (d->means)
		pfree((void *) d->means);
	if (d->weights)
		pfree((void *) d->weights);
	d->means = NULL;
	d->weights = NULL;
}

/* ---------------------------------------------------------------------
 * Text form
 *
 * {"compression": 200, "count": 3, "null_count": 0, "nan_count": 0,
 *  "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 3, "sum": 6,
 *  "sum_sq": 14, "centroids": [[1, 1], [2, 1], [3, 1]]}
 *
 * It is valid JSON (an overflowed sum is written as the string "Infinity"
 * or "-Infinity"), doubles use the shortest form that reads back exactly.
 * ---------------------------------------------------------------------
 */

static void
append_double(StringInfo buf, double d)
{
	char		tmp[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isinf(d))
	{
		appendStringInfoString(buf, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
		return;
	}
	double_to_shortest_decimal_buf(d + 0.0, tmp);
	appendStringInfoString(buf, tmp);
}

Datum
psg_tdigest_out(PG_FUNCTION_ARGS)
{
	struct varlena *v = PG_GETARG_TDIGEST_PP(0);
	TdDigest	d;
	StringInfoData buf;

	psg_decode_tdigest(v, &d);
	initStringInfo(&buf);
	appendStringInfo(&buf,
					 "{\"compression\": %d, \"count\": " UINT64_FORMAT
					 ", \"null_count\": " UINT64_FORMAT
					 ", \"nan_count\": " UINT64_FORMAT
					 ", \"pos_inf_count\": " UINT64_FORMAT
					 ", \"neg_inf_count\": " UINT64_FORMAT ", \"min\": ",
					 d.s.compression, d.s.count, d.s.null_count, d.s.nan_count,
					 d.s.pos_inf_count, d.s.neg_inf_count);
	append_double(&buf, d.s.min);
	appendStringInfoString(&buf, ", \"max\": ");
	append_double(&buf, d.s.max);
	appendStringInfoString(&buf, ", \"sum\": ");
	append_double(&buf, d.s.sum);
	appendStringInfoString(&buf, ", \"sum_sq\": ");
	append_double(&buf, d.s.sum_sq);
	appendStringInfoString(&buf, ", \"centroids\": [");
	for (uint32 i = 0; i < d.n_centroids; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoChar(&buf, '[');
		append_double(&buf, d.means[i]);
		appendStringInfo(&buf, ", " UINT64_FORMAT "]", d.weights[i]);
	}
	appendStringInfoString(&buf, "]}");
	PG_RETURN_CSTRING(buf.data);
}

/* A strict parser for exactly the form tdigest_out writes (any key order). */
typedef struct TextParser
{
	const char *input;
	const char *p;
} TextParser;

static void pg_attribute_noreturn()
text_error(TextParser *tp, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid input syntax for type tdigest: %s", what),
			 errdetail("Error at character %d.", (int) (tp->p - tp->input) + 1)));
}

static void
skip_ws(TextParser *tp)
{
	while (*tp->p == ' ' || *tp->p == '\t' || *tp->p == '\n' || *tp->p == '\r')
		tp->p++;
}

static void
expect_char(TextParser *tp, char c)
{
	char		msg[32];

	skip_ws(tp);
	if (*tp->p != c)
	{
		snprintf(msg, sizeof(msg), "expected '%c'", c);
		text_error(tp, msg);
	}
	tp->p++;
}

/* Next non-blank character is c?  Consumes it if so. */
static bool
accept_char(TextParser *tp, char c)
{
	skip_ws(tp);
	if (*tp->p == c)
	{
		tp->p++;
		return true;
	}
	return false;
}

/* A key: a quoted string of [a-z_], at most 31 characters. */
static void
parse_key(TextParser *tp, char *key, size_t keylen)
{
	size_t		n = 0;

	expect_char(tp, '"');
	while ((*tp->p >= 'a' && *tp->p <= 'z') || *tp->p == '_')
	{
		if (n + 1 >= keylen)
			text_error(tp, "key too long");
		key[n++] = *tp->p++;
	}
	key[n] = '\0';
	if (*tp->p != '"')
		text_error(tp, "malformed key");
	tp->p++;
}

static uint64
parse_uint64(TextParser *tp)
{
	uint64		v = 0;
	const char *start;

	skip_ws(tp);
	start = tp->p;
	if (*tp->p == '0' && tp->p[1] >= '0' && tp->p[1] <= '9')
		text_error(tp, "leading zeros in an integer");
	while (*tp->p >= '0' && *tp->p <= '9')
	{
		unsigned	digit = *tp->p - '0';

		if (v > (PG_UINT64_MAX - digit) / 10)
			text_error(tp, "integer out of range for 64 bits");
		v = v * 10 + digit;
		tp->p++;
	}
	if (tp->p == start)
		text_error(tp, "expected an unsigned integer");
	return v;
}

/*
 * A JSON number read exactly by strtod, or (when allow_inf) the strings
 * "Infinity" / "-Infinity".  Grammar is checked first so strtod never sees
 * hex floats, "nan" or "inf".
 */
static double
parse_double(TextParser *tp, bool allow_inf)
{
	const char *s;
	char	   *end;
	double		d;
	bool		nonzero_digit = false;

	skip_ws(tp);
	if (*tp->p == '"')
	{
		if (strncmp(tp->p, "\"Infinity\"", 10) == 0)
		{
			if (!allow_inf)
				text_error(tp, "infinity is not allowed here");
			tp->p += 10;
			return get_float8_infinity();
		}
		if (strncmp(tp->p, "\"-Infinity\"", 11) == 0)
		{
			if (!allow_inf)
				text_error(tp, "infinity is not allowed here");
			tp->p += 11;
			return -get_float8_infinity();
		}
		text_error(tp, "expected a number");
	}

	s = tp->p;
	if (*s == '-')
		s++;
	if (!(*s >= '0' && *s <= '9'))
		text_error(tp, "expected a number");
	if (*s == '0' && s[1] >= '0' && s[1] <= '9')
		text_error(tp, "leading zeros in a number");
	while (*s >= '0' && *s <= '9')
		nonzero_digit |= (*s++ != '0');
	if (*s == '.')
	{
		s++;
		if (!(*s >= '0' && *s <= '9'))
			text_error(tp, "expected digits after '.'");
		while (*s >= '0' && *s <= '9')
			nonzero_digit |= (*s++ != '0');
	}
	if (*s == 'e' || *s == 'E')
	{
		s++;
		if (*s == '+' || *s == '-')
			s++;
		if (!(*s >= '0' && *s <= '9'))
			text_error(tp, "expected digits in the exponent");
		while (*s >= '0' && *s <= '9')
			s++;
	}

	errno = 0;
	d = strtod(tp->p, &end);
	if (end != s)
		text_error(tp, "malformed number");
	/* Like float8in: subnormal results are fine, overflow and total underflow are not. */
	if (errno == ERANGE && (isinf(d) || (d == 0.0 && nonzero_digit)))
		text_error(tp, "number out of range for double precision");
	if (!isfinite(d))
		text_error(tp, "number out of range for double precision");
	tp->p = end;
	return d;
}

enum
{
	KEY_COMPRESSION,
	KEY_COUNT,
	KEY_NULL_COUNT,
	KEY_NAN_COUNT,
	KEY_POS_INF_COUNT,
	KEY_NEG_INF_COUNT,
	KEY_MIN,
	KEY_MAX,
	KEY_SUM,
	KEY_SUM_SQ,
	KEY_CENTROIDS,
	NUM_KEYS
};

static const char *const key_names[NUM_KEYS] = {
	"compression", "count", "null_count", "nan_count", "pos_inf_count",
	"neg_inf_count", "min", "max", "sum", "sum_sq", "centroids"
};

Datum
psg_tdigest_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	TextParser	tp = {str, str};
	bool		seen[NUM_KEYS] = {false};
	TdDigest	d;
	double	   *means = NULL;
	uint64_t   *weights = NULL;
	uint32		n = 0,
				cap = 0;
	uint64		compression = 0;
	char		err[TD_ERRMSG_SIZE];

	memset(&d, 0, sizeof(d));
	expect_char(&tp, '{');
	for (int k = 0; k < NUM_KEYS; k++)
	{
		char		key[32];
		int			which = -1;

		if (k > 0)
			expect_char(&tp, ',');
		parse_key(&tp, key, sizeof(key));
		for (int i = 0; i < NUM_KEYS; i++)
			if (strcmp(key, key_names[i]) == 0)
				which = i;
		if (which < 0)
			text_error(&tp, "unknown key");
		if (seen[which])
			text_error(&tp, "duplicate key");
		seen[which] = true;
		expect_char(&tp, ':');

		switch (which)
		{
			case KEY_COMPRESSION:
				compression = parse_uint64(&tp);
				if (compression < TD_MIN_COMPRESSION || compression > TD_MAX_COMPRESSION)
					text_error(&tp, "compression must be between 10 and 10000");
				d.s.compression = (int) compression;
				break;
			case KEY_COUNT:
				d.s.count = parse_uint64(&tp);
				break;
			case KEY_NULL_COUNT:
				d.s.null_count = parse_uint64(&tp);
				break;
			case KEY_NAN_COUNT:
				d.s.nan_count = parse_uint64(&tp);
				break;
			case KEY_POS_INF_COUNT:
				d.s.pos_inf_count = parse_uint64(&tp);
				break;
			case KEY_NEG_INF_COUNT:
				d.s.neg_inf_count = parse_uint64(&tp);
				break;
			case KEY_MIN:
				d.s.min = parse_double(&tp, false);
				break;
			case KEY_MAX:
				d.s.max = parse_double(&tp, false);
				break;
			case KEY_SUM:
				d.s.sum = parse_double(&tp, true);
				break;
			case KEY_SUM_SQ:
				d.s.sum_sq = parse_double(&tp, true);
				break;
			case KEY_CENTROIDS:
				expect_char(&tp, '[');
				if (!accept_char(&tp, ']'))
				{
					do
					{
						CHECK_FOR_INTERRUPTS();
						if (n == TD_MAX_CENTROIDS)
							text_error(&tp, "more than 65536 centroids");
						if (n == cap)
						{
							cap = cap == 0 ? 64 : cap * 2;
							means = means ? repalloc(means, sizeof(double) * cap)
								: palloc(sizeof(double) * cap);
							weights = weights ? repalloc(weights, sizeof(uint64) * cap)
								: palloc(sizeof(uint64) * cap);
						}
						expect_char(&tp, '[');
						means[n] = parse_double(&tp, false);
						expect_char(&tp, ',');
						weights[n] = parse_uint64(&tp);
						expect_char(&tp, ']');
						n++;
					} while (accept_char(&tp, ','));
					expect_char(&tp, ']');
				}
				break;
		}
	}
	expect_char(&tp, '}');
	skip_ws(&tp);
	if (*tp.p != '\0')
		text_error(&tp, "unexpected characters after the closing '}'");

	d.n_centroids = n;
	d.means = means;
	d.weights = weights;
	if (!td_validate(&d, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type tdigest: %s", err)));
	PG_RETURN_POINTER(psg_digest_to_varlena(&d));
}

/* ---------------------------------------------------------------------
 * Binary I/O and bytea casts: the wire format itself
 * ---------------------------------------------------------------------
 */

static struct varlena *
canonical_from_bytes(const uint8 *bytes, size_t len, int errcode_on_failure)
{
	TdDigest	d;
	struct varlena *v;

	psg_decode_bytes(bytes, len, &d, errcode_on_failure);
	v = psg_digest_to_varlena(&d);
	psg_free_digest(&d);
	return v;
}

Datum
psg_tdigest_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	size_t		len = buf->len - buf->cursor;
	struct varlena *v;

	v = canonical_from_bytes((const uint8 *) buf->data + buf->cursor, len,
							 ERRCODE_INVALID_BINARY_REPRESENTATION);
	buf->cursor = buf->len;
	PG_RETURN_POINTER(v);
}

/* Stored values are canonical wire bytes: send copies them. */
Datum
psg_tdigest_send(PG_FUNCTION_ARGS)
{
	struct varlena *v = PG_GETARG_TDIGEST_PP(0);
	size_t		len = VARSIZE_ANY_EXHDR(v);
	bytea	   *result = (bytea *) palloc(VARHDRSZ + len);

	SET_VARSIZE(result, VARHDRSZ + len);
	memcpy(VARDATA(result), VARDATA_ANY(v), len);
	PG_RETURN_BYTEA_P(result);
}

Datum
psg_tdigest_to_bytea(PG_FUNCTION_ARGS)
{
	return psg_tdigest_send(fcinfo);
}

Datum
psg_bytea_to_tdigest(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_POINTER(canonical_from_bytes((const uint8 *) VARDATA_ANY(b),
										   VARSIZE_ANY_EXHDR(b),
										   ERRCODE_INVALID_BINARY_REPRESENTATION));
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

Datum
psg_tdigest_quantile(PG_FUNCTION_ARGS)
{
	struct varlena *v = PG_GETARG_TDIGEST_PP(0);
	double		q = PG_GETARG_FLOAT8(1);
	DigestReader r;

	check_quantile_arg(q);
	if (!reader_open(v, &r))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(td_quantile(&r.d, r.anchors, r.n_anchors, q));
}

Datum
psg_tdigest_cdf(PG_FUNCTION_ARGS)
{
	struct varlena *v = PG_GETARG_TDIGEST_PP(0);
	double		x = PG_GETARG_FLOAT8(1);
	DigestReader r;

	check_cdf_arg(x);
	if (!reader_open(v, &r))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(td_cdf(&r.d, r.anchors, r.n_anchors, x));
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
	{
		if (nulls[i])
			continue;
		if (is_quantile)
			check_quantile_arg(DatumGetFloat8(elems[i]));
		else
			check_cdf_arg(DatumGetFloat8(elems[i]));
	}
	if (!reader_open(v, &r))
		PG_RETURN_NULL();

	for (int i = 0; i < n; i++)
	{
		double		arg;

		if (nulls[i])
			continue;
		arg = DatumGetFloat8(elems[i]);
		elems[i] = Float8GetDatum(is_quantile
								  ? td_quantile(&r.d, r.anchors, r.n_anchors, arg)
								  : td_cdf(&r.d, r.anchors, r.n_anchors, arg));
	}
	result = construct_md_array(elems, nulls, ARR_NDIM(arr), ARR_DIMS(arr),
								ARR_LBOUND(arr), FLOAT8OID, sizeof(float8),
								FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
	PG_RETURN_ARRAYTYPE_P(result);
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

Datum
psg_tdigest_min(PG_FUNCTION_ARGS)
{
	TdSummary	s;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	if (s.count == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(s.min);
}

Datum
psg_tdigest_max(PG_FUNCTION_ARGS)
{
	TdSummary	s;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	if (s.count == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(s.max);
}

Datum
psg_tdigest_sum(PG_FUNCTION_ARGS)
{
	TdSummary	s;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	if (s.count == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(s.sum);
}

/* Exact sum / count; from the centroids when the sum overflowed. */
Datum
psg_tdigest_mean(PG_FUNCTION_ARGS)
{
	TdDigest	d;
	double		mean;

	psg_decode_tdigest(PG_GETARG_TDIGEST_PP(0), &d);
	if (d.s.count == 0)
		PG_RETURN_NULL();
	if (isfinite(d.s.sum))
	{
		mean = d.s.sum / (double) d.s.count;
		/* Rounding may step just outside the data's range. */
		mean = Min(Max(mean, d.s.min), d.s.max);
	}
	else
		mean = td_centroid_mean(&d);
	PG_RETURN_FLOAT8(mean);
}

/*
 * Sample standard deviation from sum and sum_sq.  NULL with fewer than two
 * values or when an overflowed sum makes the variance unknown.
 */
Datum
psg_tdigest_stddev(PG_FUNCTION_ARGS)
{
	TdSummary	s;
	double		n,
				var;

	decode_summary(PG_GETARG_TDIGEST_PP(0), &s);
	if (s.count < 2 || !isfinite(s.sum) || !isfinite(s.sum_sq))
		PG_RETURN_NULL();
	n = (double) s.count;
	var = (s.sum_sq - s.sum * (s.sum / n)) / (n - 1.0);
	if (!(var > 0.0))
		var = 0.0;
	PG_RETURN_FLOAT8(sqrt(var));
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
