/*
 * analysis.c — perform_drift_analysis: digests in the database, verdict over HTTP.
 *
 * The steps, and why they are ordered so:
 *   1. Validate the arguments and check SELECT on every column up front, so a
 *      caller without access learns nothing, not even whether baselines exist.
 *   2. Take a concurrency slot (a session advisory lock tried without waiting):
 *      over pg_stat_guard.max_concurrent the caller gets "busy" at once.
 *   3. In a subtransaction: read the stored baselines, aggregate the window
 *      (and, for columns without a baseline, the previous window in the same
 *      scan) with the parallel tdigest_agg, copy the digests out, and roll the
 *      subtransaction back.  The rollback releases the AccessShareLock on the
 *      source before any network wait, so a queued ALTER TABLE (and every INSERT
 *      queued behind it) never waits on the drift function.
 *   4. POST one envelope (docs/wire-format.md) through the chosen transport.
 *   5. Check the answer is the documented JSON object and return it with an
 *      "analysis" object (windows, baselines, rows, timings) added.
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/lock.h"
#include "mb/pg_wchar.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "analysis.h"
#include "guc.h"
#include "pg_stat_guard.h"
#include "subxact.h"
#include "transport.h"
#include "window_cache.h"

/* A range longer than this many buckets is aggregated directly, not cached. */
#define PSG_CACHE_MAX_BUCKETS 10000
/* Buckets per cached block (see Part). */
#define PSG_CACHE_BLOCK 60

/* Advisory lock tag field 4: user advisory locks use 1 and 2. */
#define PSG_LOCK_FIELD4 7
#define PSG_LOCK_KEY1 0x70736767	/* "psgg" */

typedef struct ColumnPlan
{
	char	   *name;
	AttrNumber	attnum;
	bool		has_stored;		/* a stored baseline exists */
	/* baseline provenance, as JSON fragments (already escaped) */
	char	   *baseline_json;
	/* digest bytes (wire format), allocated in the call's context */
	char	   *current;
	size_t		current_len;
	char	   *baseline;
	size_t		baseline_len;
} ColumnPlan;

typedef struct Analysis
{
	Oid			relid;
	Oid			func_namespace; /* where our aggregate lives */
	char	   *source;			/* schema-qualified, quoted */
	char	   *time_column;
	AttrNumber	time_attnum;
	Oid			time_type;
	Oid			relfilenode;	/* for the window cache's keys */
	int			ncolumns;
	ColumnPlan *columns;
	TimestampTz window_start;
	TimestampTz window_end;
	TimestampTz fallback_start;
	int			compression;
	int64		rows;
	double		aggregate_ms;
	double		http_ms;
	/* window cache: bucket width (0: not used), buckets merged, buckets aggregated */
	int			cache_bucket_s;
	int			cache_buckets;
	int			cache_filled;
	char		request_id[33];
	const char *transport_name;
} Analysis;

PG_FUNCTION_INFO_V1(psg_perform_drift_analysis);
PG_FUNCTION_INFO_V1(psg_perform_drift_analysis_default);

/* ---------------------------------------------------------------- helpers */

static double
elapsed_ms(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MILLISEC(now);
}

static char *
iso_timestamp(TimestampTz ts)
{
	char		buf[MAXDATELEN + 1];

	JsonEncodeDateTime(buf, TimestampTzGetDatum(ts), TIMESTAMPTZOID, NULL);
	return pstrdup(buf);
}

static void
append_json_string(StringInfo buf, const char *s)
{
	escape_json(buf, s);
}

static int64
interval_to_usecs(Interval *span)
{
	/* A month counts as 30 days, as interval comparisons do. */
	return span->time + (int64) span->day * USECS_PER_DAY +
		(int64) span->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

/* SELECT on the table, or on the column itself. */
static bool
can_select_column(Oid relid, AttrNumber attnum)
{
	Oid			user = GetUserId();

	return pg_class_aclcheck(relid, user, ACL_SELECT) == ACLCHECK_OK ||
		pg_attribute_aclcheck(relid, attnum, user, ACL_SELECT) == ACLCHECK_OK;
}

static bool
is_numeric_type(Oid typid)
{
	switch (typid)
	{
		case FLOAT8OID:
		case FLOAT4OID:
		case NUMERICOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return true;
		default:
			return false;
	}
}

/* ------------------------------------------------------ argument checking */

static void
resolve_columns(Analysis *an, char **names, int n)
{
	int			i,
				j;

	if (n < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value_columns must name at least one column")));
	if (n > PSG_MAX_ANALYSIS_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value_columns names %d columns, at most %d are allowed",
						n, PSG_MAX_ANALYSIS_COLUMNS)));
	an->ncolumns = n;
	an->columns = palloc0(sizeof(ColumnPlan) * n);
	for (i = 0; i < n; i++)
	{
		ColumnPlan *col = &an->columns[i];
		Oid			typid;

		col->name = names[i];
		if (strlen(col->name) > PSG_ENVELOPE_MAX_NAME)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("column name too long")));
		for (j = 0; j < i; j++)
			if (strcmp(an->columns[j].name, col->name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column \"%s\" is listed twice in value_columns", col->name)));
		col->attnum = get_attnum(an->relid, col->name);
		if (col->attnum == InvalidAttrNumber || col->attnum < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("column \"%s\" of relation %s does not exist",
							col->name, an->source)));
		typid = get_atttype(an->relid, col->attnum);
		if (!is_numeric_type(typid))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" is of type %s, not a number",
							col->name, format_type_be(typid)),
					 errhint("Value columns may be double precision, real, numeric or integers.")));
		if (!can_select_column(an->relid, col->attnum))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for column \"%s\" of relation %s",
							col->name, an->source)));
	}
}

