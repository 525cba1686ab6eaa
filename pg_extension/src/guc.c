/*
 * guc.c — the pg_stat_guard.* settings.
 *
 * The function URL and key are the superuser's: PGC_SUSET (postgresql.conf,
 * ALTER SYSTEM, and a superuser's ALTER DATABASE / ALTER ROLE ... SET or SET)
 * and GUC_SUPERUSER_ONLY (hidden from SHOW, pg_settings and current_setting
 * for ordinary roles), so no role can send the data to a server of its own or
 * read the key.  PostgreSQL keeps ALTER DATABASE / ALTER ROLE values (and a
 * function's SET clause) where every role can read them, so the key is
 * refused from there, and so is a URL with credentials or a query string in
 * it; a database's own key is stored with pg_stat_guard_set_function_key()
 * instead (function_target.c).
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "function_target.h"
#include "guc.h"
#include "pg_stat_guard.h"

char	   *psg_function_url = NULL;
char	   *psg_function_key = NULL;
int			psg_connect_timeout_ms = 1000;
int			psg_timeout_ms = 5000;
int			psg_max_response_bytes = 1024 * 1024;
int			psg_max_window_rows = 10000000;
int			psg_max_window_s = 86400;
int			psg_compression = PSG_DEFAULT_COMPRESSION;
int			psg_max_concurrent = 4;
int			psg_transport = PSG_TRANSPORT_AUTO;
int			psg_on_unavailable = PSG_UNAVAILABLE_ERROR;
int			psg_fallback_window_s = 7 * 86400;
char	   *psg_source = NULL;
char	   *psg_time_column = NULL;
char	   *psg_value_columns = NULL;
char	   *psg_category_columns = NULL;
int			psg_max_categories = PSG_DEFAULT_MAX_CATEGORIES;
int			psg_window_cache_bucket_s = 0;
int			psg_window_cache_settle_s = 60;
int			psg_window_cache_size_kb = 16384;

static const struct config_enum_entry transport_options[] = {
	{"auto", PSG_TRANSPORT_AUTO, false},
	{"curl", PSG_TRANSPORT_CURL, false},
	{"pgsql-http", PSG_TRANSPORT_PGSQL_HTTP, false},
	{"pgsql_http", PSG_TRANSPORT_PGSQL_HTTP, true},
	{NULL, 0, false}
};

static const struct config_enum_entry unavailable_options[] = {
	{"error", PSG_UNAVAILABLE_ERROR, false},
	{"json", PSG_UNAVAILABLE_JSON, false},
	{NULL, 0, false}
};

/*
 * Sources PostgreSQL keeps where every role can read them: ALTER DATABASE /
 * ALTER ROLE settings in pg_db_role_setting, and a function's SET clause in
 * pg_proc.  PGC_S_TEST is how ALTER DATABASE / ALTER ROLE and CREATE FUNCTION
 * ... SET check a value before storing it; PGC_S_GLOBAL to PGC_S_DATABASE_USER
 * are the stored values applied at connection (or when the library loads).
 */
static bool
source_readable_by_all(GucSource source)
{
	switch (source)
	{
		case PGC_S_GLOBAL:
		case PGC_S_DATABASE:
		case PGC_S_USER:
		case PGC_S_DATABASE_USER:
		case PGC_S_TEST:
			return true;
		default:
			return false;
	}
}

/* User information (user:password@) or a query string (?code=...). */
static bool
url_carries_credentials(const char *url)
{
	const char *authority = strstr(url, "://");
	size_t		authority_len;

	if (strchr(url, '?') != NULL)
		return true;
	authority = authority ? authority + 3 : url;
	authority_len = strcspn(authority, "/?#");
	return memchr(authority, '@', authority_len) != NULL;
}

static bool
check_function_url(char **newval, void **extra, GucSource source)
{
	const char *url = *newval;
	const char *problem;

	if (url == NULL || url[0] == '\0')
		return true;
	problem = psg_function_url_problem(url);
	if (problem != NULL)
	{
		GUC_check_errmsg("pg_stat_guard.function_url %s", problem);
		return false;
	}
	if (source_readable_by_all(source) && url_carries_credentials(url))
	{
		GUC_check_errmsg("pg_stat_guard.function_url must not carry credentials or a query "
						 "string when set with ALTER DATABASE, ALTER ROLE or a function's SET");
		GUC_check_errdetail("Every role can read those settings (pg_db_role_setting, pg_proc).");
		GUC_check_errhint("Send the key with SELECT pg_stat_guard_set_function_key(...), or "
						  "store the whole URL for this database with SELECT "
						  "pg_stat_guard_set_function_url(...).");
		return false;
	}
	return true;
}

