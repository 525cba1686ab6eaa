/*
 * transport_pgsql_http.c — the same POST through pgsql-http's http() via SPI.
 *
 * pgsql-http (https://github.com/pramsey/pgsql-http) documents
 *   http(http_request) RETURNS http_response, with
 *   http_request(method, uri, headers http_header[], content_type, content),
 *   http_header(field, value), bytea_to_text(bytea) for binary bodies,
 * and takes its libcurl options from settings named http.curlopt_*, most of
 * which any role may SET.  Those settings would let the caller redirect the
 * request and the function key (a proxy, another resolver), weaken TLS, add
 * credentials, and pgsql-http prints the request headers at DEBUG2.  So for
 * the duration of the call, in a GUC nest level of its own (as a function's
 * SET clause does), every such setting gets our value (HTTP_OPTIONS below),
 * messages below WARNING are not sent or logged, and the plan keeps the key
 * a parameter rather than a constant; leaving the level, on success, error or
 * cancel alike, gives the session back its own values.  A version of
 * pgsql-http that offers a setting this table does not know, or none of them
 * as settings, is refused: the key is never sent unprotected.
 *
 * pgsql-http reports a transfer failure as an ERROR carrying libcurl's text
 * only.  Its kind is told without that text: a cancel by the pending
 * interrupt, a timeout by our own clock, and otherwise by connecting to the
 * endpoint once with the built-in libcurl (psg_curl_probe_connect), so the
 * same fault gets the same SQLSTATE on both transports.
 *
 * It reads the whole answer before pg_stat_guard.max_response_bytes can be
 * applied; pg_stat_guard.timeout bounds how long it reads.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "pg_stat_guard.h"
#include "subxact.h"
#include "transport.h"

/* What the call does with each pgsql-http setting. */
typedef enum HttpOptionRule
{
	RULE_SET,					/* our value for the call */
	RULE_TIMEOUT_S,				/* our value: pg_stat_guard.timeout, seconds */
	RULE_TIMEOUT_MS,			/* our value: pg_stat_guard.timeout */
	RULE_CONNECT_S,				/* our value: pg_stat_guard.connect_timeout, seconds */
	RULE_CONNECT_MS,			/* our value: pg_stat_guard.connect_timeout */
	RULE_SERVER,				/* superuser-only: the server's value (RESET) */
	RULE_UNSET,					/* RESET; refused if a value remains (ALTER ROLE/DATABASE) */
	RULE_INERT,					/* RESET; what remains is unused (no proxy) */
	RULE_KEEP					/* neither redirects, weakens TLS, adds credentials nor logs */
} HttpOptionRule;

typedef struct HttpOption
{
	const char *name;
	HttpOptionRule rule;
	const char *value;			/* for RULE_SET */
} HttpOption;

/*
 * Every setting pgsql-http 1.7 defines (its settable_curlopts table and the
 * two older aliases).  A new one makes the transport refuse until it is
 * listed here with its rule.
 */
