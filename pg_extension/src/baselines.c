/*
 * baselines.c — the baseline of each analysed column.
 *
 * A column's baseline is what capture_baseline() stored in the extension's
 * table pg_stat_guard_baselines when there is one (a digest for a numeric
 * column, a category table for a categorical one); otherwise the previous
 * window (pg_stat_guard.fallback_baseline_window long), which window.c
 * aggregates in the same scan as the current one (categories.c counts it
 * just before).  Either way the column records where its baseline came from,
 * for the envelope and the result.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "baselines.h"
#include "categories.h"
#include "json_object.h"

static Oid
relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/* {"kind":..., "window_start":..., "window_end":... [, "captured_at":...]} */
static char *
provenance_json(const char *kind, TimestampTz start, TimestampTz end,
				const TimestampTz *captured_at)
{
	PsgJsonField fields[4] = {
		{"kind", psg_json_string(kind)},
		{"window_start", psg_json_timestamp(start)},
		{"window_end", psg_json_timestamp(end)},
		{"captured_at", captured_at ? psg_json_timestamp(*captured_at) : NULL},
	};

	return psg_json_object(fields, captured_at ? 4 : 3, false);
}

static TimestampTz
timestamp_field(HeapTuple tup, TupleDesc desc, int field)
{
	bool		isnull;

	return DatumGetTimestampTz(SPI_getbinval(tup, desc, field, &isnull));
}

/* A stored row's digest or category table and provenance, copied into the column in keep. */
static void
keep_stored_baseline(PsgAnalysisColumn *col, HeapTuple tup, TupleDesc desc, Datum stored,
					 MemoryContext keep)
{
	bytea	   *bytes = DatumGetByteaPP(stored);
	size_t		len = VARSIZE_ANY_EXHDR(bytes);
	TimestampTz captured_at = timestamp_field(tup, desc, 5);
	MemoryContext old = MemoryContextSwitchTo(keep);

	col->baseline = palloc(len);
	memcpy(col->baseline, VARDATA_ANY(bytes), len);
	col->baseline_len = len;
	col->has_stored = true;
	col->baseline_json = provenance_json("stored", timestamp_field(tup, desc, 3),
										 timestamp_field(tup, desc, 4), &captured_at);
	MemoryContextSwitchTo(old);
}

/* A column analysed as one kind whose stored baseline is of the other. */
static void
stored_kind_differs(const PsgAnalysisColumn *col, const char *source)
{
	bool		categorical = col->kind == PSG_KIND_CATEGORICAL;

	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("column \"%s\" of relation %s is analysed as %s, but its stored baseline "
					"holds %s", col->name, source, categorical ? "categories" : "numbers",
					categorical ? "a digest" : "category counts"),
			 errhint("List the column in category_columns as when the baseline was captured, "
					 "or capture it again (or drop_baseline) for the way it is analysed now.")));
}

void
psg_load_stored_baselines(PsgAnalysis *an, MemoryContext keep)
{
	StringInfoData sql;
	Datum		values[1];
	Oid			types[1] = {TEXTOID};
	uint64		i;
	int			rc;
	Oid			save_userid;
	int			save_sec;
	Oid			table_oid;
	char	   *nsp = get_namespace_name(an->func_namespace);

	table_oid = get_relname_relid("pg_stat_guard_baselines", an->func_namespace);
	if (!OidIsValid(table_oid))
		return;

	/*
	 * A database whose extension objects predate categorical baselines has no
	 * categories column: its stored digests are read all the same.
	 */
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT column_name::pg_catalog.text, %s.tdigest_send(digest), "
					 "window_start, window_end, captured_at, %s "
					 "FROM %s.pg_stat_guard_baselines WHERE source OPERATOR(pg_catalog.=) $1",
					 quote_identifier(nsp),
					 get_attnum(table_oid, "categories") == InvalidAttrNumber ?
					 "NULL::pg_catalog.bytea" : "categories",
					 quote_identifier(nsp));
	values[0] = CStringGetTextDatum(an->source);

	/*
	 * Baselines are read as the table's owner: the caller has just been
	 * checked for SELECT on every column analysed, and needs no grant on the
	 * extension's own table.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(relation_owner(table_oid),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql.data, 1, types, values, NULL, true, 0);
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read stored baselines");

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = SPI_getvalue(tup, desc, 1);
		int			c;

		for (c = 0; c < an->ncolumns; c++)
		{
			PsgAnalysisColumn *col = &an->columns[c];
			bool		no_digest,
						no_table;
			Datum		digest,
						table;

			if (strcmp(col->name, name) != 0)
				continue;
			digest = SPI_getbinval(tup, desc, 2, &no_digest);
			table = SPI_getbinval(tup, desc, 6, &no_table);
			if (col->kind == PSG_KIND_NUMERIC && !no_digest)
				keep_stored_baseline(col, tup, desc, digest, keep);
			else if (col->kind == PSG_KIND_CATEGORICAL && !no_table)
			{
				bytea	   *bytes = DatumGetByteaPP(table);

				psg_check_stored_categories(VARDATA_ANY(bytes), VARSIZE_ANY_EXHDR(bytes),
											col->name);
				keep_stored_baseline(col, tup, desc, table, keep);
			}
			else if (!no_digest || !no_table)
				stored_kind_differs(col, an->source);
			break;
		}
	}
}

char *
psg_previous_window_provenance(const PsgAnalysis *an, MemoryContext keep)
{
	MemoryContext old = MemoryContextSwitchTo(keep);
	char	   *json = provenance_json("previous_window", an->fallback_start,
									   an->window_start, NULL);

	MemoryContextSwitchTo(old);
	return json;
}

char *
psg_baselines_json(const PsgAnalysis *an, const char **summary_kind)
{
	PsgJsonField *fields = palloc(sizeof(PsgJsonField) * Max(an->ncolumns, 1));
	bool		any_stored = false,
				any_previous = false;
	int			c;

	for (c = 0; c < an->ncolumns; c++)
	{
		fields[c].key = an->columns[c].name;
		fields[c].value = an->columns[c].baseline_json;
		if (an->columns[c].has_stored)
			any_stored = true;
		else
			any_previous = true;
	}
	*summary_kind = any_stored && any_previous ? "mixed" : any_stored ? "stored" : "previous_window";
	return psg_json_object(fields, an->ncolumns, false);
}
