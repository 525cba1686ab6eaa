/*
 * window_cache.h — per-backend cache of settled time buckets' digests: which
 * buckets a window uses, and their storage.
 */
#ifndef PSG_WINDOW_CACHE_H
#define PSG_WINDOW_CACHE_H

#include "postgres.h"

#include "access/attnum.h"
#include "datatype/timestamp.h"

/* One column of one bucket of one source, as the caller sees it. */
typedef struct PsgBucketKey
{
	Oid			relid;
	Oid			relfilenode;	/* TRUNCATE, VACUUM FULL, rewrites: a new one */
	Oid			userid;			/* privileges (and RLS) are per role */
	int32		padding;		/* zero: keys are hashed as bytes */
	int16		time_attnum;
	int16		value_attnum;
	int32		compression;
	int64		width;			/* bucket width, microseconds */
	TimestampTz start;			/* bucket start, a multiple of width */
} PsgBucketKey;

/* A time range [lo, hi) aggregated from the table itself. */
typedef struct PsgTimeRange
{
	TimestampTz lo;
	TimestampTz hi;
} PsgTimeRange;

/* A run of consecutive buckets of one width. */
typedef struct PsgBucketRun
{
	TimestampTz first;			/* first bucket start */
	int			n;
	int64		width;
} PsgBucketRun;

/*
 * One role's part of the window (the current window, or the previous one as
 * a baseline): raw ranges at the ends, settled buckets between.  The buckets
 * come in up to three runs: fine buckets up to the first block boundary,
 * whole blocks (PSG_CACHE_BLOCK fine buckets merged into one entry), fine
 * buckets after the last block; so a call merges at most about
 * 2 * PSG_CACHE_BLOCK + window / block digests per column, not one per bucket.
 */
typedef struct PsgWindowPlan
{
	PsgTimeRange raw[2];
	int			nraw;
	PsgBucketRun runs[3];
	int			nruns;
} PsgWindowPlan;

/*
 * The digests of one run's buckets, for every value column.  The caller sets
 * key (the source's fields; value_attnum, width and start are set per
 * bucket), attnums, ncolumns and run; psg_window_cache_lookup fills in the
 * rest.
 */
typedef struct PsgBucketSet
{
	PsgBucketKey key;
	const AttrNumber *attnums;	/* the value columns */
	int			ncolumns;
	PsgBucketRun run;
	int64	   *rows;			/* per bucket */
	const char **digest;		/* [bucket * ncolumns + column] */
	size_t	   *len;			/* 0: the bucket had no rows */
	bool	   *have;			/* per bucket: every column was cached */
	int			missing_lo;		/* first and last bucket not cached, -1: none */
	int			missing_hi;
} PsgBucketSet;

/*
 * Cut [lo, hi) into raw ranges and runs of buckets that ended before the
 * horizon (the settle time before the window's end).
 */
extern void psg_window_cache_plan(TimestampTz lo, TimestampTz hi, TimestampTz horizon,
								  int64 width, PsgWindowPlan *plan);

/*
 * Look every bucket of set->run up.  A bucket missing for any column counts
 * as not cached, with no rows: a scan of the table fills it in.
 */
extern void psg_window_cache_lookup(PsgBucketSet *set);

/* Store the buckets the lookup missed, once filled in; returns how many. */
extern int	psg_window_cache_store_missing(const PsgBucketSet *set);

/* Whether buckets of this source may be cached now (see window_cache.c). */
extern bool psg_window_cache_usable(Oid relid, Oid time_type);

/*
 * A cached bucket's row count and a copy of its digest in the current memory
 * context (len 0: the bucket had no rows).
 */
extern bool psg_window_cache_get(const PsgBucketKey *key, int64 *rows,
								 const char **digest, size_t *len);

/* Store a bucket; false when the cache is full (the caller just goes on). */
extern bool psg_window_cache_put(const PsgBucketKey *key, int64 rows,
								 const char *digest, size_t len);

/*
 * Drop this source's buckets that end at or before the given time, and those
 * of its earlier relfilenodes.
 */
extern void psg_window_cache_evict_before(Oid relid, Oid relfilenode, TimestampTz before);

/* The table's current relfilenode (InvalidOid when unknown). */
extern Oid	psg_relfilenode(Oid relid);

#endif							/* PSG_WINDOW_CACHE_H */