static bool
check_function_key(char **newval, void **extra, GucSource source)
{
	const char *key = *newval;
	const char *problem;

	if (key == NULL || key[0] == '\0')
		return true;
	problem = psg_function_key_problem(key);
	if (problem != NULL)
	{
		GUC_check_errmsg("pg_stat_guard.function_key %s", problem);
		return false;
	}
	if (source_readable_by_all(source))
	{
		GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
		GUC_check_errmsg("pg_stat_guard.function_key cannot be set with ALTER DATABASE, "
						 "ALTER ROLE or a function's SET");
		GUC_check_errdetail("Every role can read those settings (pg_db_role_setting, pg_proc).");
		GUC_check_errhint("In the database, as a superuser: SELECT "
						  "pg_stat_guard_set_function_key('...'); for the whole server: "
						  "postgresql.conf or ALTER SYSTEM.");
		return false;
	}
	return true;
}

void
psg_define_gucs(void)
{
	DefineCustomStringVariable("pg_stat_guard.function_url",
							   "URL of the drift function (POST /api/drift).",
							   NULL, &psg_function_url, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   check_function_url, NULL, NULL);
	DefineCustomStringVariable("pg_stat_guard.function_key",
							   "Key sent to the drift function in x-functions-key.",
							   NULL, &psg_function_key, "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   check_function_key, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.connect_timeout",
							"Connect timeout of the drift function call.",
							NULL, &psg_connect_timeout_ms, 1000, 1, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.timeout",
							"Total timeout of the drift function call.",
							NULL, &psg_timeout_ms, 5000, 1, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.max_response_bytes",
							"Largest accepted answer of the drift function.",
							NULL, &psg_max_response_bytes, 1024 * 1024, 1024,
							256 * 1024 * 1024, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.max_window_rows",
							"Refuse windows the planner estimates above this many rows.",
							NULL, &psg_max_window_rows, 10000000, 1, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.max_window",
							"Longest accepted analysis window.",
							NULL, &psg_max_window_s, 86400, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.compression",
							"Compression of the window digests.",
							NULL, &psg_compression, PSG_DEFAULT_COMPRESSION,
							TD_MIN_COMPRESSION, TD_MAX_COMPRESSION,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.max_concurrent",
							"Analyses that may run at once in the cluster.",
							NULL, &psg_max_concurrent, 4, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("pg_stat_guard.transport",
							 "HTTP transport: auto, curl or pgsql-http.",
							 NULL, &psg_transport, PSG_TRANSPORT_AUTO,
							 transport_options, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("pg_stat_guard.on_unavailable",
							 "When the function fails: raise an error or return a JSON status.",
							 NULL, &psg_on_unavailable, PSG_UNAVAILABLE_ERROR,
							 unavailable_options, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.fallback_baseline_window",
							"Length of the previous window used when no baseline is stored.",
							NULL, &psg_fallback_window_s, 7 * 86400, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("pg_stat_guard.source",
							   "Default source table of perform_drift_analysis(interval).",
							   NULL, &psg_source, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pg_stat_guard.time_column",
							   "Default time column.",
							   NULL, &psg_time_column, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pg_stat_guard.value_columns",
							   "Default value columns, comma-separated.",
							   NULL, &psg_value_columns, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("pg_stat_guard.category_columns",
							   "Integer value columns of the default source analysed as categories, comma-separated.",
							   "Text, varchar, char, name, boolean and enum columns are "
							   "categories without being listed.",
							   &psg_category_columns, "", PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.max_categories",
							"Categories named per categorical column and window; the rest are counted together.",
							NULL, &psg_max_categories, PSG_DEFAULT_MAX_CATEGORIES,
							PSG_MIN_MAX_CATEGORIES, PSG_MAX_MAX_CATEGORIES,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.window_cache_bucket",
							"Width of the cached time buckets of a window (0: no cache).",
							"Settled buckets are aggregated once per backend and merged "
							"into later windows.",
							&psg_window_cache_bucket_s, 0, 0, 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.window_cache_settle",
							"Age after which a bucket's rows are taken as complete.",
							"Rows must be committed within this time of their timestamp "
							"for the cache to see them.",
							&psg_window_cache_settle_s, 60, 0, 86400,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("pg_stat_guard.window_cache_size",
							"Memory a backend may keep in cached bucket digests.",
							NULL, &psg_window_cache_size_kb, 16384, 64, INT_MAX / 1024,
							PGC_USERSET, GUC_UNIT_KB, NULL, NULL, NULL);
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("pg_stat_guard");
#else
	EmitWarningsOnPlaceholders("pg_stat_guard");
#endif
}