static const HttpOption HTTP_OPTIONS[] = {
	/* where the request goes: no proxy (also over http_proxy and friends) */
	{"http.curlopt_proxy", RULE_SET, ""},
	{"http.curlopt_pre_proxy", RULE_SET, ""},
	{"http.curlopt_proxyport", RULE_INERT, NULL},
	{"http.curlopt_proxyusername", RULE_INERT, NULL},
	{"http.curlopt_proxypassword", RULE_INERT, NULL},
	{"http.curlopt_proxy_cainfo", RULE_INERT, NULL},
	{"http.curlopt_proxy_tlsauth_username", RULE_INERT, NULL},
	{"http.curlopt_proxy_tlsauth_password", RULE_INERT, NULL},
	{"http.curlopt_proxy_tlsauth_type", RULE_INERT, NULL},
	/* how the host is resolved */
	{"http.curlopt_dns_servers", RULE_UNSET, NULL},
	{"http.curlopt_ipresolve", RULE_SET, "0"},	/* CURL_IPRESOLVE_WHATEVER */
	/* TLS: verification on; CA, client certificate and credentials only the server's */
	{"http.curlopt_ssl_verifypeer", RULE_SET, "1"},
	{"http.curlopt_ssl_verifyhost", RULE_SET, "2"},
	{"http.curlopt_cainfo", RULE_SERVER, NULL},
	{"http.curlopt_sslcert", RULE_SERVER, NULL},
	{"http.curlopt_sslkey", RULE_SERVER, NULL},
	{"http.curlopt_userpwd", RULE_SERVER, NULL},
	{"http.curlopt_sslcerttype", RULE_INERT, NULL},
	{"http.curlopt_sslcert_blob", RULE_UNSET, NULL},
	{"http.curlopt_sslkey_blob", RULE_UNSET, NULL},
	{"http.curlopt_tlsauth_username", RULE_UNSET, NULL},
	{"http.curlopt_tlsauth_password", RULE_UNSET, NULL},
	{"http.curlopt_tlsauth_type", RULE_UNSET, NULL},
	/* the request itself */
	{"http.curlopt_useragent", RULE_SET, PSG_CLIENT_NAME},
	{"http.curlopt_timeout", RULE_TIMEOUT_S, NULL},
	{"http.curlopt_timeout_ms", RULE_TIMEOUT_MS, NULL},
	{"http.curlopt_connecttimeout", RULE_CONNECT_S, NULL},
	{"http.curlopt_connecttimeout_ms", RULE_CONNECT_MS, NULL},
	/* connection reuse; the aliases share storage with the names above */
	{"http.curlopt_tcp_keepalive", RULE_KEEP, NULL},
	{"http.curlopt_tcp_keepidle", RULE_KEEP, NULL},
	{"http.keepalive", RULE_KEEP, NULL},
	{"http.timeout_msec", RULE_KEEP, NULL},
};

/* Without these as settings, pgsql-http keeps its options out of our reach. */
static const char *const REQUIRED_OPTIONS[] = {
	"http.curlopt_proxy", "http.curlopt_timeout_ms", "http.curlopt_connecttimeout_ms",
};

static char *
http_extension_schema(void)
{
	Oid			ext_oid = get_extension_oid("http", true);
	int			rc;
	char	   *schema = NULL;

	if (!OidIsValid(ext_oid))
		return NULL;
	rc = SPI_execute_with_args(
		"SELECT n.nspname::pg_catalog.text FROM pg_catalog.pg_extension e "
		"JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.oid = $1",
		1, (Oid[]) {OIDOID}, (Datum[]) {ObjectIdGetDatum(ext_oid)}, NULL, true, 1);
	if (rc == SPI_OK_SELECT && SPI_processed == 1)
		schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return schema;
}

static const HttpOption *
known_option(const char *name)
{
	int			i;

	for (i = 0; i < lengthof(HTTP_OPTIONS); i++)
		if (strcmp(HTTP_OPTIONS[i].name, name) == 0)
			return &HTTP_OPTIONS[i];
	return NULL;
}

static bool
setting_defined(const char *name)
{
	struct config_generic **vars = get_guc_variables();
	int			n = GetNumConfigOptions();
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(vars[i]->name, name) == 0)
			return (vars[i]->flags & GUC_CUSTOM_PLACEHOLDER) == 0;
	return false;
}

/*
 * Refuse a pgsql-http whose settings we cannot control: a setting we do not
 * know (placeholders a session SET before the library loaded are not
 * pgsql-http's and do nothing), or the required ones missing.
 */
static bool
check_http_settings(PsgHttpResponse *resp)
{
	struct config_generic **vars = get_guc_variables();
	int			n = GetNumConfigOptions();
	int			i;

	for (i = 0; i < n; i++)
	{
		const char *name = vars[i]->name;

		if (strncmp(name, "http.", 5) != 0 || (vars[i]->flags & GUC_CUSTOM_PLACEHOLDER))
			continue;
		if (known_option(name) == NULL)
		{
			resp->failure = PSG_HTTP_UNAVAILABLE;
			snprintf(resp->message, sizeof(resp->message),
					 "pgsql-http offers the setting %s, which pg_stat_guard does not know; "
					 "the request is not sent (use pg_stat_guard.transport = curl)", name);
			return false;
		}
	}
	for (i = 0; i < lengthof(REQUIRED_OPTIONS); i++)
	{
		if (!setting_defined(REQUIRED_OPTIONS[i]))
		{
			resp->failure = PSG_HTTP_UNAVAILABLE;
			snprintf(resp->message, sizeof(resp->message),
					 "this version of pgsql-http does not offer its curl options as settings "
					 "(%s); the request is not sent (use pg_stat_guard.transport = curl)",
					 REQUIRED_OPTIONS[i]);
			return false;
		}
	}
	return true;
}

