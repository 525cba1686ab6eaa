/*
 * category_table.h — the category counts of one column in one window and
 * their wire form, the PSGC table (docs/wire-format.md, section 3.2): named
 * categories with exact counts in canonical order (most frequent first, ties
 * by their bytes), the rest pooled as one count, and the NULLs.
 *
 * Pure C: no PostgreSQL headers, no allocation.  Callers own every array and
 * the bytes of every name, so the same code runs inside a backend and in the
 * stand-alone unit test (test/c/test_category_table.c).  Python's
 * stat_guard.wire reads and writes the same bytes.
 */
#ifndef PSG_CATEGORY_TABLE_H
#define PSG_CATEGORY_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CT_VERSION				1
#define CT_HEADER_SIZE			36
#define CT_ENTRY_MIN_SIZE		10	/* u16 length, no bytes, u64 count */
#define CT_MAX_CATEGORIES		4096	/* named in one table */
#define CT_MAX_CATEGORY_BYTES	1024
#define CT_ERRMSG_SIZE			160

/* One named category: its UTF-8 bytes (not NUL-terminated) and its count. */
typedef struct CtCategory
{
	const uint8_t *bytes;
	uint32_t	len;
	uint64_t	count;
} CtCategory;

/* A table whose categories (and their bytes) belong to someone else. */
typedef struct CtTable
{
	uint64_t	missing;		/* NULLs */
	uint64_t	other_count;	/* values of the categories not named */
	uint64_t	other_distinct; /* how many such categories */
	uint32_t	n;
	const CtCategory *categories;
} CtTable;

/* Byte order of two names: memcmp, a prefix first. */
extern int	ct_compare_bytes(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen);

/* Canonical order: < 0 when a comes first (higher count, or equal count and smaller bytes). */
extern int	ct_compare(const CtCategory *a, const CtCategory *b);

/* Sort into canonical order. */
extern void ct_sort(CtCategory *categories, uint32_t n);

/* Sort by bytes alone, for ct_find. */
extern void ct_sort_by_bytes(CtCategory *categories, uint32_t n);

/* Index of the name in categories sorted by bytes, or -1. */
extern int64_t ct_find(const CtCategory *sorted, uint32_t n, const uint8_t *bytes, uint32_t len);

/*
 * Strict UTF-8, as Python's decoder: no overlong forms, no UTF-16
 * surrogates, nothing above U+10FFFF, no truncated sequence.
 */
extern bool ct_valid_utf8(const uint8_t *s, size_t len);

/*
 * Every rule of section 3.2 that does not concern bytes: names valid UTF-8
 * without NUL and at most CT_MAX_CATEGORY_BYTES, counts >= 1, strictly in
 * canonical order, at most CT_MAX_CATEGORIES, other_distinct 0 exactly when
 * other_count is and never above it, all counts summing within 64 bits.
 */
extern bool ct_validate(const CtTable *t, char *err, size_t errlen);

/* Exact size of the encoding. */
extern size_t ct_encoded_size(const CtTable *t);

/* Write the encoding of a valid table to out (ct_encoded_size bytes). */
extern size_t ct_encode(const CtTable *t, uint8_t *out);

/*
 * First step of decoding: the fixed header (magic, version, reserved fields,
 * pooled counts) and that the input can hold the number of categories it
 * announces (header + 10n <= len), so a caller may allocate n categories.
 */
extern bool ct_decode_header(const uint8_t *buf, size_t len, CtTable *t, char *err,
							 size_t errlen);

/*
 * Second step: the t->n categories into out, their bytes pointing into buf,
 * then every rule (ct_validate, no trailing bytes).
 */
extern bool ct_decode_categories(const uint8_t *buf, size_t len, CtTable *t, CtCategory *out,
								 char *err, size_t errlen);

/*
 * The `cap` categories that come first in canonical order among those
 * offered, in a heap whose root is the one that would be dropped next.
 */
typedef struct CtTopK
{
	CtCategory *heap;			/* cap slots */
	uint32_t	n;
	uint32_t	cap;
} CtTopK;

/* Whether an offered category would be kept. */
extern bool ct_topk_admits(const CtTopK *t, const CtCategory *c);

/*
 * Keep an admitted category (its bytes must outlive the heap).  When the
 * heap was full, the category it drops is written to *dropped and true is
 * returned.
 */
extern bool ct_topk_insert(CtTopK *t, const CtCategory *c, CtCategory *dropped);

#endif							/* PSG_CATEGORY_TABLE_H */
