/*
 * analysis.c — perform_drift_analysis: digests in the database, verdict over HTTP.
 *
 * The steps, and why they are ordered so:
 *   1. Validate the arguments, tell numeric from categorical columns and check
 *      SELECT on every column up front, so a caller without access learns
 *      nothing, not even whether baselines exist (this file).
 *   2. Take a concurrency slot: over pg_stat_guard.max_concurrent the caller
 *      gets "busy" at once (slots.c).
 *   3. Read the stored baselines and aggregate the window (and, for columns
 *      without a baseline, the previous window in the same scan) with the
 *      parallel tdigest_agg, and count the categorical columns into bounded
 *      tables, in a subtransaction rolled back before any network wait, so no
 *      lock on the source is held while the function answers (baselines.c,
 *      window.c, window_cache.c, categories.c).
 *   4. POST one envelope (docs/wire-format.md) through the chosen transport
 *      (envelope.c, transport_*.c).
 *   5. Check the answer is the documented JSON object and return it with an
 *      "analysis" object (windows, baselines, rows, timings) added (result.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "analysis.h"
#include "envelope.h"
#include "function_target.h"
#include "guc.h"
#include "result.h"
#include "slots.h"
#include "transport.h"
#include "window.h"

PG_FUNCTION_INFO_V1(psg_perform_drift_analysis);
PG_FUNCTION_INFO_V1(psg_perform_drift_analysis_default);

double
psg_elapsed_ms(instr_time start)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, start);
	return INSTR_TIME_GET_MILLISEC(now);
}

/* ------------------------------------------------------ argument checking */

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

static bool
is_integer_type(Oid typid)
{
	return typid == INT2OID || typid == INT4OID || typid == INT8OID;
}

/* Categorical by its type alone: text-like, name, boolean or an enum. */
static bool
is_categorical_type(Oid typid, bool *text_like)
{
	*text_like = typid == TEXTOID || typid == VARCHAROID || typid == BPCHAROID;
	return *text_like || typid == NAMEOID || typid == BOOLOID || type_is_enum(typid);
}

static bool
name_listed(const char *name, char **names, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* The column's kind from its type and whether category_columns names it. */
static void
set_column_kind(PsgAnalysis *an, PsgAnalysisColumn *col, bool listed)
{
	Oid			typid = get_atttype(an->relid, col->attnum);

	if (is_categorical_type(typid, &col->text_like))
		col->kind = PSG_KIND_CATEGORICAL;
	else if (listed && is_integer_type(typid))
		col->kind = PSG_KIND_CATEGORICAL;
	else if (listed)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" is of type %s, which category_columns cannot list",
						col->name, format_type_be(typid)),
				 errhint("category_columns lists integer columns to analyse as categories; "
						 "text, varchar, char, name, boolean and enum columns are categories "
						 "already.")));
	else if (is_numeric_type(typid))
		col->kind = PSG_KIND_NUMERIC;
	else
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" is of type %s, not a number or a category",
						col->name, format_type_be(typid)),
				 errhint("Value columns may be numbers (double precision, real, numeric, "
						 "integers) or categories (text, varchar, char, name, boolean, enum, "
						 "and integer columns listed in category_columns).")));
	if (col->kind == PSG_KIND_CATEGORICAL)
		an->ncategorical++;
}

/* ------------------------------------------------------ argument checking */

void
psg_resolve_columns(PsgAnalysis *an, char **names, int n, char **category_names,
					int ncategory)
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
	for (i = 0; i < ncategory; i++)
		if (!name_listed(category_names[i], names, n))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("category_columns names \"%s\", which value_columns does not",
							category_names[i])));
	an->ncolumns = n;
	an->ncategorical = 0;
	an->columns = palloc0(sizeof(PsgAnalysisColumn) * n);
	for (i = 0; i < n; i++)
	{
		PsgAnalysisColumn *col = &an->columns[i];

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
		set_column_kind(an, col, name_listed(col->name, category_names, ncategory));
		if (!can_select_column(an->relid, col->attnum))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for column \"%s\" of relation %s",
							col->name, an->source)));
	}
}

void
psg_resolve_source(PsgAnalysis *an, Oid relid, const char *time_column)
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
set_window(PsgAnalysis *an, Interval *span)
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

static bool
library_preloaded(void)
{
	return listed_in("shared_preload_libraries") || listed_in("session_preload_libraries");
}

static void
check_settings(const PsgFunctionTarget *target)
{
	if (psg_function_key != NULL && psg_function_key[0] != '\0' && !library_preloaded())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_stat_guard must be listed in shared_preload_libraries or "
						"session_preload_libraries when pg_stat_guard.function_key is set"),
				 errdetail("Until the library is loaded, PostgreSQL shows the key to every role "
						   "as an unrecognised setting."),
				 errhint("Add pg_stat_guard to shared_preload_libraries (restart) or to "
						 "session_preload_libraries (new connections).")));

	if (target->url[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_stat_guard.function_url is not set"),
				 errhint("Set it in postgresql.conf or with ALTER SYSTEM (then reload), for one "
						 "database with ALTER DATABASE ... SET, or store it with "
						 "pg_stat_guard_set_function_url().")));
}

/* ------------------------------------------------------------- the call */

