/*
 * categories.c — categorical columns counted in the database into bounded
 * category tables (the envelope's PSGC entries, docs/wire-format.md 3.2).
 *
 * One scan per window counts every categorical column: GROUP BY GROUPING
 * SETS, one set per column, each value as text in the "C" collation (so
 * equal means equal bytes), long text values shortened by a prefix and their
 * MD5 before grouping.  PostgreSQL's hash aggregation keeps its memory within
 * work_mem (spilling to disk beyond), and the groups are read through a
 * cursor a thousand at a time, so however many distinct values a window has,
 * this file holds per column only the max_categories most frequent ones (a
 * heap, category_table.c), the listed ones and three counters:
 *
 *   - the previous window (a baseline) names its max_categories most
 *     frequent categories and pools the rest;
 *   - the current window counts every category its baseline names, however
 *     rare now, plus its own max_categories most frequent others, so the
 *     verdict service compares the baseline's categories exactly and sees
 *     what is new.
 *
 * Ties go by the names' bytes, so a table is a function of the rows alone and
 * Python's stat_guard.categories.CategoryCounts.bounded gives the same bytes.
 * Names are sent as UTF-8, converted from the database encoding.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "baselines.h"
#include "categories.h"
#include "category_table.h"
#include "guc.h"
#include "json_object.h"
#include "window.h"

PG_FUNCTION_INFO_V1(psg_category_counts);
PG_FUNCTION_INFO_V1(psg_category_counts_json);

#define FETCH_ROWS 1000

/* One column's counts while its groups stream in. */
typedef struct Counter
{
	CtCategory *listed;			/* sorted by bytes; count accumulates */
	uint32		nlisted;
	CtTopK		top;
	uint64		other_count;
	uint64		other_distinct;
	uint64		missing;
} Counter;

/* A table's bytes decoded into categories pointing into them; ERROR when invalid. */
static CtTable
decode_table(const char *bytes, size_t len, int sqlstate, const char *what)
{
	CtTable		t;
	char		err[CT_ERRMSG_SIZE];
	CtCategory *categories;

	if (!ct_decode_header((const uint8 *) bytes, len, &t, err, sizeof(err)))
		ereport(ERROR, (errcode(sqlstate), errmsg("%s: %s", what, err)));
	categories = palloc(sizeof(CtCategory) * Max(t.n, 1));
	if (!ct_decode_categories((const uint8 *) bytes, len, &t, categories, err, sizeof(err)))
		ereport(ERROR, (errcode(sqlstate), errmsg("%s: %s", what, err)));
	return t;
}

void
psg_check_stored_categories(const char *bytes, size_t len, const char *column)
{
	(void) decode_table(bytes, len, ERRCODE_DATA_CORRUPTED,
						psprintf("stored baseline of column \"%s\" is not a valid category table",
								 column));
}

/* The grouping key of a column: its value as text, "C" collation, long text shortened. */
static void
append_key(StringInfo sql, const PsgAnalysisColumn *col)
{
	const char *qc = quote_identifier(col->name);

	if (!col->text_like)
	{
		appendStringInfo(sql, "(%s::pg_catalog.text) COLLATE pg_catalog.\"C\"", qc);
		return;
	}
	appendStringInfo(sql,
					 "(CASE WHEN pg_catalog.octet_length(%s::pg_catalog.text) "
					 "OPERATOR(pg_catalog.<=) %d THEN %s::pg_catalog.text "
					 "ELSE pg_catalog.textcat(pg_catalog.textcat("
					 "pg_catalog.\"left\"(%s::pg_catalog.text, %d), '...'), "
					 "pg_catalog.md5(%s::pg_catalog.text)) END) COLLATE pg_catalog.\"C\"",
					 qc, PSG_CATEGORY_SHORTEN_BYTES, qc, qc, PSG_CATEGORY_PREFIX_CHARS, qc);
}

/*
 * SELECT GROUPING(k0), ..., k0, ..., count(*) FROM (SELECT <key> AS k0, ...
 * FROM source WHERE ts >= $1 AND ts < $2) w GROUP BY GROUPING SETS ((k0), ...
 * [, ()]), the empty set giving the window's rows.
 */