static void
resolve_source(Analysis *an, Oid relid, const char *time_column)
{
	char		relkind;
	char	   *relname;
	AttrNumber	attnum;

	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE &&
		relkind != RELKIND_MATVIEW && relkind != RELKIND_VIEW &&
		relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table, view or materialized view", relname)));
	an->relid = relid;
	an->source = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
											relname);
	an->time_column = pstrdup(time_column);
	attnum = get_attnum(relid, time_column);
	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation %s does not exist",
						time_column, an->source)));
	an->time_attnum = attnum;
	an->time_type = get_atttype(relid, attnum);
	if (an->time_type != TIMESTAMPTZOID && an->time_type != TIMESTAMPOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("time column \"%s\" is of type %s, not a timestamp",
						time_column, format_type_be(an->time_type))));
	if (!can_select_column(relid, attnum))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for column \"%s\" of relation %s",
						time_column, an->source)));
}

static void
set_window(Analysis *an, Interval *span)
{
	int64		usecs;

	if (span == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("window must not be NULL")));
	usecs = interval_to_usecs(span);
	if (usecs <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window must be a positive interval")));
	if (usecs / USECS_PER_SEC > psg_max_window_s)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("window of %lld seconds exceeds pg_stat_guard.max_window (%d s)",
						(long long) (usecs / USECS_PER_SEC), psg_max_window_s)));
	an->window_end = GetCurrentTransactionStartTimestamp();
	an->window_start = an->window_end - usecs;
	an->fallback_start = an->window_start - (int64) psg_fallback_window_s * USECS_PER_SEC;
}

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

/* Is the library named in shared_ or session_preload_libraries? */
static bool
listed_in(const char *setting)
{
	const char *value = GetConfigOption(setting, true, false);
	char	   *copy;
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (value == NULL || value[0] == '\0')
		return false;
	copy = pstrdup(value);
	if (!SplitDirectoriesString(copy, ',', &names))
		return false;
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);
		const char *base = strrchr(name, '/');

		base = base ? base + 1 : name;
		if (strncmp(base, "pg_stat_guard", strlen("pg_stat_guard")) == 0)
			found = true;
	}
	return found;
}

bool
psg_library_preloaded(void)
{
	return listed_in("shared_preload_libraries") || listed_in("session_preload_libraries");
}

/* ------------------------------------------------------ concurrency slots */

static int
acquire_slot(void)
{
	int			slot;

	for (slot = 0; slot < psg_max_concurrent; slot++)
	{
		LOCKTAG		tag;

		SET_LOCKTAG_ADVISORY(tag, InvalidOid, PSG_LOCK_KEY1, (uint32) slot, PSG_LOCK_FIELD4);
		if (LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
			return slot;
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("pg_stat_guard is busy: %d analyses are already running",
					psg_max_concurrent),
			 errhint("Retry later, or raise pg_stat_guard.max_concurrent.")));
	return -1;					/* not reached */
}

static void
release_slot(int slot)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, InvalidOid, PSG_LOCK_KEY1, (uint32) slot, PSG_LOCK_FIELD4);
	LockRelease(&tag, ExclusiveLock, true);
}

/* ------------------------------------------------------------ aggregation */

static const char *
time_cast(Analysis *an)
{
	return an->time_type == TIMESTAMPOID ? "::pg_catalog.timestamp" : "::pg_catalog.timestamptz";
}

static void
load_stored_baselines(Analysis *an, MemoryContext keep)
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

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT column_name::pg_catalog.text, %s.tdigest_send(digest), "
					 "window_start, window_end, captured_at FROM %s.pg_stat_guard_baselines "
					 "WHERE source = $1",
					 quote_identifier(nsp), quote_identifier(nsp));
	values[0] = CStringGetTextDatum(an->source);

	/*
	 * Baselines are read as the table's owner: the caller has just been
	 * checked for SELECT on every column analysed, and needs no grant on the
	 * extension's own table.
	 */
	table_oid = get_relname_relid("pg_stat_guard_baselines", an->func_namespace);
	if (!OidIsValid(table_oid))
		return;
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
			ColumnPlan *col = &an->columns[c];
			bool		isnull;
			Datum		d;

			if (strcmp(col->name, name) != 0)
				continue;
			d = SPI_getbinval(tup, desc, 2, &isnull);
			if (isnull)
				break;
			{
				bytea	   *bytes = DatumGetByteaPP(d);
				StringInfoData js;
				size_t		len = VARSIZE_ANY_EXHDR(bytes);
				MemoryContext old = MemoryContextSwitchTo(keep);

				col->baseline = palloc(len);
				memcpy(col->baseline, VARDATA_ANY(bytes), len);
				col->baseline_len = len;
				col->has_stored = true;
				initStringInfo(&js);
				appendStringInfoString(&js, "{\"kind\":\"stored\",\"window_start\":");
				append_json_string(&js, iso_timestamp(DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull))));
				appendStringInfoString(&js, ",\"window_end\":");
				append_json_string(&js, iso_timestamp(DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull))));
				appendStringInfoString(&js, ",\"captured_at\":");
				append_json_string(&js, iso_timestamp(DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull))));
				appendStringInfoChar(&js, '}');
				col->baseline_json = js.data;
				MemoryContextSwitchTo(old);
			}
			break;
		}
	}
}