static void
set_for_call(const char *name, const char *value)
{
	/* PGC_SUSET: the extension sets superuser-only settings for any caller. */
	(void) set_config_option(name, value, PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

static char *
number_text(int value)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", value);
	return pstrdup(buf);
}

/*
 * In the current (new) GUC nest level: every pgsql-http setting as
 * HTTP_OPTIONS says, and no message below WARNING out of the call.  Returns
 * false (resp filled) when a setting keeps a value it must not have.
 */
static bool
settings_for_call(const PsgHttpRequest *req, PsgHttpResponse *resp)
{
	int			i;

	if (client_min_messages < WARNING)
		set_for_call("client_min_messages", "warning");
	if (log_min_messages < WARNING)
		set_for_call("log_min_messages", "warning");
	set_for_call("debug_print_parse", "off");
	set_for_call("debug_print_rewritten", "off");
	set_for_call("debug_print_plan", "off");

	for (i = 0; i < lengthof(HTTP_OPTIONS); i++)
	{
		const HttpOption *opt = &HTTP_OPTIONS[i];

		if (!setting_defined(opt->name))
			continue;
		switch (opt->rule)
		{
			case RULE_SET:
				set_for_call(opt->name, opt->value);
				break;
			case RULE_TIMEOUT_S:
				set_for_call(opt->name, number_text((req->timeout_ms + 999) / 1000));
				break;
			case RULE_TIMEOUT_MS:
				set_for_call(opt->name, number_text(req->timeout_ms));
				break;
			case RULE_CONNECT_S:
				set_for_call(opt->name, number_text((req->connect_timeout_ms + 999) / 1000));
				break;
			case RULE_CONNECT_MS:
				set_for_call(opt->name, number_text(req->connect_timeout_ms));
				break;
			case RULE_SERVER:
			case RULE_INERT:
				set_for_call(opt->name, NULL);
				break;
			case RULE_UNSET:
				set_for_call(opt->name, NULL);
				if (GetConfigOption(opt->name, true, false) != NULL)
				{
					resp->failure = PSG_HTTP_UNAVAILABLE;
					snprintf(resp->message, sizeof(resp->message),
							 "%s has a value for this role or database; pg_stat_guard does "
							 "not send the function key with it (reset it, or use "
							 "pg_stat_guard.transport = curl)", opt->name);
					return false;
				}
				break;
			case RULE_KEEP:
				break;
		}
	}
	return true;
}

/* The answer's status and body, copied into the caller's context. */
static void
read_answer(const PsgHttpRequest *req, PsgHttpResponse *resp, MemoryContext caller_cxt)
{
	bool		isnull;
	Datum		status = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	Datum		content;

	resp->status = isnull ? 0 : DatumGetInt32(status);
	content = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (isnull)
	{
		resp->body = MemoryContextAllocZero(caller_cxt, 1);
		resp->body_len = 0;
	}
	else
	{
		text	   *t = DatumGetTextPP(content);
		size_t		len = VARSIZE_ANY_EXHDR(t);

		if (len > req->max_response)
		{
			resp->failure = PSG_HTTP_TOO_LARGE;
			snprintf(resp->message, sizeof(resp->message),
					 "answer exceeds pg_stat_guard.max_response_bytes");
			return;
		}
		resp->body = MemoryContextAlloc(caller_cxt, len + 1);
		memcpy(resp->body, VARDATA_ANY(t), len);
		resp->body[len] = '\0';
		resp->body_len = len;
	}
}

/* The kind of a failed http() call, told without reading libcurl's text. */
static PsgHttpFailure
failure_kind(const PsgHttpRequest *req, double elapsed_ms)
{
	PsgHttpFailure probe;
	int			left_ms = req->timeout_ms - (int) elapsed_ms;

	/* libcurl may end a timed-out transfer a few milliseconds early */
	if (left_ms <= 10 + req->timeout_ms / 50)
		return PSG_HTTP_TIMEOUT;
	probe = psg_curl_probe_connect(req->url, Min(req->connect_timeout_ms, left_ms));
	switch (probe)
	{
		case PSG_HTTP_OK:
			return PSG_HTTP_PROTOCOL;	/* reachable: the answer failed */
		case PSG_HTTP_UNAVAILABLE:
			return PSG_HTTP_CONNECT;	/* no libcurl in this build to tell */
		default:
			return probe;
	}
}

static const char *
failure_message(PsgHttpFailure kind)
{
	switch (kind)
	{
		case PSG_HTTP_TIMEOUT:
			return "no answer within pg_stat_guard.timeout (pgsql-http)";
		case PSG_HTTP_CONNECT:
			return "could not connect (pgsql-http)";
		default:
			return "transfer failed (pgsql-http)";
	}
}

bool
psg_pgsql_http_post(const PsgHttpRequest *req, PsgHttpResponse *resp)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	PsgSubxact	sx;
	char	   *schema;
	const char *qs;
	StringInfoData sql;
	instr_time	start;
	volatile bool ok = false;

	memset(resp, 0, sizeof(*resp));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	schema = http_extension_schema();
	if (schema == NULL)
	{
		SPI_finish();
		resp->failure = PSG_HTTP_UNAVAILABLE;
		snprintf(resp->message, sizeof(resp->message),
				 "pg_stat_guard.transport is pgsql-http but the http extension is not "
				 "installed in this database");
		return false;
	}
	qs = quote_identifier(schema);

	/* Load pgsql-http's library, so its settings exist, then check them. */
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT %s.bytea_to_text(''::pg_catalog.bytea)", qs);
	if (SPI_execute(sql.data, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not load pgsql-http");
	if (!check_http_settings(resp))
	{
		SPI_finish();
		return false;
	}

	INSTR_TIME_SET_CURRENT(start);
	sx = psg_subxact_begin();
	PG_TRY();
	{
		int			nest_level = NewGUCNestLevel();

		if (settings_for_call(req, resp))
		{
			bytea	   *body = palloc(VARHDRSZ + req->body_len);
			Datum		values[3];
			Oid			types[3] = {TEXTOID, TEXTOID, BYTEAOID};
			SPIPlanPtr	plan;
			int			rc;

			SET_VARSIZE(body, VARHDRSZ + req->body_len);
			memcpy(VARDATA(body), req->body, req->body_len);
			resetStringInfo(&sql);
			appendStringInfo(&sql,
							 "SELECT r.status, r.content::pg_catalog.text FROM %s.http(ROW('POST', $1, "
							 "ARRAY[%s.http_header('x-functions-key', $2)], "
							 "'application/octet-stream', %s.bytea_to_text($3))::%s.http_request) AS r",
							 qs, qs, qs, qs);
			/* A generic plan: the URL and key stay parameters, never constants in a plan. */
			plan = SPI_prepare_cursor(sql.data, 3, types, CURSOR_OPT_GENERIC_PLAN);
			if (plan == NULL)
				elog(ERROR, "could not prepare the pgsql-http request");
			values[0] = CStringGetTextDatum(req->url);
			values[1] = CStringGetTextDatum(req->key ? req->key : "");
			values[2] = PointerGetDatum(body);
			rc = SPI_execute_plan(plan, values, NULL, false, 1);
			if (rc != SPI_OK_SELECT || SPI_processed != 1)
				elog(ERROR, "pgsql-http returned no response");
			read_answer(req, resp, caller_cxt);
			SPI_freeplan(plan);
		}
		AtEOXact_GUC(true, nest_level);
		ok = resp->failure == PSG_HTTP_OK;
		psg_subxact_end(&sx, false);
	}
	PG_CATCH();
	{
		/* Rolling the subtransaction back also leaves the GUC nest level. */
		ErrorData  *edata = psg_subxact_abort(&sx);
		instr_time	now;

		/*
		 * pgsql-http reports a cancel or statement timeout as a plain ERROR and
		 * leaves the interrupt pending: let PostgreSQL raise the real one (57014
		 * with the right message) now that the subtransaction is gone.
		 */
		if (QueryCancelPending || ProcDiePending)
			CHECK_FOR_INTERRUPTS();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			edata->sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
			edata->sqlerrcode == ERRCODE_OUT_OF_MEMORY)
		{
			SPI_finish();
			ReThrowError(edata);
		}
		FreeErrorData(edata);
		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, start);
		resp->failure = failure_kind(req, INSTR_TIME_GET_MILLISEC(now));
		snprintf(resp->message, sizeof(resp->message), "%s", failure_message(resp->failure));
		ok = false;
	}
	PG_END_TRY();
	SPI_finish();
	return ok;
}
