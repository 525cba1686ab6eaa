/*
 * window.c — the window aggregated into digests, in the database.
 *
 * One scan with the parallel tdigest_agg gives every numeric column's digest
 * of the current window and, for columns without a stored baseline, of the
 * previous window (FILTER clauses on the time column).  With the window cache
 * on, the scan reads only the raw ranges at the window's ends and the buckets
 * the cache lacks; the rest is merged from cached bucket digests
 * (window_cache.c plans which).  Categorical columns are counted apart, never
 * cached (categories.c).
 *
 * Everything runs in a subtransaction that is rolled back: the digests
 * survive in the caller's memory, the AccessShareLock on the source does not,
 * so a queued ALTER TABLE (and every INSERT queued behind it) never waits on
 * the drift function's answer.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "baselines.h"
#include "categories.h"
#include "guc.h"
#include "json_object.h"
#include "pg_stat_guard.h"
#include "subxact.h"
#include "window.h"
#include "window_cache.h"

/* The SQL names an aggregation needs: quoted time column and our schema. */
typedef struct WindowSql
{
	const char *time_column;
	const char *nsp;
} WindowSql;

const char *
psg_time_cast(const PsgAnalysis *an)
{
	return an->time_type == TIMESTAMPOID ? "::pg_catalog.timestamp" : "::pg_catalog.timestamptz";
}

/* "Plan Rows" of the top node of EXPLAIN (FORMAT JSON): [{"Plan": {"Plan Rows": n}}]. */
static double
plan_rows(const char *explain_json)
{
	Jsonb	   *plan = DatumGetJsonbP(psg_jsonb_from_text(explain_json));
	JsonbValue *top,
			   *node,
			   *rows;

	if (!JsonContainerIsArray(&plan->root))
		return 0;
	top = getIthJsonbValueFromContainer(&plan->root, 0);
	if (top == NULL || top->type != jbvBinary)
		return 0;
	node = psg_jsonb_field(top->val.binary.data, "Plan");
	if (node == NULL || node->type != jbvBinary)
		return 0;
	rows = psg_jsonb_field(node->val.binary.data, "Plan Rows");
	if (rows == NULL || rows->type != jbvNumeric)
		return 0;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(rows->val.numeric)));
}

/* The planner's row estimate of the window, without running it. */
static double
estimate_window_rows(const PsgAnalysis *an, const WindowSql *names, bool with_fallback)
{
	StringInfoData sql;
	int			rc;
	char	   *plan;
	TimestampTz start = with_fallback ? an->fallback_start : an->window_start;

	initStringInfo(&sql);
	appendStringInfo(&sql, "EXPLAIN (FORMAT JSON) SELECT 1 FROM %s WHERE %s >= %s%s AND %s < %s%s",
					 an->source,
					 names->time_column, quote_literal_cstr(psg_iso_timestamp(start)), psg_time_cast(an),
					 names->time_column, quote_literal_cstr(psg_iso_timestamp(an->window_end)),
					 psg_time_cast(an));
	rc = SPI_execute(sql.data, false, 0);
	if (rc != SPI_OK_UTILITY && rc != SPI_OK_SELECT)
		return 0;
	if (SPI_processed < 1)
		return 0;
	plan = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return plan ? plan_rows(plan) : 0;
}

/*
 * The wire-format digest in a tdigest_agg result column (tdigest's varlena
 * payload), as a view valid until SPI_finish.  NULL is checked before the
 * datum is touched.
 */
static void
digest_field(HeapTuple tup, TupleDesc desc, int field, const char **data, size_t *len)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, field, &isnull);
	bytea	   *bytes;

	if (isnull)
		elog(ERROR, "tdigest_agg returned NULL");
	bytes = DatumGetByteaPP(d);
	*data = VARDATA_ANY(bytes);
	*len = VARSIZE_ANY_EXHDR(bytes);
}

