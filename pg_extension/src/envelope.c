/*
 * envelope.c — the request body: one PSGE envelope (docs/wire-format.md,
 * section 3) with the metadata as compact JSON with sorted keys, then each
 * column's current and baseline entry in column order.  Version 1 when every
 * column is numeric (digests only: the bytes an analysis of numbers always
 * sent), version 2 when one is categorical: each entry then says its kind,
 * digest or category table.  Integers are little endian, as in the digests.
 */
#include "postgres.h"

#include "baselines.h"
#include "envelope.h"
#include "guc.h"
#include "pg_stat_guard.h"

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

int
psg_request_fields(const PsgAnalysis *an, PsgJsonField *fields, const char **baseline_kind)
{
	int			n = 0;

	fields[n++] = (PsgJsonField) {"source", psg_json_string(an->source)};
	fields[n++] = (PsgJsonField) {"time_column", psg_json_string(an->time_column)};
	fields[n++] = (PsgJsonField) {"window_start", psg_json_timestamp(an->window_start)};
	fields[n++] = (PsgJsonField) {"window_end", psg_json_timestamp(an->window_end)};
	fields[n++] = (PsgJsonField) {"baselines", psg_baselines_json(an, baseline_kind)};
	fields[n++] = (PsgJsonField) {"compression", psg_json_int(an->compression)};
	fields[n++] = (PsgJsonField) {"request_id", psg_json_string(an->request_id)};
	if (an->ncategorical > 0)
		fields[n++] = (PsgJsonField) {"max_categories", psg_json_int(an->max_categories)};
	Assert(n <= PSG_REQUEST_FIELDS);
	return n;
}

/*
 * The request's fields, the baselines' kind, the client and the largest answer this
 * session accepts (pg_stat_guard.max_response_bytes: the function keeps its display
 * summaries within half of it), keys sorted.
 */
static char *
envelope_metadata(const PsgAnalysis *an)
{
	PsgJsonField fields[PSG_REQUEST_FIELDS + 3];
	PsgJsonField baseline;
	const char *kind;
	int			n = psg_request_fields(an, fields, &kind);

	baseline = (PsgJsonField) {"kind", psg_json_string(kind)};
	fields[n++] = (PsgJsonField) {"baseline", psg_json_object(&baseline, 1, false)};
	fields[n++] = (PsgJsonField) {"client", psg_json_string(PSG_CLIENT_NAME)};
	fields[n++] = (PsgJsonField) {"max_response_bytes",
		psg_json_int((int64) psg_max_response_bytes)};
	return psg_json_object(fields, n, true);
}

/* One entry; version 2 entries say their kind after the role. */
static void
append_entry(StringInfo buf, int version, const PsgAnalysisColumn *col, uint8 role,
			 const char *body, size_t len)
{
	size_t		name_len = strlen(col->name);

	append_u16(buf, (uint16) name_len);
	appendBinaryStringInfo(buf, col->name, name_len);
	appendStringInfoChar(buf, (char) role);
	if (version == PSG_ENVELOPE_VERSION)
		appendStringInfoChar(buf, (char) col->kind);
	append_u32(buf, (uint32) len);
	appendBinaryStringInfo(buf, body, len);
}

StringInfo
psg_build_envelope(const PsgAnalysis *an)
{
	StringInfo	buf = makeStringInfo();
	char	   *meta = envelope_metadata(an);
	size_t		meta_len = strlen(meta);
	int			version = an->ncategorical > 0 ? PSG_ENVELOPE_VERSION : PSG_NUMERIC_ENVELOPE_VERSION;
	int			c;

	if (meta_len > PSG_ENVELOPE_MAX_METADATA)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("analysis metadata of %zu bytes exceeds the envelope limit", meta_len)));
	appendBinaryStringInfo(buf, "PSGE", 4);
	appendStringInfoChar(buf, (char) version);
	appendStringInfoChar(buf, 0);	/* flags */
	append_u16(buf, 0);			/* reserved */
	append_u32(buf, (uint32) meta_len);
	appendBinaryStringInfo(buf, meta, meta_len);
	append_u32(buf, (uint32) (2 * an->ncolumns));
	for (c = 0; c < an->ncolumns; c++)
	{
		const PsgAnalysisColumn *col = &an->columns[c];

		append_entry(buf, version, col, 0, col->current, col->current_len);
		append_entry(buf, version, col, 1, col->baseline, col->baseline_len);
	}
	return buf;
}
