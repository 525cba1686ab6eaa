/*
 * window_cache.c — per-backend cache of settled time buckets' digests.
 *
 * An analysis run every second over the last 15 minutes re-reads the same
 * rows 900 times.  With pg_stat_guard.window_cache_bucket set, the window is
 * cut at multiples of that width: buckets that ended more than
 * pg_stat_guard.window_cache_settle ago are aggregated once, per value column,
 * and kept here as digests; each call aggregates only the partial buckets at
 * both ends of the window and merges the rest.  The assumption this rests on,
 * and which the documentation states: rows are committed within the settle
 * time of their timestamp, and are not deleted or updated afterwards.
 *
 * Nothing is shared between backends (no shared memory, no locks); entries
 * are keyed by the role too, so a role never reads rows aggregated with
 * another role's privileges, and by the table's relfilenode, so TRUNCATE,
 * VACUUM FULL, CLUSTER and rewriting ALTER TABLEs start afresh while ANALYZE
 * and VACUUM (which invalidate the relcache entry too, every few seconds under
 * heavy ingest) keep the cache.
 *
 * The planning lives here too, beside the storage it must agree with: which
 * part of a window is read as raw rows and which as settled buckets
 * (psg_window_cache_plan), and the lookups and stores of a run of buckets for
 * every value column.  window.c runs the SQL.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/hsearch.h"
#include "access/htup_details.h"
#include "utils/memutils.h"
#include "utils/rls.h"

#include "guc.h"
#include "window_cache.h"

/* A range longer than this many buckets is aggregated directly, not cached. */
#define PSG_CACHE_MAX_BUCKETS 10000
/* Fine buckets per cached block (see PsgWindowPlan). */
#define PSG_CACHE_BLOCK 60

/* ------------------------------------------------------------- storage */

typedef struct BucketEntry
{
	PsgBucketKey key;			/* hash key: must be first */
	int64		rows;
	size_t		len;
	char	   *digest;			/* len bytes in cache_context, NULL when len 0 */
} BucketEntry;

static HTAB *cache = NULL;
static MemoryContext cache_context = NULL;
static int64 cache_bytes = 0;

static void
drop_entry(BucketEntry *entry)
{
	cache_bytes -= (int64) (sizeof(BucketEntry) + entry->len);
	if (entry->digest != NULL)
		pfree(entry->digest);
	hash_search(cache, &entry->key, HASH_REMOVE, NULL);
}