static char *
counting_sql(const PsgAnalysis *an, const char *time_column_sql, const char *time_cast,
			 const int *cols, int ncols, bool with_rows)
{
	StringInfoData sql;
	int			i;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (i = 0; i < ncols; i++)
		appendStringInfo(&sql, "GROUPING(k%d), ", i);
	for (i = 0; i < ncols; i++)
		appendStringInfo(&sql, "k%d, ", i);
	appendStringInfoString(&sql, "pg_catalog.count(*) FROM (SELECT ");
	for (i = 0; i < ncols; i++)
	{
		appendStringInfoString(&sql, i ? ", " : "");
		append_key(&sql, &an->columns[cols[i]]);
		appendStringInfo(&sql, " AS k%d", i);
	}
	appendStringInfo(&sql, " FROM %s WHERE %s >= $1%s AND %s < $2%s) AS w GROUP BY GROUPING SETS (",
					 an->source, time_column_sql, time_cast, time_column_sql, time_cast);
	for (i = 0; i < ncols; i++)
		appendStringInfo(&sql, "%s(k%d)", i ? ", " : "", i);
	appendStringInfoString(&sql, with_rows ? ", ())" : ")");
	return sql.data;
}

/* A counter whose listed categories are the names of a (valid) table, or none. */
static void
init_counter(Counter *counter, const char *listed_table, size_t listed_len, int max_categories)
{
	memset(counter, 0, sizeof(*counter));
	if (listed_table != NULL)
	{
		CtTable		t = decode_table(listed_table, listed_len, ERRCODE_DATA_CORRUPTED,
									 "baseline category table");

		counter->listed = (CtCategory *) t.categories;
		counter->nlisted = t.n;
		for (uint32 i = 0; i < t.n; i++)
			counter->listed[i].count = 0;
		ct_sort_by_bytes(counter->listed, counter->nlisted);
	}
	/* A current table names its baseline's categories and its own: within the format's limit. */
	counter->top.cap = Min((uint32) max_categories, CT_MAX_CATEGORIES - counter->nlisted);
	counter->top.heap = palloc(sizeof(CtCategory) * Max(counter->top.cap, 1));
}

/* One group: n values of the category name (UTF-8), or n NULLs. */
static void
count_group(Counter *counter, const uint8 *name, uint32 len, bool isnull, uint64 n,
			MemoryContext names_cxt)
{
	int64		at;
	CtCategory	candidate,
				dropped;

	if (isnull)
	{
		counter->missing += n;
		return;
	}
	at = ct_find(counter->listed, counter->nlisted, name, len);
	if (at >= 0)
	{
		counter->listed[at].count += n;
		return;
	}
	candidate.bytes = name;
	candidate.len = len;
	candidate.count = n;
	if (!ct_topk_admits(&counter->top, &candidate))
	{
		counter->other_count += n;
		counter->other_distinct++;
		return;
	}
	candidate.bytes = MemoryContextAlloc(names_cxt, Max(len, 1));
	memcpy((uint8 *) candidate.bytes, name, len);
	if (ct_topk_insert(&counter->top, &candidate, &dropped))
	{
		counter->other_count += dropped.count;
		counter->other_distinct++;
		pfree((uint8 *) dropped.bytes);
	}
}

/* A group's key as UTF-8 of at most CT_MAX_CATEGORY_BYTES; ERROR otherwise. */
static const uint8 *
utf8_name(Datum key, const char *column, uint32 *len)
{
	text	   *value = DatumGetTextPP(key);
	int			server_len = VARSIZE_ANY_EXHDR(value);
	char	   *utf8 = pg_server_to_any(VARDATA_ANY(value), server_len, PG_UTF8);
	size_t		utf8_len = utf8 == VARDATA_ANY(value) ? (size_t) server_len : strlen(utf8);

	if (utf8_len > CT_MAX_CATEGORY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a value of column \"%s\" is %zu bytes long in UTF-8, more than %d",
						column, utf8_len, CT_MAX_CATEGORY_BYTES)));
	if (!ct_valid_utf8((const uint8 *) utf8, utf8_len))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("a value of column \"%s\" is not valid UTF-8", column)));
	*len = (uint32) utf8_len;
	return (const uint8 *) utf8;
}

/* The counter's table, encoded into keep. */
static void
finish_counter(Counter *counter, char **out, size_t *out_len, MemoryContext keep)
{
	CtCategory *named = palloc(sizeof(CtCategory) * Max(counter->nlisted + counter->top.n, 1));
	CtTable		t;
	char		err[CT_ERRMSG_SIZE];
	uint32		n = 0,
				i;

	for (i = 0; i < counter->nlisted; i++)
		if (counter->listed[i].count > 0)
			named[n++] = counter->listed[i];
	for (i = 0; i < counter->top.n; i++)
		named[n++] = counter->top.heap[i];
	ct_sort(named, n);
	t.missing = counter->missing;
	t.other_count = counter->other_count;
	t.other_distinct = counter->other_distinct;
	t.n = n;
	t.categories = named;
	if (!ct_validate(&t, err, sizeof(err)))
		elog(ERROR, "category table of the window is not valid: %s", err);
	*out_len = ct_encoded_size(&t);
	*out = MemoryContextAlloc(keep, *out_len);
	ct_encode(&t, (uint8 *) *out);
}

