/*
 * json_object.h — the JSON the analysis writes (compact objects built from
 * key/value fields) and reads (a key of a jsonb object).
 */
#ifndef PSG_JSON_OBJECT_H
#define PSG_JSON_OBJECT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* One member of an object: the key, and the value already as JSON text. */
typedef struct PsgJsonField
{
	const char *key;
	const char *value;
} PsgJsonField;

/* s as a JSON string, quoted and escaped. */
extern char *psg_json_string(const char *s);

/* ts in ISO 8601 with its offset, as JSON writes timestamps (not quoted). */
extern char *psg_iso_timestamp(TimestampTz ts);

/* The same as a JSON string. */
extern char *psg_json_timestamp(TimestampTz ts);

/* An integer as a JSON number. */
extern char *psg_json_int(int64 value);

/*
 * {"key":value,...} without spaces, members in the order given, or sorted by
 * key (fields is sorted in place then).
 */
extern char *psg_json_object(PsgJsonField *fields, int n, bool sort_keys);

/* JSON text as a jsonb datum (jsonb_in: errors as for any jsonb input). */
extern Datum psg_jsonb_from_text(const char *text);

/* The value of key in a jsonb object container; NULL if absent or not an object. */
extern JsonbValue *psg_jsonb_field(JsonbContainer *object, const char *key);

#endif							/* PSG_JSON_OBJECT_H */