static void
ensure_cache(void)
{
	HASHCTL		ctl;

	if (cache != NULL)
		return;
	if (cache_context == NULL)
		cache_context = AllocSetContextCreate(TopMemoryContext,
											  "pg_stat_guard window cache",
											  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(PsgBucketKey);
	ctl.entrysize = sizeof(BucketEntry);
	ctl.hcxt = cache_context;
	cache = hash_create("pg_stat_guard window cache", 256, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	cache_bytes = 0;
}

Oid
psg_relfilenode(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			result = InvalidOid;

	if (HeapTupleIsValid(tuple))
	{
		result = ((Form_pg_class) GETSTRUCT(tuple))->relfilenode;
		ReleaseSysCache(tuple);
	}
	return result;
}

/*
 * Usable when switched on, for plain tables (a view or a partitioned table
 * has no relfilenode that changes when the tables under it are truncated or
 * rewritten), timestamptz time columns (bucket bounds of a
 * timestamp without time zone would move with the session's TimeZone), on
 * tables without row-level security for this role, and in transactions that
 * have not written anything (their own uncommitted rows must not be cached,
 * nor missed).
 */
bool
psg_window_cache_usable(Oid relid, Oid time_type)
{
	if (psg_window_cache_bucket_s <= 0)
	{
		if (cache != NULL)
		{
			hash_destroy(cache);
			cache = NULL;
			MemoryContextReset(cache_context);
			cache_bytes = 0;
		}
		return false;
	}
	if (time_type != TIMESTAMPTZOID || get_rel_relkind(relid) != RELKIND_RELATION)
		return false;
	if (check_enable_rls(relid, InvalidOid, true) != RLS_NONE)
		return false;
	if (GetTopTransactionIdIfAny() != InvalidTransactionId)
		return false;
	ensure_cache();
	return true;
}

bool
psg_window_cache_get(const PsgBucketKey *key, int64 *rows, const char **digest, size_t *len)
{
	BucketEntry *entry;

	if (cache == NULL)
		return false;
	entry = hash_search(cache, key, HASH_FIND, NULL);
	if (entry == NULL)
		return false;
	*rows = entry->rows;
	*len = entry->len;
	*digest = NULL;
	if (entry->len > 0)
	{
		/* A copy: the caller may store new entries before it merges this. */
		char	   *copy = palloc(entry->len);

		memcpy(copy, entry->digest, entry->len);
		*digest = copy;
	}
	return true;
}

bool
psg_window_cache_put(const PsgBucketKey *key, int64 rows, const char *digest, size_t len)
{
	BucketEntry *entry;
	bool		found;
	int64		limit = (int64) psg_window_cache_size_kb * 1024;
	char	   *copy = NULL;

	if (cache == NULL)
		return false;
	if (cache_bytes + (int64) (sizeof(BucketEntry) + len) > limit)
		return false;
	if (len > 0)
	{
		copy = MemoryContextAlloc(cache_context, len);
		memcpy(copy, digest, len);
	}
	entry = hash_search(cache, key, HASH_ENTER, &found);
	if (found)
	{
		cache_bytes -= (int64) (sizeof(BucketEntry) + entry->len);
		if (entry->digest != NULL)
			pfree(entry->digest);
	}
	entry->rows = rows;
	entry->len = len;
	entry->digest = copy;
	cache_bytes += (int64) (sizeof(BucketEntry) + len);
	return true;
}

void
psg_window_cache_evict_before(Oid relid, Oid relfilenode, TimestampTz before)
{
	HASH_SEQ_STATUS status;
	BucketEntry *entry;

	if (cache == NULL)
		return;
	hash_seq_init(&status, cache);
	while ((entry = hash_seq_search(&status)) != NULL)
		if (entry->key.relid == relid &&
			(entry->key.relfilenode != relfilenode ||
			 entry->key.start + entry->key.width <= before))
			drop_entry(entry);
}

/* ------------------------------------------------------------ planning */

static TimestampTz
floor_to(TimestampTz t, int64 width)
{
	TimestampTz q = t / width;

	if (t % width != 0 && t < 0)
		q--;
	return q * width;
}

static TimestampTz
ceil_to(TimestampTz t, int64 width)
{
	TimestampTz f = floor_to(t, width);

	return f < t ? f + width : f;
}

static void
add_run(PsgWindowPlan *plan, TimestampTz lo, TimestampTz hi, int64 width)
{
	if (hi > lo)
		plan->runs[plan->nruns++] = (PsgBucketRun) {lo, (int) ((hi - lo) / width), width};
}

void
psg_window_cache_plan(TimestampTz lo, TimestampTz hi, TimestampTz horizon, int64 width,
					  PsgWindowPlan *plan)
{
	TimestampTz first = ceil_to(lo, width);
	TimestampTz end = floor_to(Min(hi, horizon), width);
	int64		block = width * PSG_CACHE_BLOCK;

	plan->nraw = 0;
	plan->nruns = 0;
	if (end <= first || (end - first) / width > PSG_CACHE_MAX_BUCKETS)
	{
		plan->raw[plan->nraw++] = (PsgTimeRange) {lo, hi};
		return;
	}
	if (lo < first)
		plan->raw[plan->nraw++] = (PsgTimeRange) {lo, first};
	if (end < hi)
		plan->raw[plan->nraw++] = (PsgTimeRange) {end, hi};
	if (ceil_to(first, block) < floor_to(end, block))
	{
		add_run(plan, first, ceil_to(first, block), width);
		add_run(plan, ceil_to(first, block), floor_to(end, block), block);
		add_run(plan, floor_to(end, block), end, width);
	}
	else
		add_run(plan, first, end, width);
}

/* ----------------------------------------------------- a run's buckets */

static PsgBucketKey
set_bucket_key(const PsgBucketSet *set, int bucket, int column)
{
	PsgBucketKey key = set->key;

	key.value_attnum = set->attnums[column];
	key.width = set->run.width;
	key.start = set->run.first + bucket * set->run.width;
	return key;
}

void
psg_window_cache_lookup(PsgBucketSet *set)
{
	int			n = Max(set->run.n, 1);
	int			b,
				c;

	set->rows = palloc0(sizeof(int64) * n);
	set->digest = palloc0(sizeof(char *) * n * set->ncolumns);
	set->len = palloc0(sizeof(size_t) * n * set->ncolumns);
	set->have = palloc0(sizeof(bool) * n);
	set->missing_lo = set->missing_hi = -1;
	for (b = 0; b < set->run.n; b++)
	{
		bool		all = true;

		for (c = 0; c < set->ncolumns && all; c++)
		{
			PsgBucketKey key = set_bucket_key(set, b, c);

			all = psg_window_cache_get(&key, &set->rows[b],
									   &set->digest[b * set->ncolumns + c],
									   &set->len[b * set->ncolumns + c]);
		}
		set->have[b] = all;
		if (all)
			continue;
		/* Until a scan says otherwise, the bucket had no rows. */
		set->rows[b] = 0;
		for (c = 0; c < set->ncolumns; c++)
			set->len[b * set->ncolumns + c] = 0;
		if (set->missing_lo < 0)
			set->missing_lo = b;
		set->missing_hi = b;
	}
}

int
psg_window_cache_store_missing(const PsgBucketSet *set)
{
	int			stored = 0;
	int			b,
				c;

	for (b = set->missing_lo; b >= 0 && b <= set->missing_hi; b++)
	{
		if (set->have[b])
			continue;
		stored++;
		for (c = 0; c < set->ncolumns; c++)
		{
			PsgBucketKey key = set_bucket_key(set, b, c);

			(void) psg_window_cache_put(&key, set->rows[b], set->digest[b * set->ncolumns + c],
										set->len[b * set->ncolumns + c]);
		}
	}
	return stored;
}