/* Bytes copied into keep. */
static void
keep_bytes(const char *data, size_t len, char **out, size_t *out_len, MemoryContext keep)
{
	*out = MemoryContextAlloc(keep, len);
	memcpy(*out, data, len);
	*out_len = len;
}

/* ---------------------------------------------------------- uncached */

/* One scan: the window, and the previous window for columns that need it. */
static void
aggregate_window_direct(PsgAnalysis *an, const WindowSql *names, bool fallback,
						MemoryContext keep)
{
	StringInfoData sql;
	const char *qt = names->time_column;
	const char *cast = psg_time_cast(an);
	int			c,
				rc,
				field;
	Datum		values[4];
	Oid			types[4] = {TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID};
	instr_time	start;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT pg_catalog.count(*)");
	if (fallback)
		appendStringInfo(&sql, " FILTER (WHERE %s >= $1%s)", qt, cast);
	for (c = 0; c < an->ncolumns; c++)
	{
		const char *qc = quote_identifier(an->columns[c].name);

		appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $3)", names->nsp, qc);
		if (fallback)
			appendStringInfo(&sql, " FILTER (WHERE %s >= $1%s)", qt, cast);
		if (!an->columns[c].has_stored)
			appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $3) FILTER (WHERE %s < $1%s)",
							 names->nsp, qc, qt, cast);
	}
	appendStringInfo(&sql, " FROM %s WHERE %s >= $%d%s AND %s < $2%s",
					 an->source, qt, fallback ? 4 : 1, cast, qt, cast);

	values[0] = TimestampTzGetDatum(an->window_start);
	values[1] = TimestampTzGetDatum(an->window_end);
	values[2] = Int32GetDatum(an->compression);
	values[3] = TimestampTzGetDatum(an->fallback_start);

	INSTR_TIME_SET_CURRENT(start);
	/* tcount 0: a row limit would make the executor refuse parallel workers */
	rc = SPI_execute_with_args(sql.data, fallback ? 4 : 3, types, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "window aggregation returned no row");
	an->aggregate_ms = psg_elapsed_ms(start);

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	an->rows = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	field = 2;
	for (c = 0; c < an->ncolumns; c++)
	{
		PsgAnalysisColumn *col = &an->columns[c];
		const char *data;
		size_t		len;

		digest_field(tup, desc, field++, &data, &len);
		keep_bytes(data, len, &col->current, &col->current_len, keep);
		if (!col->has_stored)
		{
			digest_field(tup, desc, field++, &data, &len);
			keep_bytes(data, len, &col->baseline, &col->baseline_len, keep);
			col->baseline_json = psg_previous_window_provenance(an, keep);
		}
	}
}

/* ------------------------------------------------------------ cached */

/* "(ts >= $a AND ts < $b) OR ..." over a plan's raw ranges, "false" when none. */
static void
append_raw_ranges(StringInfo sql, const char *qt, const PsgWindowPlan *plan, int *param,
				  Datum *values, Oid *types)
{
	int			i;

	if (plan->nraw == 0)
	{
		appendStringInfoString(sql, "false");
		return;
	}
	appendStringInfoChar(sql, '(');
	for (i = 0; i < plan->nraw; i++)
	{
		appendStringInfo(sql, "%s(%s >= $%d AND %s < $%d)", i ? " OR " : "", qt, *param + 1,
						 qt, *param + 2);
		values[*param] = TimestampTzGetDatum(plan->raw[i].lo);
		values[*param + 1] = TimestampTzGetDatum(plan->raw[i].hi);
		types[*param] = types[*param + 1] = TIMESTAMPTZOID;
		*param += 2;
	}
	appendStringInfoChar(sql, ')');
}

