/*
 * transport_pgsql_http.c — the same POST through pgsql-http's http() via SPI.
 *
 * pgsql-http (https://github.com/pramsey/pgsql-http) documents:
 *   http(http_request) RETURNS http_response, with
 *   http_request(method, uri, headers http_header[], content_type, content)
 *   http_header(field, value), bytea_to_text(bytea) for binary bodies,
 *   http_set_curlopt(option, value) for CURLOPT_TIMEOUT_MS and friends.
 * Its cancel handling is coarser than the built-in transport's (a progress
 * callback), which is why it is used only when chosen.  The call runs in a
 * subtransaction so an endpoint failure becomes a failure kind the caller can
 * turn into a JSON status, while a cancel still propagates as an ERROR.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "subxact.h"
#include "transport.h"

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

bool
psg_pgsql_http_post(const PsgHttpRequest *req, PsgHttpResponse *resp)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	PsgSubxact	sx;
	char	   *schema;
	const char *qs;
	StringInfoData sql;
	bool		ok = false;

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

	sx = psg_subxact_begin();
	PG_TRY();
	{
		bytea	   *body = palloc(VARHDRSZ + req->body_len);
		Datum		values[3];
		Oid			types[3] = {TEXTOID, TEXTOID, BYTEAOID};
		char		timeout_text[32];
		int			rc;

		SET_VARSIZE(body, VARHDRSZ + req->body_len);
		memcpy(VARDATA(body), req->body, req->body_len);

		initStringInfo(&sql);
		appendStringInfo(&sql,
						 "SELECT %s.http_set_curlopt('CURLOPT_TIMEOUT_MS', $1), "
						 "%s.http_set_curlopt('CURLOPT_CONNECTTIMEOUT_MS', $2)", qs, qs);
		snprintf(timeout_text, sizeof(timeout_text), "%d", req->timeout_ms);
		values[0] = CStringGetTextDatum(timeout_text);
		snprintf(timeout_text, sizeof(timeout_text), "%d", req->connect_timeout_ms);
		values[1] = CStringGetTextDatum(timeout_text);
		rc = SPI_execute_with_args(sql.data, 2, types, values, NULL, false, 1);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not set pgsql-http timeouts");

		resetStringInfo(&sql);
		appendStringInfo(&sql,
						 "SELECT (r).status, (r).content::pg_catalog.text FROM "
						 "(SELECT %s.http(ROW('POST', $1, "
						 "ARRAY[%s.http_header('x-functions-key', $2)], "
						 "'application/octet-stream', %s.bytea_to_text($3))::%s.http_request) AS r) s",
						 qs, qs, qs, qs);
		values[0] = CStringGetTextDatum(req->url);
		values[1] = CStringGetTextDatum(req->key ? req->key : "");
		values[2] = PointerGetDatum(body);
		rc = SPI_execute_with_args(sql.data, 3, types, values, NULL, false, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "pgsql-http returned no response");
		else
		{
			bool		isnull;
			Datum		status = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			Datum		content;

			resp->status = isnull ? 0 : DatumGetInt32(status);
			content = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
			if (!isnull)
			{
				text	   *t = DatumGetTextPP(content);
				size_t		len = VARSIZE_ANY_EXHDR(t);

				if (len > req->max_response)
				{
					resp->failure = PSG_HTTP_TOO_LARGE;
					snprintf(resp->message, sizeof(resp->message),
							 "answer exceeds pg_stat_guard.max_response_bytes");
				}
				else
				{
					resp->body = MemoryContextAlloc(caller_cxt, len + 1);
					memcpy(resp->body, VARDATA_ANY(t), len);
					resp->body[len] = '\0';
					resp->body_len = len;
				}
			}
			else
			{
				resp->body = MemoryContextAllocZero(caller_cxt, 1);
				resp->body_len = 0;
			}
		}
		ok = resp->failure == PSG_HTTP_OK;
		psg_subxact_end(&sx, false);
	}
	PG_CATCH();
	{
		ErrorData  *edata = psg_subxact_abort(&sx);

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
		resp->failure = (edata->message && strstr(edata->message, "imeout"))
			? PSG_HTTP_TIMEOUT : PSG_HTTP_CONNECT;
		snprintf(resp->message, sizeof(resp->message), "pgsql-http: %s",
				 edata->message ? edata->message : "request failed");
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	SPI_finish();
	return ok;
}
