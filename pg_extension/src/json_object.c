/*
 * json_object.c — JSON objects of the analysis: the envelope's metadata, the
 * baselines' provenance and the result's "analysis" object are each built
 * from a list of fields here, so every key is written in one place and
 * escaped one way.  Reading goes through the jsonb API.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "json_object.h"

char *
psg_json_string(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}

char *
psg_iso_timestamp(TimestampTz ts)
{
	char		buf[MAXDATELEN + 1];

	JsonEncodeDateTime(buf, TimestampTzGetDatum(ts), TIMESTAMPTZOID, NULL);
	return pstrdup(buf);
}

char *
psg_json_timestamp(TimestampTz ts)
{
	return psg_json_string(psg_iso_timestamp(ts));
}

char *
psg_json_int(int64 value)
{
	return psprintf(INT64_FORMAT, value);
}

static int
compare_keys(const void *a, const void *b)
{
	return strcmp(((const PsgJsonField *) a)->key, ((const PsgJsonField *) b)->key);
}

char *
psg_json_object(PsgJsonField *fields, int n, bool sort_keys)
{
	StringInfoData buf;
	int			i;

	if (sort_keys)
		qsort(fields, n, sizeof(PsgJsonField), compare_keys);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, fields[i].key);
		appendStringInfoChar(&buf, ':');
		appendStringInfoString(&buf, fields[i].value);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

Datum
psg_jsonb_from_text(const char *text)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
}

JsonbValue *
psg_jsonb_field(JsonbContainer *object, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(object, JB_FOBJECT, &k);
}