/* The planner's row estimate of the window, without running it. */
static double
estimate_window_rows(Analysis *an, bool with_fallback)
{
	StringInfoData sql;
	int			rc;
	char	   *plan;
	char	   *rows;
	const char *qt = quote_identifier(an->time_column);

	initStringInfo(&sql);
	appendStringInfo(&sql, "EXPLAIN (FORMAT JSON) SELECT 1 FROM %s WHERE %s >= ", an->source, qt);
	appendStringInfoString(&sql, quote_literal_cstr(iso_timestamp(with_fallback ? an->fallback_start : an->window_start)));
	appendStringInfo(&sql, "%s AND %s < ", time_cast(an), qt);
	appendStringInfoString(&sql, quote_literal_cstr(iso_timestamp(an->window_end)));
	appendStringInfoString(&sql, time_cast(an));
	rc = SPI_execute(sql.data, false, 0);
	if (rc != SPI_OK_UTILITY && rc != SPI_OK_SELECT)
		return 0;
	if (SPI_processed < 1)
		return 0;
	plan = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	rows = plan ? strstr(plan, "\"Plan Rows\": ") : NULL;
	return rows ? strtod(rows + strlen("\"Plan Rows\": "), NULL) : 0;
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

/* The same digest copied into keep. */
static void
copy_digest(HeapTuple tup, TupleDesc desc, int field, char **out, size_t *len,
			MemoryContext keep)
{
	const char *data;

	digest_field(tup, desc, field, &data, len);
	*out = MemoryContextAlloc(keep, *len);
	memcpy(*out, data, *len);
}


/* Provenance of a previous-window baseline, as a JSON fragment in keep. */
static char *
previous_window_json(Analysis *an, MemoryContext keep)
{
	StringInfoData js;
	MemoryContext old = MemoryContextSwitchTo(keep);

	initStringInfo(&js);
	appendStringInfoString(&js, "{\"kind\":\"previous_window\",\"window_start\":");
	append_json_string(&js, iso_timestamp(an->fallback_start));
	appendStringInfoString(&js, ",\"window_end\":");
	append_json_string(&js, iso_timestamp(an->window_start));
	appendStringInfoChar(&js, '}');
	MemoryContextSwitchTo(old);
	return js.data;
}

/* ----------------------------------------------------------- window cache */

typedef struct Piece
{
	TimestampTz lo;
	TimestampTz hi;
} Piece;

/* A run of consecutive cached buckets of one width. */
typedef struct Run
{
	TimestampTz first;			/* first bucket start */
	int			n;
	int64		width;
} Run;

/*
 * A role's part of the window: raw pieces at the ends, settled buckets
 * between.  The buckets come in up to three runs: fine buckets up to the first
 * block boundary, whole blocks (PSG_CACHE_BLOCK fine buckets merged into one
 * entry), fine buckets after the last block; so a call merges at most about
 * 2 * PSG_CACHE_BLOCK + window / block digests per column, not one per bucket.
 */
typedef struct Part
{
	Piece		raw[2];
	int			nraw;
	Run			runs[3];
	int			nruns;
} Part;

static TimestampTz
floor_to(TimestampTz t, int64 width)
{
	TimestampTz q = t / width;

	if (t % width != 0 && t < 0)
		q--;
	return q * width;
}

static TimestampTz
ceil_to(TimestampTz t, int64 width)
{
	TimestampTz f = floor_to(t, width);

	return f < t ? f + width : f;
}

static void
add_run(Part *part, TimestampTz lo, TimestampTz hi, int64 width)
{
	if (hi > lo)
		part->runs[part->nruns++] = (Run) {lo, (int) ((hi - lo) / width), width};
}

static void
split_range(TimestampTz lo, TimestampTz hi, TimestampTz horizon, int64 width, Part *part)
{
	TimestampTz first = ceil_to(lo, width);
	TimestampTz end = floor_to(Min(hi, horizon), width);
	int64		block = width * PSG_CACHE_BLOCK;

	part->nraw = 0;
	part->nruns = 0;
	if (end <= first || (end - first) / width > PSG_CACHE_MAX_BUCKETS)
	{
		part->raw[part->nraw++] = (Piece) {lo, hi};
		return;
	}
	if (lo < first)
		part->raw[part->nraw++] = (Piece) {lo, first};
	if (end < hi)
		part->raw[part->nraw++] = (Piece) {end, hi};
	if (ceil_to(first, block) < floor_to(end, block))
	{
		add_run(part, first, ceil_to(first, block), width);
		add_run(part, ceil_to(first, block), floor_to(end, block), block);
		add_run(part, floor_to(end, block), end, width);
	}
	else
		add_run(part, first, end, width);
}

/* "(ts >= $a AND ts < $b) OR ..." over a part's raw pieces, "false" when none. */
static void
append_pieces(StringInfo sql, const char *qt, const Part *part, int *param, Datum *values,
			  Oid *types)
{
	int			i;

	if (part->nraw == 0)
	{
		appendStringInfoString(sql, "false");
		return;
	}
	appendStringInfoChar(sql, '(');
	for (i = 0; i < part->nraw; i++)
	{
		appendStringInfo(sql, "%s(%s >= $%d AND %s < $%d)", i ? " OR " : "", qt, *param + 1,
						 qt, *param + 2);
		values[*param] = TimestampTzGetDatum(part->raw[i].lo);
		values[*param + 1] = TimestampTzGetDatum(part->raw[i].hi);
		types[*param] = types[*param + 1] = TIMESTAMPTZOID;
		*param += 2;
	}
	appendStringInfoChar(sql, ')');
}

typedef struct BucketSet
{
	TimestampTz first;
	int			n;
	int64		width;
	int64	   *rows;			/* per bucket */
	const char **digest;		/* [bucket * ncolumns + column] */
	size_t	   *len;
	bool	   *have;			/* per bucket: every column known */
} BucketSet;

static PsgBucketKey
bucket_key(Analysis *an, int column, int64 width, TimestampTz start)
{
	PsgBucketKey key;

	memset(&key, 0, sizeof(key));
	key.relid = an->relid;
	key.relfilenode = an->relfilenode;
	key.userid = GetUserId();
	key.time_attnum = an->time_attnum;
	key.value_attnum = an->columns[column].attnum;
	key.compression = an->compression;
	key.width = width;
	key.start = start;
	return key;
}

/* Look every bucket up; aggregate the missing ones in one grouped scan. */
static void
load_buckets(Analysis *an, BucketSet *set, const char *nsp, const char *qt)
{
	int64		width = set->width;
	int			b,
				c,
				missing_lo = -1,
				missing_hi = -1;

	set->rows = palloc0(sizeof(int64) * Max(set->n, 1));
	set->digest = palloc0(sizeof(char *) * Max(set->n, 1) * an->ncolumns);
	set->len = palloc0(sizeof(size_t) * Max(set->n, 1) * an->ncolumns);
	set->have = palloc0(sizeof(bool) * Max(set->n, 1));
	for (b = 0; b < set->n; b++)
	{
		bool		all = true;

		for (c = 0; c < an->ncolumns && all; c++)
		{
			PsgBucketKey key = bucket_key(an, c, width, set->first + b * width);

			all = psg_window_cache_get(&key, &set->rows[b], &set->digest[b * an->ncolumns + c],
									   &set->len[b * an->ncolumns + c]);
		}
		set->have[b] = all;
		if (!all)
		{
			if (missing_lo < 0)
				missing_lo = b;
			missing_hi = b;
		}
	}
	if (missing_lo < 0)
		return;

	{
		StringInfoData sql;
		Datum		values[4];
		Oid			types[4] = {INTERVALOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID};
		Interval   *stride = palloc0(sizeof(Interval));
		uint64		r;
		int			rc;

		stride->time = width;
		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT pg_catalog.date_bin($1, %s, "
						 "'2000-01-01 00:00:00+00'::pg_catalog.timestamptz), pg_catalog.count(*)", qt);
		for (c = 0; c < an->ncolumns; c++)
			appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $4)", nsp,
							 quote_identifier(an->columns[c].name));
		appendStringInfo(&sql, " FROM %s WHERE %s >= $2 AND %s < $3 GROUP BY 1", an->source, qt, qt);
		values[0] = IntervalPGetDatum(stride);
		values[1] = TimestampTzGetDatum(set->first + missing_lo * width);
		values[2] = TimestampTzGetDatum(set->first + (missing_hi + 1) * width);
		values[3] = Int32GetDatum(an->compression);
		rc = SPI_execute_with_args(sql.data, 4, types, values, NULL, true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "window cache aggregation failed");

		/* Buckets the scan did not return had no rows. */
		for (b = missing_lo; b <= missing_hi; b++)
			if (!set->have[b])
			{
				set->rows[b] = 0;
				for (c = 0; c < an->ncolumns; c++)
					set->len[b * an->ncolumns + c] = 0;
			}
		for (r = 0; r < SPI_processed; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			TimestampTz start = DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull));

			b = (int) ((start - set->first) / width);
			if (isnull || b < missing_lo || b > missing_hi || set->have[b] ||
				set->first + b * width != start)
				continue;
			set->rows[b] = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			for (c = 0; c < an->ncolumns; c++)
				digest_field(tup, desc, 3 + c, &set->digest[b * an->ncolumns + c],
							 &set->len[b * an->ncolumns + c]);
		}
		for (b = missing_lo; b <= missing_hi; b++)
		{
			if (set->have[b])
				continue;
			an->cache_filled++;
			for (c = 0; c < an->ncolumns; c++)
			{
				PsgBucketKey key = bucket_key(an, c, width, set->first + b * width);

				(void) psg_window_cache_put(&key, set->rows[b], set->digest[b * an->ncolumns + c],
											set->len[b * an->ncolumns + c]);
			}
		}
	}
}

