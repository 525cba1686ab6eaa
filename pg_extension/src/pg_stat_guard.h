/*
 * pg_stat_guard.h — declarations shared by the extension's C files.
 */
#ifndef PG_STAT_GUARD_H
#define PG_STAT_GUARD_H

#include "postgres.h"

#include "tdigest.h"

#if PG_VERSION_NUM < 130000
#error "pg_stat_guard needs PostgreSQL 13 or later"
#endif

/*
 * The version, default_version of pg_stat_guard.control: the Makefile passes it
 * in, so the control file is its only source.
 */
#ifndef PSG_EXTENSION_VERSION
#error "PSG_EXTENSION_VERSION is defined by the Makefile (from pg_stat_guard.control)"
#endif

/* Writer and version: the envelope's "client" and the HTTP User-Agent. */
#define PSG_CLIENT_NAME "pg_stat_guard/" PSG_EXTENSION_VERSION

/*
 * The one default compression: tdigest_agg(value) (as its SQL comment says)
 * and pg_stat_guard.compression (the analysis's window digests and captured
 * baselines).  Python's stat_guard.tdigest.DEFAULT_COMPRESSION is the same
 * number (tests/extension/test_defaults.py); chosen with the accuracy sweep
 * of docs/statistics.md and bench/bench_extension.py.
 */
#define PSG_DEFAULT_COMPRESSION 40

/*
 * Categories named per categorical column and window (pg_stat_guard.max_
 * categories; a current window also names every category its baseline
 * names).  The default is Python's stat_guard.categories.DEFAULT_MAX_
 * CATEGORIES, the scheduled engine's bound too.  At most 1000 keeps a
 * current table (baseline's names plus its own) within the wire format's
 * 4096 categories.
 */
#define PSG_DEFAULT_MAX_CATEGORIES 200
#define PSG_MIN_MAX_CATEGORIES 10
#define PSG_MAX_MAX_CATEGORIES 1000

/*
 * The tdigest type is a varlena whose payload IS the wire-format digest
 * (version 3), always in canonical form, so send and the bytea cast copy
 * bytes; recv and the cast from bytea also read versions 1 and 2 and store
 * them as version 3.  Values stored by an earlier release keep their
 * version 2 payload (every reader reads it) until they are rewritten.
 */
#define DatumGetTDigestPP(d)	((struct varlena *) PG_DETOAST_DATUM_PACKED(d))
#define PG_GETARG_TDIGEST_PP(n) DatumGetTDigestPP(PG_GETARG_DATUM(n))

/* Canonical encoding of d as a varlena (the type's and bytea's layout). */
extern struct varlena *psg_digest_to_varlena(const TdDigest *d);

/*
 * Decode and validate wire bytes into d, with centroid arrays palloc'd in
 * CurrentMemoryContext.  Errors are raised with the given SQLSTATE.
 */
extern void psg_decode_bytes(const uint8 *bytes, size_t len, TdDigest *d,
							 int errcode_on_failure);

/* Decode a stored tdigest value (trusted, but still checked). */
extern void psg_decode_tdigest(struct varlena *v, TdDigest *d);

/* Free the arrays psg_decode_* allocated. */
extern void psg_free_digest(TdDigest *d);

/* Merge wire-format digests (tdigest_agg.c); zero lengths are skipped. */
extern struct varlena *psg_merge_digest_bytes(int n, const char *const *bufs,
											 const size_t *lens, int compression);

#endif							/* PG_STAT_GUARD_H */