/*
 * Count columns cols[0..ncols) over [lo, hi) in one scan into tables in keep.
 * listed[i] (bytes of a table, or NULL) names the categories column i counts
 * exactly.  *rows gets the window's rows when rows is not NULL.
 */
static void
count_window(const PsgAnalysis *an, const char *time_column_sql, const char *time_cast,
			 const int *cols, int ncols, TimestampTz lo, TimestampTz hi,
			 char *const *listed, const size_t *listed_lens, char **out, size_t *out_lens,
			 int64 *rows, MemoryContext keep)
{
	MemoryContext work = AllocSetContextCreate(CurrentMemoryContext,
											   "pg_stat_guard category counts",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext batch = AllocSetContextCreate(work, "pg_stat_guard category batch",
												ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(work);
	Counter    *counters = palloc(sizeof(Counter) * ncols);
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[2] = {TimestampTzGetDatum(lo), TimestampTzGetDatum(hi)};
	SPIPlanPtr	plan;
	Portal		portal;
	int			i;

	for (i = 0; i < ncols; i++)
		init_counter(&counters[i], listed ? listed[i] : NULL, listed ? listed_lens[i] : 0,
					 an->max_categories);
	plan = SPI_prepare_cursor(counting_sql(an, time_column_sql, time_cast, cols, ncols,
										   rows != NULL), 2, types, 0);
	if (plan == NULL)
		elog(ERROR, "could not plan the category counts: %s",
			 SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, values, NULL, true);
	if (rows != NULL)
		*rows = 0;
	for (;;)
	{
		uint64		r;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		MemoryContextSwitchTo(batch);
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			int64		n = DatumGetInt64(SPI_getbinval(tup, desc, 2 * ncols + 1, &isnull));
			int			set = -1;

			for (i = 0; i < ncols && set < 0; i++)
				if (DatumGetInt32(SPI_getbinval(tup, desc, i + 1, &isnull)) == 0)
					set = i;
			if (set < 0)
			{
				if (rows != NULL)
					*rows = n;	/* the empty grouping set: every row */
				continue;
			}
			{
				Datum		key = SPI_getbinval(tup, desc, ncols + set + 1, &isnull);
				uint32		len = 0;
				const uint8 *name = isnull ? NULL :
					utf8_name(key, an->columns[cols[set]].name, &len);

				count_group(&counters[set], name, len, isnull, (uint64) n, work);
			}
		}
		MemoryContextSwitchTo(work);
		MemoryContextReset(batch);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_freeplan(plan);
	for (i = 0; i < ncols; i++)
		finish_counter(&counters[i], &out[i], &out_lens[i], keep);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(work);
}

void
psg_aggregate_categories(PsgAnalysis *an, const char *time_column_sql, const char *time_cast,
						 bool rows_known, MemoryContext keep)
{
	int		   *cols = palloc(sizeof(int) * an->ncolumns);
	int		   *previous = palloc(sizeof(int) * an->ncolumns);
	char	  **listed = palloc(sizeof(char *) * an->ncolumns);
	size_t	   *listed_lens = palloc(sizeof(size_t) * an->ncolumns);
	char	  **tables = palloc(sizeof(char *) * an->ncolumns);
	size_t	   *table_lens = palloc(sizeof(size_t) * an->ncolumns);
	int			ncols = 0,
				nprevious = 0,
				i;

	for (i = 0; i < an->ncolumns; i++)
		if (an->columns[i].kind == PSG_KIND_CATEGORICAL)
		{
			cols[ncols++] = i;
			if (!an->columns[i].has_stored)
				previous[nprevious++] = i;
		}
	if (ncols == 0)
		return;

	/* The previous window first: its names are what the current window lists. */
	if (nprevious > 0)
	{
		count_window(an, time_column_sql, time_cast, previous, nprevious, an->fallback_start,
					 an->window_start, NULL, NULL, tables, table_lens, NULL, keep);
		for (i = 0; i < nprevious; i++)
		{
			PsgAnalysisColumn *col = &an->columns[previous[i]];

			col->baseline = tables[i];
			col->baseline_len = table_lens[i];
			col->baseline_json = psg_previous_window_provenance(an, keep);
		}
	}
	for (i = 0; i < ncols; i++)
	{
		listed[i] = an->columns[cols[i]].baseline;
		listed_lens[i] = an->columns[cols[i]].baseline_len;
	}
	count_window(an, time_column_sql, time_cast, cols, ncols, an->window_start,
				 an->window_end, listed, listed_lens, tables, table_lens,
				 rows_known ? NULL : &an->rows, keep);
	for (i = 0; i < ncols; i++)
	{
		an->columns[cols[i]].current = tables[i];
		an->columns[cols[i]].current_len = table_lens[i];
	}
}

/* ------------------------------------------------------------ SQL */

/*
 * category_counts(source, time_column, value_columns, window_start,
 * window_end, category_columns): the table of each categorical column among
 * value_columns over [window_start, window_end), as capture_baseline stores
 * it.  Runs with the caller's privileges, checked as the analysis checks them.
 */
Datum
psg_category_counts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PsgAnalysis an = {0};
	char	  **names,
			  **categories = NULL;
	int			n,
				ncategory = 0,
				ncols = 0,
				i;
	int		   *cols;
	char	  **tables;
	size_t	   *lens;
	MemoryContext keep = CurrentMemoryContext;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) ||
		PG_ARGISNULL(4))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("category_counts arguments must not be NULL")));
	an.window_start = PG_GETARG_TIMESTAMPTZ(3);
	an.window_end = PG_GETARG_TIMESTAMPTZ(4);
	if (an.window_start >= an.window_end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window_start must be before window_end")));
	names = psg_name_array(PG_GETARG_ARRAYTYPE_P(2), "value_columns", &n);
	if (!PG_ARGISNULL(5))
		categories = psg_name_array(PG_GETARG_ARRAYTYPE_P(5), "category_columns", &ncategory);
	an.max_categories = psg_max_categories;
	psg_resolve_source(&an, PG_GETARG_OID(0), NameStr(*PG_GETARG_NAME(1)));
	psg_resolve_columns(&an, names, n, categories, ncategory);

	cols = palloc(sizeof(int) * n);
	tables = palloc(sizeof(char *) * n);
	lens = palloc(sizeof(size_t) * n);
	for (i = 0; i < n; i++)
		if (an.columns[i].kind == PSG_KIND_CATEGORICAL)
			cols[ncols++] = i;
	if (ncols > 0)
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		count_window(&an, quote_identifier(an.time_column), psg_time_cast(&an), cols, ncols,
					 an.window_start, an.window_end, NULL, NULL, tables, lens, NULL, keep);
		SPI_finish();
	}

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < ncols; i++)
	{
		Datum		row[2];
		bool		nulls[2] = {false, false};
		bytea	   *bytes = palloc(VARHDRSZ + lens[i]);

		SET_VARSIZE(bytes, VARHDRSZ + lens[i]);
		memcpy(VARDATA(bytes), tables[i], lens[i]);
		row[0] = DirectFunctionCall1(namein, CStringGetDatum(an.columns[cols[i]].name));
		row[1] = PointerGetDatum(bytes);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, nulls);
	}
	return (Datum) 0;
}