/* Merge a raw digest with a part's bucket runs for one column, into keep. */
static void
merge_part(Analysis *an, const BucketSet *sets, int nsets, int column, const char *raw,
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
		total += sets[r].n;
	bufs = palloc(sizeof(char *) * total);
	lens = palloc(sizeof(size_t) * total);
	bufs[n] = raw;
	lens[n++] = raw_len;
	for (r = 0; r < nsets; r++)
		for (b = 0; b < sets[r].n; b++)
		{
			bufs[n] = sets[r].digest[b * an->ncolumns + column];
			lens[n++] = sets[r].len[b * an->ncolumns + column];
		}
	merged = psg_merge_digest_bytes(n, bufs, lens, an->compression);
	*out_len = VARSIZE_ANY_EXHDR(merged);
	*out = MemoryContextAlloc(keep, *out_len);
	memcpy(*out, VARDATA_ANY(merged), *out_len);
}

/* Look up (or aggregate) every run of a part. */
static BucketSet *
load_part(Analysis *an, const Part *part, const char *nsp, const char *qt)
{
	BucketSet  *sets = palloc0(sizeof(BucketSet) * 3);
	int			r;

	for (r = 0; r < part->nruns; r++)
	{
		sets[r].first = part->runs[r].first;
		sets[r].n = part->runs[r].n;
		sets[r].width = part->runs[r].width;
		load_buckets(an, &sets[r], nsp, qt);
		an->cache_buckets += sets[r].n;
	}
	return sets;
}

