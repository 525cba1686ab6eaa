/*
 * analysis.h — one perform_drift_analysis call, as the files that carry it
 * out share it:
 *
 *   analysis.c      SQL entry points, argument and privilege checks, the steps
 *   slots.c         concurrency slots
 *   baselines.c     stored baselines, and where each column's baseline came from
 *   window.c        the window (and the previous one) aggregated into digests
 *   window_cache.c  settled buckets: which ones a window uses, and their storage
 *   envelope.c      the request body
 *   result.c        the answer checked, the result built
 */
#ifndef PSG_ANALYSIS_H
#define PSG_ANALYSIS_H

#include "postgres.h"

#include "access/attnum.h"
#include "datatype/timestamp.h"
#include "portability/instr_time.h"

#define PSG_MAX_ANALYSIS_COLUMNS 256

/* One value column. */
typedef struct PsgAnalysisColumn
{
	char	   *name;
	AttrNumber	attnum;
	bool		has_stored;		/* a stored baseline exists */
	char	   *baseline_json;	/* the baseline's provenance, a JSON object */
	/* digest bytes (wire format), allocated in the call's context */
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

#endif							/* PSG_ANALYSIS_H */
