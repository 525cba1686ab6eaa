/*
 * result.c — the function's answer checked, and the result built.
 *
 * An answer counts only when it is HTTP 2xx and one JSON object with string
 * "status" and "verdict"; it is parsed with jsonb in a subtransaction, so a
 * hostile body becomes a reported failure, never a crash or a half-built
 * result.  The result is that object with an "analysis" object added
 * (windows, baselines, rows, timings).  A failure raises an ERROR, or with
 * pg_stat_guard.on_unavailable = json returns {"status": "unavailable", ...}
 * with the same "analysis" object.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "envelope.h"
#include "guc.h"
#include "json_object.h"
#include "pg_stat_guard.h"
#include "result.h"
#include "subxact.h"

/* {"analysis": {...}}: the request's fields, then what only the result knows. */
static Datum
analysis_jsonb(const PsgAnalysis *an, double total_ms)
{
	PsgJsonField fields[PSG_REQUEST_FIELDS + 5];
	PsgJsonField timings[3] = {
		{"aggregate", psprintf("%.3f", an->aggregate_ms)},
		{"http", psprintf("%.3f", an->http_ms)},
		{"total", psprintf("%.3f", total_ms)},
	};
	PsgJsonField analysis;
	const char *kind;
	int			n = psg_request_fields(an, fields, &kind);

	fields[n++] = (PsgJsonField) {"rows", psg_json_int(an->rows)};
	fields[n++] = (PsgJsonField) {"transport", psg_json_string(an->transport_name)};
	if (an->cache_bucket_s > 0)
	{
		PsgJsonField cache[3] = {
			{"bucket_s", psg_json_int(an->cache_bucket_s)},
			{"buckets", psg_json_int(an->cache_buckets)},
			{"aggregated", psg_json_int(an->cache_filled)},
		};

		fields[n++] = (PsgJsonField) {"window_cache", psg_json_object(cache, 3, false)};
	}
	fields[n++] = (PsgJsonField) {"extension_version", psg_json_string(PSG_EXTENSION_VERSION)};
	fields[n++] = (PsgJsonField) {"timings_ms", psg_json_object(timings, 3, false)};
	analysis = (PsgJsonField) {"analysis", psg_json_object(fields, n, false)};
	return psg_jsonb_from_text(psg_json_object(&analysis, 1, false));
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
	JsonbValue *v = psg_jsonb_field(&DatumGetJsonbP(object)->root, key);

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
		answer = psg_jsonb_from_text(body);
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

/* Raise the failure, or return the JSON status when the caller asked for it. */
static Datum
endpoint_failed(const PsgAnalysis *an, int sqlstate, const char *message, double total_ms)
{
	PsgJsonField fields[3] = {
		{"status", psg_json_string("unavailable")},
		{"verdict", "null"},
		{"error", psg_json_string(message)},
	};

	if (psg_on_unavailable != PSG_UNAVAILABLE_JSON)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("drift function %s", message)));
	return DirectFunctionCall2(jsonb_concat,
							   psg_jsonb_from_text(psg_json_object(fields, 3, false)),
							   analysis_jsonb(an, total_ms));
}

/* The SQLSTATE of a transport failure. */
static int
failure_sqlstate(PsgHttpFailure failure)
{
	switch (failure)
	{
		case PSG_HTTP_TIMEOUT:
			return ERRCODE_QUERY_CANCELED;
		case PSG_HTTP_CONNECT:
			return ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
		case PSG_HTTP_UNAVAILABLE:
			return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		default:
			return ERRCODE_CONNECTION_FAILURE;
	}
}

Datum
psg_analysis_result(const PsgAnalysis *an, bool posted, const PsgHttpResponse *resp,
					instr_time start)
{
	const char *problem;
	Datum		answer;

	if (!posted)
	{
		/* A transport that cannot be used is the setup's fault, never "unavailable". */
		if (resp->failure == PSG_HTTP_UNAVAILABLE)
			ereport(ERROR,
					(errcode(failure_sqlstate(resp->failure)), errmsg("%s", resp->message)));
		return endpoint_failed(an, failure_sqlstate(resp->failure), resp->message,
							   psg_elapsed_ms(start));
	}
	if (resp->status < 200 || resp->status > 299)
		return endpoint_failed(an, ERRCODE_CONNECTION_FAILURE,
							   psprintf("answered HTTP status %ld", resp->status),
							   psg_elapsed_ms(start));
	answer = parse_answer(resp->body, resp->body_len, &problem);
	if (problem != NULL)
		return endpoint_failed(an, ERRCODE_CONNECTION_FAILURE, problem, psg_elapsed_ms(start));
	return DirectFunctionCall2(jsonb_concat, answer, analysis_jsonb(an, psg_elapsed_ms(start)));
}