/*
 * The window as raw pieces (its newest, unsettled part and a partial bucket
 * at its start) plus settled buckets from the cache.
 */
static void
aggregate_window_cached(Analysis *an, MemoryContext keep, bool fallback)
{
	const char *qt = quote_identifier(an->time_column);
	const char *nsp = quote_identifier(get_namespace_name(an->func_namespace));
	int64		width = (int64) psg_window_cache_bucket_s * USECS_PER_SEC;
	TimestampTz horizon = an->window_end - (int64) psg_window_cache_settle_s * USECS_PER_SEC;
	Part		current,
				previous;
	BucketSet  *cur_sets,
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
	split_range(an->window_start, an->window_end, horizon, width, &current);
	if (fallback)
		split_range(an->fallback_start, an->window_start, horizon, width, &previous);
	else
		previous = (Part) {.nraw = 0, .nruns = 0};

	cur_sets = load_part(an, &current, nsp, qt);
	if (fallback)
		prev_sets = load_part(an, &previous, nsp, qt);

	/* The raw pieces of both roles in one scan. */
	values[0] = Int32GetDatum(an->compression);
	types[0] = INT4OID;
	initStringInfo(&cur_pred);
	initStringInfo(&prev_pred);
	append_pieces(&cur_pred, qt, &current, &nparams, values, types);
	append_pieces(&prev_pred, qt, &previous, &nparams, values, types);
	if (current.nraw + previous.nraw > 0)
	{
		int			rc;

		initStringInfo(&sql);
		appendStringInfo(&sql, "SELECT pg_catalog.count(*) FILTER (WHERE %s)", cur_pred.data);
		for (c = 0; c < an->ncolumns; c++)
		{
			const char *qc = quote_identifier(an->columns[c].name);

			appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $1) FILTER (WHERE %s)",
							 nsp, qc, cur_pred.data);
			if (!an->columns[c].has_stored)
				appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $1) FILTER (WHERE %s)",
								 nsp, qc, prev_pred.data);
		}
		appendStringInfo(&sql, " FROM %s WHERE %s OR %s", an->source, cur_pred.data, prev_pred.data);
		rc = SPI_execute_with_args(sql.data, nparams, types, values, NULL, true, 0);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "window aggregation returned no row");
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;

			raw_rows = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			field = 2;
			for (c = 0; c < an->ncolumns; c++)
			{
				digest_field(tup, desc, field++, &raw_cur[c], &raw_cur_len[c]);
				if (!an->columns[c].has_stored)
					digest_field(tup, desc, field++, &raw_prev[c], &raw_prev_len[c]);
			}
		}
	}

	an->rows = raw_rows;
	for (r = 0; r < current.nruns; r++)
		for (b = 0; b < cur_sets[r].n; b++)
			an->rows += cur_sets[r].rows[b];
	for (c = 0; c < an->ncolumns; c++)
	{
		ColumnPlan *col = &an->columns[c];

		merge_part(an, cur_sets, current.nruns, c, raw_cur[c], raw_cur_len[c], &col->current,
				   &col->current_len, keep);
		if (!col->has_stored)
		{
			merge_part(an, prev_sets, previous.nruns, c, raw_prev[c], raw_prev_len[c],
					   &col->baseline, &col->baseline_len, keep);
			col->baseline_json = previous_window_json(an, keep);
		}
	}
	an->aggregate_ms = elapsed_ms(start);
}

static void
aggregate_window(Analysis *an, MemoryContext keep)
{
	StringInfoData sql;
	const char *qt = quote_identifier(an->time_column);
	const char *nsp = quote_identifier(get_namespace_name(an->func_namespace));
	const char *cast = time_cast(an);
	bool		fallback = false;
	int			c,
				rc,
				field;
	double		estimate;
	Datum		values[4];
	Oid			types[4] = {TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID};
	instr_time	start;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	load_stored_baselines(an, keep);
	for (c = 0; c < an->ncolumns; c++)
		if (!an->columns[c].has_stored)
			fallback = true;

	estimate = estimate_window_rows(an, fallback);
	if (estimate > (double) psg_max_window_rows)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("window of about %.0f rows exceeds pg_stat_guard.max_window_rows (%d)",
						estimate, psg_max_window_rows),
				 errhint("Analyse a shorter window, or capture baselines so the previous window is not scanned.")));

	if (psg_window_cache_usable(an->relid, an->time_type))
	{
		aggregate_window_cached(an, keep, fallback);
		SPI_finish();
		return;
	}

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT pg_catalog.count(*)");
	if (fallback)
		appendStringInfo(&sql, " FILTER (WHERE %s >= $1%s)", qt, cast);
	for (c = 0; c < an->ncolumns; c++)
	{
		const char *qc = quote_identifier(an->columns[c].name);

		appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $3)", nsp, qc);
		if (fallback)
			appendStringInfo(&sql, " FILTER (WHERE %s >= $1%s)", qt, cast);
		if (!an->columns[c].has_stored)
			appendStringInfo(&sql, ", %s.tdigest_agg(%s::pg_catalog.float8, $3) FILTER (WHERE %s < $1%s)",
							 nsp, qc, qt, cast);
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
	an->aggregate_ms = elapsed_ms(start);

	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		an->rows = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		field = 2;
		for (c = 0; c < an->ncolumns; c++)
		{
			ColumnPlan *col = &an->columns[c];

			copy_digest(tup, desc, field++, &col->current, &col->current_len, keep);
			if (!col->has_stored)
			{
				copy_digest(tup, desc, field++, &col->baseline, &col->baseline_len, keep);
				col->baseline_json = previous_window_json(an, keep);
			}
		}
	}
	SPI_finish();
}