/* 32 hex digits, from the strong random source when it works. */
static void
set_request_id(PsgAnalysis *an)
{
	uint8		random_bytes[16];
	int			i;

	if (!pg_strong_random(random_bytes, sizeof(random_bytes)))
		for (i = 0; i < (int) sizeof(random_bytes); i++)
			random_bytes[i] = (uint8) pg_prng_uint32(&pg_global_prng_state);
	for (i = 0; i < (int) sizeof(random_bytes); i++)
		snprintf(an->request_id + 2 * i, 3, "%02x", random_bytes[i]);
}

/* POST the envelope; false with resp->failure set when the transfer failed. */
static bool
post_envelope(PsgAnalysis *an, const PsgFunctionTarget *target, bool use_curl,
			  StringInfo envelope, PsgHttpResponse *resp)
{
	PsgHttpRequest req = {0};
	instr_time	start;
	bool		posted;

	req.url = target->url;
	req.key = target->key;
	req.body = envelope->data;
	req.body_len = envelope->len;
	req.connect_timeout_ms = psg_connect_timeout_ms;
	req.timeout_ms = psg_timeout_ms;
	req.max_response = (size_t) psg_max_response_bytes;

	INSTR_TIME_SET_CURRENT(start);
	posted = use_curl ? psg_curl_post(&req, resp) : psg_pgsql_http_post(&req, resp);
	an->http_ms = psg_elapsed_ms(start);
	return posted;
}

static Datum
run_analysis(FunctionCallInfo fcinfo, Oid relid, const char *time_column,
			 char **columns, int ncolumns, char **category_columns, int ncategory,
			 Interval *span)
{
	PsgAnalysis an = {0};
	PsgFunctionTarget target = {0};
	instr_time	start;
	int			slot;
	bool		use_curl;
	volatile Datum result = (Datum) 0;

	INSTR_TIME_SET_CURRENT(start);
	an.func_namespace = get_func_namespace(fcinfo->flinfo->fn_oid);
	an.compression = psg_compression;
	an.max_categories = psg_max_categories;
	set_window(&an, span);
	psg_resolve_source(&an, relid, time_column);
	psg_resolve_columns(&an, columns, ncolumns, category_columns, ncategory);
	psg_resolve_function_target(an.func_namespace, &target);
	check_settings(&target);
	set_request_id(&an);
	use_curl = psg_transport == PSG_TRANSPORT_CURL ||
		(psg_transport == PSG_TRANSPORT_AUTO && psg_curl_available());
	an.transport_name = use_curl ? "curl" : "pgsql-http";

	slot = psg_acquire_slot();
	PG_TRY();
	{
		PsgHttpResponse resp;
		bool		posted;

		psg_aggregate_window(&an);
		posted = post_envelope(&an, &target, use_curl, psg_build_envelope(&an), &resp);
		result = psg_analysis_result(&an, posted, &resp, start);
	}
	PG_FINALLY();
	{
		psg_forget_function_key(&target);
		psg_release_slot(slot);
	}
	PG_END_TRY();
	PG_RETURN_DATUM(result);
}

/* ------------------------------------------------------------------ entry */

char	  **
psg_name_array(ArrayType *array, const char *argument, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **names;
	int			i;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", argument)));
	deconstruct_array(array, NAMEOID, NAMEDATALEN, false, TYPALIGN_CHAR, &elems, &nulls, n);
	names = palloc(sizeof(char *) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not contain NULL", argument)));
		names[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
	}
	return names;
}

/* A comma-separated list of identifiers from a setting. */
static char **
setting_names(const char *value, const char *setting, int *n)
{
	List	   *list = NIL;
	ListCell   *lc;
	char	  **names;

	*n = 0;
	if (value == NULL || value[0] == '\0')
		return NULL;
	if (!SplitIdentifierString(pstrdup(value), ',', &list))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a valid list of column names", setting)));
	names = palloc(sizeof(char *) * Max(list_length(list), 1));
	foreach(lc, list)
		names[(*n)++] = (char *) lfirst(lc);
	return names;
}

/*
 * perform_drift_analysis(window, source, time_column, value_columns
 *                        [, category_columns])
 */
Datum
psg_perform_drift_analysis(PG_FUNCTION_ARGS)
{
	char	  **names,
			  **categories = NULL;
	int			n,
				ncategory = 0;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source, time_column and value_columns must not be NULL")));
	names = psg_name_array(PG_GETARG_ARRAYTYPE_P(3), "value_columns", &n);
	if (PG_NARGS() > 4 && !PG_ARGISNULL(4))
		categories = psg_name_array(PG_GETARG_ARRAYTYPE_P(4), "category_columns", &ncategory);
	return run_analysis(fcinfo, PG_GETARG_OID(1), NameStr(*PG_GETARG_NAME(2)), names, n,
						categories, ncategory,
						PG_ARGISNULL(0) ? NULL : PG_GETARG_INTERVAL_P(0));
}

/*
 * perform_drift_analysis(window): source and columns from the settings,
 * integer categories from pg_stat_guard.category_columns.
 */
Datum
psg_perform_drift_analysis_default(PG_FUNCTION_ARGS)
{
	List	   *qualified;
	char	  **names,
			  **categories;
	int			n,
				ncategory;
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
	names = setting_names(psg_value_columns, "pg_stat_guard.value_columns", &n);
	categories = setting_names(psg_category_columns, "pg_stat_guard.category_columns",
							   &ncategory);
	return run_analysis(fcinfo, relid, psg_time_column, names, n, categories, ncategory,
						PG_ARGISNULL(0) ? NULL : PG_GETARG_INTERVAL_P(0));
}