/* Aggregate the buckets the cache lacks in one grouped scan, then store them. */
static void
aggregate_missing_buckets(PsgAnalysis *an, const WindowSql *names, PsgBucketSet *set)
{
	StringInfoData sql;
	int64		width = set->run.width;
	Datum		values[4];
	Oid			types[4] = {INTERVALOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID};
	Interval   *stride = palloc0(sizeof(Interval));
	uint64		r;
	int			rc,
				b,
				c;

	stride->time = width;
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT pg_catalog.date_bin($1, %s, "
					 "'2000-01-01 00:00:00+00'::pg_catalog.timestamptz), pg_catalog.count(*)",
					 names->time_column);
	for (c = 0; c < an->ncolumns; c++)
		appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $4)", names->nsp,
						 quote_identifier(an->columns[c].name));
	appendStringInfo(&sql, " FROM %s WHERE %s >= $2 AND %s < $3 GROUP BY 1", an->source,
					 names->time_column, names->time_column);
	values[0] = IntervalPGetDatum(stride);
	values[1] = TimestampTzGetDatum(set->run.first + set->missing_lo * width);
	values[2] = TimestampTzGetDatum(set->run.first + (set->missing_hi + 1) * width);
	values[3] = Int32GetDatum(an->compression);
	rc = SPI_execute_with_args(sql.data, 4, types, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "window cache aggregation failed");

	/* Buckets the scan does not return had no rows (the lookup's default). */
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		TimestampTz start = DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull));

		b = (int) ((start - set->run.first) / width);
		if (isnull || b < set->missing_lo || b > set->missing_hi || set->have[b] ||
			set->run.first + b * width != start)
			continue;
		set->rows[b] = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		for (c = 0; c < an->ncolumns; c++)
			digest_field(tup, desc, 3 + c, &set->digest[b * an->ncolumns + c],
						 &set->len[b * an->ncolumns + c]);
	}
	an->cache_filled += psg_window_cache_store_missing(set);
}

/* Every run of a plan from the cache, the missing buckets aggregated. */
static PsgBucketSet *
load_plan_buckets(PsgAnalysis *an, const WindowSql *names, const PsgBucketSet *source,
				  const PsgWindowPlan *plan)
{
	PsgBucketSet *sets = palloc0(sizeof(PsgBucketSet) * lengthof(plan->runs));
	int			r;

	for (r = 0; r < plan->nruns; r++)
	{
		sets[r] = *source;
		sets[r].run = plan->runs[r];
		psg_window_cache_lookup(&sets[r]);
		if (sets[r].missing_lo >= 0)
			aggregate_missing_buckets(an, names, &sets[r]);
		an->cache_buckets += sets[r].run.n;
	}
	return sets;
}

/* Merge a raw digest with a plan's bucket runs for one column, into keep. */
static void
merge_plan(PsgAnalysis *an, const PsgBucketSet *sets, int nsets, int column, const char *raw,
		   size_t raw_len, char **out, size_t *out_len, MemoryContext keep)
{
	int			n = 0,
				total = 1,
				b,
				r;
	const char **bufs;
	size_t	   *lens;
	struct varlena *merged;

	for (r = 0; r < nsets; r++)
		total += sets[r].run.n;
	bufs = palloc(sizeof(char *) * total);
	lens = palloc(sizeof(size_t) * total);
	bufs[n] = raw;
	lens[n++] = raw_len;
	for (r = 0; r < nsets; r++)
		for (b = 0; b < sets[r].run.n; b++)
		{
			bufs[n] = sets[r].digest[b * an->ncolumns + column];
			lens[n++] = sets[r].len[b * an->ncolumns + column];
		}
	merged = psg_merge_digest_bytes(n, bufs, lens, an->compression);
	keep_bytes(VARDATA_ANY(merged), VARSIZE_ANY_EXHDR(merged), out, out_len, keep);
}

/* The source's part of every bucket key; zeroed, as keys are hashed as bytes. */
static PsgBucketSet
bucket_source(PsgAnalysis *an)
{
	PsgBucketSet set;
	AttrNumber *attnums = palloc(sizeof(AttrNumber) * an->ncolumns);
	int			c;

	for (c = 0; c < an->ncolumns; c++)
		attnums[c] = an->columns[c].attnum;
	memset(&set, 0, sizeof(set));
	set.key.relid = an->relid;
	set.key.relfilenode = an->relfilenode;
	set.key.userid = GetUserId();
	set.key.time_attnum = an->time_attnum;
	set.key.compression = an->compression;
	set.attnums = attnums;
	set.ncolumns = an->ncolumns;
	return set;
}