/*
 * Run the reads in a subtransaction and roll it back: the digests survive in
 * the caller's memory, the locks taken on the source do not.
 */
static void
aggregate_and_release_locks(Analysis *an)
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

/* --------------------------------------------------------------- envelope */

static void
append_u16(StringInfo buf, uint16 v)
{
	unsigned char b[2] = {v & 0xff, v >> 8};

	appendBinaryStringInfo(buf, (char *) b, 2);
}

static void
append_u32(StringInfo buf, uint32 v)
{
	unsigned char b[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, v >> 24};

	appendBinaryStringInfo(buf, (char *) b, 4);
}

static char *
baselines_json(Analysis *an, const char **summary_kind)
{
	StringInfoData js;
	int			c;
	bool		any_stored = false,
				any_previous = false;

	initStringInfo(&js);
	appendStringInfoChar(&js, '{');
	for (c = 0; c < an->ncolumns; c++)
	{
		if (c > 0)
			appendStringInfoChar(&js, ',');
		append_json_string(&js, an->columns[c].name);
		appendStringInfoChar(&js, ':');
		appendStringInfoString(&js, an->columns[c].baseline_json);
		if (an->columns[c].has_stored)
			any_stored = true;
		else
			any_previous = true;
	}
	appendStringInfoChar(&js, '}');
	*summary_kind = any_stored && any_previous ? "mixed" : any_stored ? "stored" : "previous_window";
	return js.data;
}

/* Metadata keys in sorted order, compact, as docs/wire-format.md asks. */
static char *
envelope_metadata(Analysis *an)
{
	StringInfoData js;
	const char *kind;
	char	   *per_column = baselines_json(an, &kind);

	initStringInfo(&js);
	appendStringInfoString(&js, "{\"baseline\":{\"kind\":");
	append_json_string(&js, kind);
	appendStringInfoString(&js, "},\"baselines\":");
	appendStringInfoString(&js, per_column);
	appendStringInfoString(&js, ",\"client\":\"pg_stat_guard/" PSG_EXTENSION_VERSION "\"");
	appendStringInfo(&js, ",\"compression\":%d", an->compression);
	appendStringInfoString(&js, ",\"request_id\":");
	append_json_string(&js, an->request_id);
	appendStringInfoString(&js, ",\"source\":");
	append_json_string(&js, an->source);
	appendStringInfoString(&js, ",\"time_column\":");
	append_json_string(&js, an->time_column);
	appendStringInfoString(&js, ",\"window_end\":");
	append_json_string(&js, iso_timestamp(an->window_end));
	appendStringInfoString(&js, ",\"window_start\":");
	append_json_string(&js, iso_timestamp(an->window_start));
	appendStringInfoChar(&js, '}');
	return js.data;
}

static void
append_entry(StringInfo buf, const char *name, uint8 role, const char *digest, size_t len)
{
	size_t		name_len = strlen(name);

	append_u16(buf, (uint16) name_len);
	appendBinaryStringInfo(buf, name, name_len);
	appendStringInfoChar(buf, (char) role);
	append_u32(buf, (uint32) len);
	appendBinaryStringInfo(buf, digest, len);
}

static StringInfo
build_envelope(Analysis *an)
{
	StringInfo	buf = makeStringInfo();
	char	   *meta = envelope_metadata(an);
	size_t		meta_len = strlen(meta);
	int			c;

	if (meta_len > PSG_ENVELOPE_MAX_METADATA)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("analysis metadata of %zu bytes exceeds the envelope limit", meta_len)));
	appendBinaryStringInfo(buf, "PSGE", 4);
	appendStringInfoChar(buf, 1);	/* version */
	appendStringInfoChar(buf, 0);	/* flags */
	append_u16(buf, 0);			/* reserved */
	append_u32(buf, (uint32) meta_len);
	appendBinaryStringInfo(buf, meta, meta_len);
	append_u32(buf, (uint32) (2 * an->ncolumns));
	for (c = 0; c < an->ncolumns; c++)
	{
		ColumnPlan *col = &an->columns[c];

		append_entry(buf, col->name, 0, col->current, col->current_len);
		append_entry(buf, col->name, 1, col->baseline, col->baseline_len);
	}
	return buf;
}

/* ----------------------------------------------------------------- answer */

