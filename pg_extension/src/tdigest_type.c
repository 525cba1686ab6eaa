/*
 * tdigest_type.c — the tdigest type: text and binary I/O, bytea casts, and
 * the helpers the other files decode and encode digests with.  The SQL functions that read
 * a digest are in tdigest_functions.c.
 */
#include "pg_stat_guard.h"

#include <math.h>

#include "common/shortest_dec.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/float.h"

PG_FUNCTION_INFO_V1(psg_tdigest_in);
PG_FUNCTION_INFO_V1(psg_tdigest_out);
PG_FUNCTION_INFO_V1(psg_tdigest_recv);
PG_FUNCTION_INFO_V1(psg_tdigest_send);
PG_FUNCTION_INFO_V1(psg_tdigest_to_bytea);
PG_FUNCTION_INFO_V1(psg_bytea_to_tdigest);

/* ---------------------------------------------------------------------
 * Shared encode/decode helpers
 * ---------------------------------------------------------------------
 */

struct varlena *
psg_digest_to_varlena(const TdDigest *d)
{
	size_t		size = td_encoded_size(d);
	struct varlena *v;

	/* size <= 48 + 6 * 10 + 20 * 65536: far below MaxAllocSize. */
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

	/* td_decode_header proved header + 2n <= len, so n is backed by input bytes. */
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
 *  "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 3, "mean": 2,
 *  "mean_residual": 0, "m2": 2, "centroids": [[1, 1], [2, 1], [3, 1]]}
 *
 * It is valid JSON (an overflowed m2 is written as the string "Infinity"),
 * doubles use the shortest form that reads back exactly.  Input also takes
 * the version 1 form, with "sum" and "sum_sq" instead of "mean",
 * "mean_residual" and "m2", and converts it as the binary reader does.
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
	appendStringInfoString(&buf, ", \"mean\": ");
	append_double(&buf, d.s.mean);
	appendStringInfoString(&buf, ", \"mean_residual\": ");
	append_double(&buf, d.s.mean_residual);
	appendStringInfoString(&buf, ", \"m2\": ");
	append_double(&buf, d.s.m2);
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

/* A key: a quoted string of [a-z0-9_], at most 31 characters. */
static void
parse_key(TextParser *tp, char *key, size_t keylen)
{
	size_t		n = 0;

	expect_char(tp, '"');
	while ((*tp->p >= 'a' && *tp->p <= 'z') || (*tp->p >= '0' && *tp->p <= '9') ||
		   *tp->p == '_')
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
	KEY_MEAN,
	KEY_MEAN_RESIDUAL,
	KEY_M2,
	KEY_SUM,					/* version 1 */
	KEY_SUM_SQ,					/* version 1 */
	KEY_CENTROIDS,
	NUM_KEYS
};

/* Keys of one form: the version 2 moments, or version 1's sums. */
#define KEYS_PER_FORM 12

static const char *const key_names[NUM_KEYS] = {
	"compression", "count", "null_count", "nan_count", "pos_inf_count",
	"neg_inf_count", "min", "max", "mean", "mean_residual", "m2", "sum",
	"sum_sq", "centroids"
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
	d.s.version = TD_WIRE_VERSION;
	expect_char(&tp, '{');
	for (int k = 0; k < KEYS_PER_FORM - 1 || (k == KEYS_PER_FORM - 1 && d.s.version != 1); k++)
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
		/* The form is set by the first moment key: the other form's keys are unknown. */
		if (which == KEY_SUM || which == KEY_SUM_SQ)
		{
			if (seen[KEY_MEAN] || seen[KEY_MEAN_RESIDUAL] || seen[KEY_M2])
				text_error(&tp, "unknown key");
			d.s.version = 1;
		}
		else if ((which == KEY_MEAN || which == KEY_MEAN_RESIDUAL || which == KEY_M2) &&
				 (seen[KEY_SUM] || seen[KEY_SUM_SQ]))
			text_error(&tp, "unknown key");
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
			case KEY_MEAN:
				d.s.mean = parse_double(&tp, false);
				break;
			case KEY_MEAN_RESIDUAL:
				d.s.mean_residual = parse_double(&tp, false);
				break;
			case KEY_M2:
				d.s.m2 = parse_double(&tp, true);
				break;
			case KEY_SUM:
				d.s.v1_sum = parse_double(&tp, true);
				break;
			case KEY_SUM_SQ:
				d.s.v1_sum_sq = parse_double(&tp, true);
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
	if (d.s.version == 1 && !td_check_v1(&d, err, sizeof(err)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type tdigest: %s", err)));
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