/*
 * The window as raw ranges (its newest, unsettled part and a partial bucket
 * at its start) plus settled buckets from the cache.
 */
static void
aggregate_window_cached(PsgAnalysis *an, const WindowSql *names, bool fallback,
						MemoryContext keep)
{
	const char *qt = names->time_column;
	int64		width = (int64) psg_window_cache_bucket_s * USECS_PER_SEC;
	TimestampTz horizon = an->window_end - (int64) psg_window_cache_settle_s * USECS_PER_SEC;
	PsgWindowPlan current,
				previous;
	PsgBucketSet source,
			   *cur_sets,
			   *prev_sets = NULL;
	StringInfoData sql,
				cur_pred,
				prev_pred;
	Datum		values[9];
	Oid			types[9];
	int			nparams = 1,
				c,
				b,
				r,
				field;
	const char **raw_cur = palloc0(sizeof(char *) * an->ncolumns);
	size_t	   *raw_cur_len = palloc0(sizeof(size_t) * an->ncolumns);
	const char **raw_prev = palloc0(sizeof(char *) * an->ncolumns);
	size_t	   *raw_prev_len = palloc0(sizeof(size_t) * an->ncolumns);
	int64		raw_rows = 0;
	instr_time	start;

	INSTR_TIME_SET_CURRENT(start);
	an->cache_bucket_s = psg_window_cache_bucket_s;
	an->relfilenode = psg_relfilenode(an->relid);
	psg_window_cache_evict_before(an->relid, an->relfilenode,
								  fallback ? an->fallback_start : an->window_start);
	psg_window_cache_plan(an->window_start, an->window_end, horizon, width, &current);
	if (fallback)
		psg_window_cache_plan(an->fallback_start, an->window_start, horizon, width, &previous);
	else
		previous = (PsgWindowPlan) {.nraw = 0, .nruns = 0};

	source = bucket_source(an);
	cur_sets = load_plan_buckets(an, names, &source, &current);
	if (fallback)
		prev_sets = load_plan_buckets(an, names, &source, &previous);

	/* The raw ranges of both roles in one scan. */
	values[0] = Int32GetDatum(an->compression);
	types[0] = INT4OID;
	initStringInfo(&cur_pred);
	initStringInfo(&prev_pred);
	append_raw_ranges(&cur_pred, qt, &current, &nparams, values, types);
	append_raw_ranges(&prev_pred, qt, &previous, &nparams, values, types);
	if (current.nraw + previous.nraw > 0)
	{
		int			rc;
		HeapTuple	tup;
		TupleDesc	desc;
		bool		isnull;

		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT pg_catalog.count(*) FILTER (WHERE %s)", cur_pred.data);
		for (c = 0; c < an->ncolumns; c++)
		{
			const char *qc = quote_identifier(an->columns[c].name);

			appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $1) FILTER (WHERE %s)",
							 names->nsp, qc, cur_pred.data);
			if (!an->columns[c].has_stored)
				appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $1) FILTER (WHERE %s)",
								 names->nsp, qc, prev_pred.data);
		}
		appendStringInfo(&sql, " FROM %s WHERE %s OR %s", an->source, cur_pred.data, prev_pred.data);
		rc = SPI_execute_with_args(sql.data, nparams, types, values, NULL, true, 0);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "window aggregation returned no row");
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		raw_rows = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		field = 2;
		for (c = 0; c < an->ncolumns; c++)
		{
			digest_field(tup, desc, field++, &raw_cur[c], &raw_cur_len[c]);
			if (!an->columns[c].has_stored)
				digest_field(tup, desc, field++, &raw_prev[c], &raw_prev_len[c]);
		}
	}

	an->rows = raw_rows;
	for (r = 0; r < current.nruns; r++)
		for (b = 0; b < cur_sets[r].run.n; b++)
			an->rows += cur_sets[r].rows[b];
	for (c = 0; c < an->ncolumns; c++)
	{
		PsgAnalysisColumn *col = &an->columns[c];

		merge_plan(an, cur_sets, current.nruns, c, raw_cur[c], raw_cur_len[c], &col->current,
				   &col->current_len, keep);
		if (!col->has_stored)
		{
			merge_plan(an, prev_sets, previous.nruns, c, raw_prev[c], raw_prev_len[c],
					   &col->baseline, &col->baseline_len, keep);
			col->baseline_json = psg_previous_window_provenance(an, keep);
		}
	}
	an->aggregate_ms = psg_elapsed_ms(start);
}