static char *
analysis_json(Analysis *an, double total_ms)
{
	StringInfoData js;
	const char *kind;
	char	   *per_column = baselines_json(an, &kind);

	initStringInfo(&js);
	appendStringInfoString(&js, "{\"analysis\":{\"source\":");
	append_json_string(&js, an->source);
	appendStringInfoString(&js, ",\"time_column\":");
	append_json_string(&js, an->time_column);
	appendStringInfoString(&js, ",\"window_start\":");
	append_json_string(&js, iso_timestamp(an->window_start));
	appendStringInfoString(&js, ",\"window_end\":");
	append_json_string(&js, iso_timestamp(an->window_end));
	appendStringInfoString(&js, ",\"baselines\":");
	appendStringInfoString(&js, per_column);
	appendStringInfo(&js, ",\"rows\":" INT64_FORMAT ",\"compression\":%d,\"transport\":",
					 an->rows, an->compression);
	append_json_string(&js, an->transport_name);
	appendStringInfoString(&js, ",\"request_id\":");
	append_json_string(&js, an->request_id);
	if (an->cache_bucket_s > 0)
		appendStringInfo(&js, ",\"window_cache\":{\"bucket_s\":%d,\"buckets\":%d,\"aggregated\":%d}",
						 an->cache_bucket_s, an->cache_buckets, an->cache_filled);
	appendStringInfoString(&js, ",\"extension_version\":\"" PSG_EXTENSION_VERSION "\"");
	appendStringInfo(&js, ",\"timings_ms\":{\"aggregate\":%.3f,\"http\":%.3f,\"total\":%.3f}}}",
					 an->aggregate_ms, an->http_ms, total_ms);
	return js.data;
}

static Datum
jsonb_from_text(const char *text)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
}

/* True if body is one JSON object in the database encoding; never raises an ERROR. */
static bool
looks_like_json_object(const char *body, size_t len)
{
	size_t		i = 0;

	while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
		i++;
	if (i == len || body[i] != '{')
		return false;
	if (strlen(body) != len)	/* an embedded NUL */
		return false;
	return pg_verifymbstr(body, (int) len, true);
}

static bool
field_is_string(Datum object, const char *key)
{
	Jsonb	   *jb = DatumGetJsonbP(object);
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&jb->root, JB_FOBJECT, &k);
	return v != NULL && v->type == jbvString;
}

/*
 * The function's answer as jsonb, or NULL with *problem set when it is not the
 * documented JSON object.  Parsing runs in a subtransaction: hostile bodies
 * (\u0000 escapes, absurd nesting) become a failure the caller reports, while
 * a cancel or an out-of-memory still propagates.
 */
static Datum
parse_answer(const char *body, size_t len, const char **problem)
{
	PsgSubxact	sx;
	volatile Datum answer = (Datum) 0;

	*problem = NULL;
	if (!looks_like_json_object(body, len))
	{
		*problem = "answered with a body that is not a JSON object";
		return (Datum) 0;
	}
	sx = psg_subxact_begin();
	PG_TRY();
	{
		answer = jsonb_from_text(body);
		psg_subxact_end(&sx, false);
	}
	PG_CATCH();
	{
		ErrorData  *edata = psg_subxact_abort(&sx);

		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN)
			ReThrowError(edata);
		FreeErrorData(edata);
		*problem = "answered with a body that is not valid JSON";
		return (Datum) 0;
	}
	PG_END_TRY();
	if (!field_is_string(answer, "status") || !field_is_string(answer, "verdict"))
	{
		*problem = "answered JSON without string \"status\" and \"verdict\"";
		return (Datum) 0;
	}
	return answer;
}

static Datum
unavailable_result(Analysis *an, const char *message, double total_ms)
{
	StringInfoData js;
	Datum		base;

	initStringInfo(&js);
	appendStringInfoString(&js, "{\"status\":\"unavailable\",\"verdict\":null,\"error\":");
	append_json_string(&js, message);
	appendStringInfoChar(&js, '}');
	base = jsonb_from_text(js.data);
	return DirectFunctionCall2(jsonb_concat, base,
							   jsonb_from_text(analysis_json(an, total_ms)));
}

/* Raise the failure, or return the JSON status when the caller asked for it. */
static Datum
endpoint_failed(Analysis *an, int sqlstate, const char *message, double total_ms)
{
	if (psg_on_unavailable == PSG_UNAVAILABLE_JSON)
		return unavailable_result(an, message, total_ms);
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("drift function %s", message)));
	return (Datum) 0;			/* not reached */
}

/* ------------------------------------------------------------------ entry */