/* category_counts_json(bytea): a category table as {"categories": [[name, count], ...], ...}. */
Datum
psg_category_counts_json(PG_FUNCTION_ARGS)
{
	bytea	   *bytes = PG_GETARG_BYTEA_PP(0);
	CtTable		t = decode_table(VARDATA_ANY(bytes), VARSIZE_ANY_EXHDR(bytes),
								 ERRCODE_INVALID_BINARY_REPRESENTATION,
								 "invalid category table");
	StringInfoData list;
	PsgJsonField fields[4];
	uint32		i;

	initStringInfo(&list);
	appendStringInfoChar(&list, '[');
	for (i = 0; i < t.n; i++)
	{
		char	   *utf8 = pnstrdup((const char *) t.categories[i].bytes, t.categories[i].len);
		char	   *name = pg_any_to_server(utf8, (int) t.categories[i].len, PG_UTF8);

		appendStringInfo(&list, "%s[%s," UINT64_FORMAT "]", i ? "," : "",
						 psg_json_string(name), t.categories[i].count);
	}
	appendStringInfoChar(&list, ']');
	fields[0] = (PsgJsonField) {"categories", list.data};
	fields[1] = (PsgJsonField) {"other_count", psprintf(UINT64_FORMAT, t.other_count)};
	fields[2] = (PsgJsonField) {"other_distinct", psprintf(UINT64_FORMAT, t.other_distinct)};
	fields[3] = (PsgJsonField) {"missing", psprintf(UINT64_FORMAT, t.missing)};
	PG_RETURN_DATUM(psg_jsonb_from_text(psg_json_object(fields, 4, false)));
}
