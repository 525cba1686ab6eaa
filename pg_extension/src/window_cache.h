/*
 * window_cache.h — per-backend cache of settled time buckets' digests.
 */
#ifndef PSG_WINDOW_CACHE_H
#define PSG_WINDOW_CACHE_H

#include "postgres.h"

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