static Datum
run_analysis(FunctionCallInfo fcinfo, Oid relid, const char *time_column,
			 char **columns, int ncolumns, Interval *span)
{
	Analysis	an = {0};
	instr_time	start;
	StringInfo	envelope;
	PsgHttpRequest req = {0};
	PsgHttpResponse resp;
	bool		ok;
	int			slot;
	volatile Datum result = (Datum) 0;
	uint8		random_bytes[16];
	int			i;
	bool		use_curl;

	INSTR_TIME_SET_CURRENT(start);
	an.func_namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	an.compression = psg_compression;
	set_window(&an, span);
	resolve_source(&an, relid, time_column);
	resolve_columns(&an, columns, ncolumns);

	if (psg_function_key != NULL && psg_function_key[0] != '\0' && !psg_library_preloaded())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_stat_guard must be listed in shared_preload_libraries or "
						"session_preload_libraries when pg_stat_guard.function_key is set"),
				 errdetail("Until the library is loaded, PostgreSQL shows the key to every role "
						   "as an unrecognised setting."),
				 errhint("Add pg_stat_guard to shared_preload_libraries (restart) or to "
						 "session_preload_libraries (new connections).")));

	if (psg_function_url == NULL || psg_function_url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_stat_guard.function_url is not set"),
				 errhint("Set it in postgresql.conf or with ALTER SYSTEM, then reload.")));

	if (!pg_strong_random(random_bytes, sizeof(random_bytes)))
		for (i = 0; i < (int) sizeof(random_bytes); i++)
			random_bytes[i] = (uint8) pg_prng_uint32(&pg_global_prng_state);
	for (i = 0; i < (int) sizeof(random_bytes); i++)
		snprintf(an.request_id + 2 * i, 3, "%02x", random_bytes[i]);

	use_curl = psg_transport == PSG_TRANSPORT_CURL ||
		(psg_transport == PSG_TRANSPORT_AUTO && psg_curl_available());
	an.transport_name = use_curl ? "curl" : "pgsql-http";

	slot = acquire_slot();
	PG_TRY();
	{
		instr_time	http_start;

		aggregate_and_release_locks(&an);
		envelope = build_envelope(&an);

		req.url = psg_function_url;
		req.key = psg_function_key;
		req.body = envelope->data;
		req.body_len = envelope->len;
		req.connect_timeout_ms = psg_connect_timeout_ms;
		req.timeout_ms = psg_timeout_ms;
		req.max_response = (size_t) psg_max_response_bytes;

		INSTR_TIME_SET_CURRENT(http_start);
		ok = use_curl ? psg_curl_post(&req, &resp) : psg_pgsql_http_post(&req, &resp);
		an.http_ms = elapsed_ms(http_start);

		if (!ok)
		{
			int			code = resp.failure == PSG_HTTP_TIMEOUT ? ERRCODE_QUERY_CANCELED
				: resp.failure == PSG_HTTP_CONNECT ? ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION
				: resp.failure == PSG_HTTP_UNAVAILABLE ? ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
				: ERRCODE_CONNECTION_FAILURE;

			if (resp.failure == PSG_HTTP_UNAVAILABLE)
				ereport(ERROR, (errcode(code), errmsg("%s", resp.message)));
			result = endpoint_failed(&an, code, resp.message, elapsed_ms(start));
		}
		else if (resp.status < 200 || resp.status > 299)
		{
			char		message[128];

			snprintf(message, sizeof(message), "answered HTTP status %ld", resp.status);
			result = endpoint_failed(&an, ERRCODE_CONNECTION_FAILURE, message, elapsed_ms(start));
		}
		else
		{
			const char *problem;
			Datum		answer = parse_answer(resp.body, resp.body_len, &problem);

			if (problem != NULL)
				result = endpoint_failed(&an, ERRCODE_CONNECTION_FAILURE, problem,
										 elapsed_ms(start));
			else
				result = DirectFunctionCall2(jsonb_concat, answer,
											 jsonb_from_text(analysis_json(&an, elapsed_ms(start))));
		}
	}
	PG_FINALLY();
	{
		release_slot(slot);
	}
	PG_END_TRY();
	PG_RETURN_DATUM(result);
}

/* perform_drift_analysis(window, source, time_column, value_columns) */
Datum
psg_perform_drift_analysis(PG_FUNCTION_ARGS)
{
	ArrayType  *array;
	Datum	   *elems;
	bool	   *nulls;
	int			n,
				i;
	char	  **names;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source, time_column and value_columns must not be NULL")));
	array = PG_GETARG_ARRAYTYPE_P(3);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("value_columns must be a one-dimensional array")));
	deconstruct_array(array, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, &n);
	names = palloc(sizeof(char *) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("value_columns must not contain NULL")));
		names[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
	}
	return run_analysis(fcinfo, PG_GETARG_OID(1), NameStr(*PG_GETARG_NAME(2)), names, n,
						PG_ARGISNULL(0) ? NULL : PG_GETARG_INTERVAL_P(0));
}

/* perform_drift_analysis(window): source and columns from the settings. */
Datum
psg_perform_drift_analysis_default(PG_FUNCTION_ARGS)
{
	List	   *names_list = NIL;
	List	   *qualified;
	char	   *raw;
	char	  **names;
	ListCell   *lc;
	int			n = 0;
	Oid			relid;

	if (psg_source == NULL || psg_source[0] == '\0' ||
		psg_time_column == NULL || psg_time_column[0] == '\0' ||
		psg_value_columns == NULL || psg_value_columns[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_stat_guard.source, pg_stat_guard.time_column and "
						"pg_stat_guard.value_columns must be set for perform_drift_analysis(interval)")));
#if PG_VERSION_NUM >= 160000
	qualified = stringToQualifiedNameList(psg_source, NULL);
#else
	qualified = stringToQualifiedNameList(psg_source);
#endif
	relid = RangeVarGetRelid(makeRangeVarFromNameList(qualified), NoLock, false);
	raw = pstrdup(psg_value_columns);
	if (!SplitIdentifierString(raw, ',', &names_list))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pg_stat_guard.value_columns is not a valid list of column names")));
	names = palloc(sizeof(char *) * Max(list_length(names_list), 1));
	foreach(lc, names_list)
		names[n++] = (char *) lfirst(lc);
	return run_analysis(fcinfo, relid, psg_time_column, names, n,
						PG_ARGISNULL(0) ? NULL : PG_GETARG_INTERVAL_P(0));
}