/* ------------------------------------------------------------- entry */

/*
 * The numeric columns' digests: the code above runs on an analysis holding
 * only them (all columns when none is categorical, so the queries are those
 * of a numeric analysis), and the results are copied back.
 */
static void
aggregate_numeric(PsgAnalysis *an, const WindowSql *names, MemoryContext keep)
{
	PsgAnalysis numeric = *an;
	bool		fallback = false;
	int			c,
				n = 0;

	numeric.columns = palloc(sizeof(PsgAnalysisColumn) * an->ncolumns);
	for (c = 0; c < an->ncolumns; c++)
		if (an->columns[c].kind == PSG_KIND_NUMERIC)
		{
			numeric.columns[n++] = an->columns[c];
			if (!an->columns[c].has_stored)
				fallback = true;
		}
	numeric.ncolumns = n;
	if (n == 0)
		return;
	if (psg_window_cache_usable(an->relid, an->time_type))
		aggregate_window_cached(&numeric, names, fallback, keep);
	else
		aggregate_window_direct(&numeric, names, fallback, keep);
	for (c = 0, n = 0; c < an->ncolumns; c++)
		if (an->columns[c].kind == PSG_KIND_NUMERIC)
			an->columns[c] = numeric.columns[n++];
	an->rows = numeric.rows;
	an->aggregate_ms = numeric.aggregate_ms;
	an->relfilenode = numeric.relfilenode;
	an->cache_bucket_s = numeric.cache_bucket_s;
	an->cache_buckets = numeric.cache_buckets;
	an->cache_filled = numeric.cache_filled;
}

static void
aggregate_window(PsgAnalysis *an, MemoryContext keep)
{
	WindowSql	names;
	bool		fallback = false;
	int			c;
	double		estimate;
	instr_time	start;

	names.time_column = quote_identifier(an->time_column);
	names.nsp = quote_identifier(get_namespace_name(an->func_namespace));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	psg_load_stored_baselines(an, keep);
	for (c = 0; c < an->ncolumns; c++)
		if (!an->columns[c].has_stored)
			fallback = true;

	estimate = estimate_window_rows(an, &names, fallback);
	if (estimate > (double) psg_max_window_rows)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("window of about %.0f rows exceeds pg_stat_guard.max_window_rows (%d)",
						estimate, psg_max_window_rows),
				 errhint("Analyse a shorter window, or capture baselines so the previous window is not scanned.")));

	aggregate_numeric(an, &names, keep);
	if (an->ncategorical > 0)
	{
		INSTR_TIME_SET_CURRENT(start);
		psg_aggregate_categories(an, names.time_column, psg_time_cast(an),
								 an->ncategorical < an->ncolumns, keep);
		an->aggregate_ms += psg_elapsed_ms(start);
	}
	SPI_finish();
}

void
psg_aggregate_window(PsgAnalysis *an)
{
	PsgSubxact	sx = psg_subxact_begin();

	PG_TRY();
	{
		aggregate_window(an, sx.caller_cxt);
		psg_subxact_end(&sx, true);
	}
	PG_CATCH();
	{
		ReThrowError(psg_subxact_abort(&sx));
	}
	PG_END_TRY();
}
