/*
 * analysis.h — one perform_drift_analysis call, as the files that carry it
 * out share it:
 *
 *   analysis.c      SQL entry points, argument and privilege checks, the steps
 *   slots.c         concurrency slots
 *   baselines.c     stored baselines, and where each column's baseline came from
 *   window.c        the window (and the previous one) aggregated into digests
 *   window_cache.c  settled buckets: which ones a window uses, and their storage
 *   categories.c    categorical columns counted into bounded tables
 *   envelope.c      the request body
 *   result.c        the answer checked, the result built
 */
#ifndef PSG_ANALYSIS_H
#define PSG_ANALYSIS_H

#include "postgres.h"

#include "access/attnum.h"
#include "datatype/timestamp.h"
#include "portability/instr_time.h"
#include "utils/array.h"

#define PSG_MAX_ANALYSIS_COLUMNS 256

/* What a value column is analysed as: the envelope's entry kinds (docs/wire-format.md). */
typedef enum PsgColumnKind
{
	PSG_KIND_NUMERIC = 0,		/* t-digests */
	PSG_KIND_CATEGORICAL = 1	/* category count tables */
} PsgColumnKind;

/* One value column. */
typedef struct PsgAnalysisColumn
{
	char	   *name;
	AttrNumber	attnum;
	PsgColumnKind kind;
	bool		text_like;		/* text, varchar, char: long values shortened */
	bool		has_stored;		/* a stored baseline exists */
	char	   *baseline_json;	/* the baseline's provenance, a JSON object */
	/* digest or category table bytes (wire format), in the call's context */
	char	   *current;
	size_t		current_len;
	char	   *baseline;
	size_t		baseline_len;
} PsgAnalysisColumn;

typedef struct PsgAnalysis
{
	Oid			relid;
	Oid			func_namespace; /* where our aggregate lives */
	char	   *source;			/* schema-qualified, quoted */
	char	   *time_column;
	AttrNumber	time_attnum;
	Oid			time_type;
	Oid			relfilenode;	/* for the window cache's keys */
	int			ncolumns;
	PsgAnalysisColumn *columns;
	int			ncategorical;	/* columns of kind PSG_KIND_CATEGORICAL */
	int			max_categories; /* named per categorical column and window */
	TimestampTz window_start;
	TimestampTz window_end;
	TimestampTz fallback_start; /* start of the previous window */
	int			compression;
	int64		rows;
	double		aggregate_ms;
	double		http_ms;
	/* window cache: bucket width (0: not used), buckets merged, buckets aggregated */
	int			cache_bucket_s;
	int			cache_buckets;
	int			cache_filled;
	char		request_id[33];
	const char *transport_name;
} PsgAnalysis;

/* Milliseconds since start. */
extern double psg_elapsed_ms(instr_time start);

/*
 * Argument checks shared with capture's category counts: the source and its
 * time column, then the value columns, their kinds (integer columns named in
 * category_names are categorical) and SELECT on each.
 */
extern void psg_resolve_source(PsgAnalysis *an, Oid relid, const char *time_column);
extern void psg_resolve_columns(PsgAnalysis *an, char **names, int n, char **category_names,
								int ncategory);

/* A name[] argument as C strings; NULL elements are refused, naming the argument. */
extern char **psg_name_array(ArrayType *array, const char *argument, int *n);

#endif							/* PSG_ANALYSIS_H */
