/*
 * function_target.c — the drift function's URL and key for this database, and
 * the superuser-only functions that store them.
 *
 * Why a table and not ALTER DATABASE ... SET: PostgreSQL keeps per-database
 * and per-role settings in pg_db_role_setting, which every role may read
 * (and a function's SET clause in pg_proc.proconfig, readable too).  So the
 * key is refused from those places (guc.c) and a database's own key lives in
 * the extension's table pg_stat_guard_function instead: one row, no grant to
 * PUBLIC, written only by pg_stat_guard_set_function_key() /
 * pg_stat_guard_set_function_url(), which check for a superuser.  The URL may
 * be stored there as well, for URLs that must not be seen either.
 *
 * The analysis reads the row with a plain table scan, not SQL: privileges are
 * not checked at that level, so the caller's rights need no switching, and
 * nothing the caller controls (search_path, operators, functions, a table of
 * the same name in a writable schema: only the extension's own table counts)
 * runs or is read on its behalf.  The values are copied out and never printed;
 * an error about them says what is wrong, not what they are.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "function_target.h"
#include "guc.h"

#define PSG_FUNCTION_TABLE "pg_stat_guard_function"

PG_FUNCTION_INFO_V1(psg_set_function_url);
PG_FUNCTION_INFO_V1(psg_set_function_key);

/* ---------------------------------------------------------- validation */

static bool
has_control_character(const char *value)
{
	const unsigned char *p;

	for (p = (const unsigned char *) value; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

const char *
psg_function_url_problem(const char *url)
{
	if (strlen(url) > PSG_MAX_FUNCTION_URL)
		return "is longer than 2048 bytes";
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return "must start with http:// or https://";
	if (strchr(url, ' ') != NULL || has_control_character(url))
		return "must not contain whitespace or control characters";
	return NULL;
}

const char *
psg_function_key_problem(const char *key)
{
	if (strlen(key) > PSG_MAX_FUNCTION_KEY)
		return "is longer than 1024 bytes";
	/* A header value with a line break would let the key inject headers. */
	if (has_control_character(key))
		return "must not contain line breaks or other control characters";
	return NULL;
}

/* ------------------------------------------------------------- reading */

/*
 * The extension's own table, not one of the same name someone else created.
 * The answer is kept for the backend (a relation's OID stays its own while it
 * exists), so a call does not scan pg_depend each time.
 */
static bool
is_extension_table(Oid relid)
{
	static Oid	member_relid = InvalidOid;
	Oid			extension;

	if (OidIsValid(member_relid) && relid == member_relid)
		return true;
	extension = get_extension_oid("pg_stat_guard", true);
	if (OidIsValid(extension) && getExtensionOfObject(RelationRelationId, relid) == extension)
	{
		member_relid = relid;
		return true;
	}
	return false;
}

static char *
text_attribute(TupleTableSlot *slot, AttrNumber attnum)
{
	bool		isnull;
	Datum		value = slot_getattr(slot, attnum, &isnull);

	return isnull ? NULL : TextDatumGetCString(value);
}

/* The stored URL and key (NULL where none is stored). */
static void
read_stored(Oid relid, char **url, char **key)
{
	Relation	rel = table_open(relid, AccessShareLock);
	AttrNumber	url_att = get_attnum(relid, "function_url");
	AttrNumber	key_att = get_attnum(relid, "function_key");
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;

	if (url_att == InvalidAttrNumber || key_att == InvalidAttrNumber)
		elog(ERROR, "table %s lacks its columns", PSG_FUNCTION_TABLE);
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	if (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		*url = text_attribute(slot, url_att);
		*key = text_attribute(slot, key_att);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
}

static void
check_stored(const char *value, const char *what, const char *setter,
			 const char *(*problem_of) (const char *))
{
	const char *problem = problem_of(value);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the function %s stored for this database %s", what, problem),
				 errhint("A superuser can store it again with %s().", setter)));
}

void
psg_resolve_function_target(Oid namespace, PsgFunctionTarget *target)
{
	Oid			relid = get_relname_relid(PSG_FUNCTION_TABLE, namespace);
	char	   *url = NULL;
	char	   *key = NULL;

	/* A database whose extension objects predate the table has the settings only. */
	if (OidIsValid(relid) && is_extension_table(relid))
		read_stored(relid, &url, &key);
	if (url != NULL)
		check_stored(url, "URL", "pg_stat_guard_set_function_url", psg_function_url_problem);
	if (key != NULL)
		check_stored(key, "key", "pg_stat_guard_set_function_key", psg_function_key_problem);

	target->url_stored = url != NULL;
	target->key_stored = key != NULL;
	target->url = url != NULL ? url : pstrdup(psg_function_url ? psg_function_url : "");
	target->key = key != NULL ? key : pstrdup(psg_function_key ? psg_function_key : "");
}

void
psg_forget_function_key(PsgFunctionTarget *target)
{
	if (target->key != NULL)
		explicit_bzero(target->key, strlen(target->key));
}

/* ------------------------------------------------------------- storing */

/*
 * Store (or, for NULL, remove) one column of the database's row; the row goes
 * when neither value remains.  The value travels as a parameter, so it is in
 * no query text.
 */
static void
store_value(FunctionCallInfo fcinfo, const char *column, const char *what,
			const char *(*problem_of) (const char *))
{
	const char *nsp;
	StringInfoData sql;
	Datum		values[1] = {(Datum) 0};
	char		nulls[1] = {'n'};
	Oid			types[1] = {TEXTOID};

	/* EXECUTE is revoked from PUBLIC too; this holds whoever it is granted to. */
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may store the drift function's %s", what)));
	if (!PG_ARGISNULL(0))
	{
		text	   *arg = PG_GETARG_TEXT_PP(0);
		char	   *value = text_to_cstring(arg);
		const char *problem;

		if (value[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the function %s must not be empty", what),
					 errhint("Pass NULL to remove the stored %s.", what)));
		problem = problem_of(value);
		explicit_bzero(value, strlen(value));
		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the function %s %s", what, problem)));
		values[0] = PointerGetDatum(arg);
		nulls[0] = ' ';
	}

	nsp = quote_identifier(get_namespace_name(get_func_namespace(fcinfo->flinfo->fn_oid)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "INSERT INTO %s.%s AS f (singleton, %s, changed_at) "
					 "VALUES (true, $1, pg_catalog.now()) ON CONFLICT (singleton) DO UPDATE "
					 "SET %s = EXCLUDED.%s, changed_at = EXCLUDED.changed_at",
					 nsp, PSG_FUNCTION_TABLE, column, column, column);
	if (SPI_execute_with_args(sql.data, 1, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not store the function %s", what);
	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "DELETE FROM %s.%s WHERE function_url IS NULL AND function_key IS NULL",
					 nsp, PSG_FUNCTION_TABLE);
	if (SPI_execute(sql.data, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not store the function %s", what);
	SPI_finish();
}

/* pg_stat_guard_set_function_url(url text): this database's URL; NULL removes it. */
Datum
psg_set_function_url(PG_FUNCTION_ARGS)
{
	store_value(fcinfo, "function_url", "URL", psg_function_url_problem);
	PG_RETURN_VOID();
}

/* pg_stat_guard_set_function_key(key text): this database's key; NULL removes it. */
Datum
psg_set_function_key(PG_FUNCTION_ARGS)
{
	store_value(fcinfo, "function_key", "key", psg_function_key_problem);
	PG_RETURN_VOID();
}
