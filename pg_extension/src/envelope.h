/*
 * envelope.h — the request body (docs/wire-format.md, section 3) and the
 * description of the request it carries.
 */
#ifndef PSG_ENVELOPE_H
#define PSG_ENVELOPE_H

#include "postgres.h"

#include "lib/stringinfo.h"

#include "analysis.h"
#include "json_object.h"

/* Written when a column is categorical; version 1 when every column is numeric. */
#define PSG_ENVELOPE_VERSION 2
#define PSG_NUMERIC_ENVELOPE_VERSION 1

/* Envelope limits (docs/wire-format.md, section 5). */
#define PSG_ENVELOPE_MAX_ENTRIES 4096
#define PSG_ENVELOPE_MAX_NAME 1024
#define PSG_ENVELOPE_MAX_METADATA 65536

/* How many fields psg_request_fields writes at most. */
#define PSG_REQUEST_FIELDS 8

/*
 * The request described as JSON fields: source, time column, window,
 * compression, request id, each column's baseline and, when a column is
 * categorical, max_categories.  The envelope's
 * metadata carries them and the result's "analysis" object repeats them, so
 * both say the same.  Returns the number written; *baseline_kind sums up the
 * columns' baselines.
 */
extern int	psg_request_fields(const PsgAnalysis *an, PsgJsonField *fields,
							   const char **baseline_kind);

/* The envelope of the analysis's digests, ready to POST. */
extern StringInfo psg_build_envelope(const PsgAnalysis *an);

#endif							/* PSG_ENVELOPE_H */
