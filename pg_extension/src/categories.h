/*
 * categories.h — categorical value columns counted into bounded category
 * tables (category_table.h, docs/analysis.md "Categorical columns").
 */
#ifndef PSG_CATEGORIES_H
#define PSG_CATEGORIES_H

#include "analysis.h"

/*
 * A text, varchar or char value longer than PSG_CATEGORY_SHORTEN_BYTES is
 * counted under its first PSG_CATEGORY_PREFIX_CHARS characters, "..." and the
 * MD5 of the whole value, so long values stay apart in at most 227 bytes.
 * Python's stat_guard.categories.category_key is the same rule.
 */
#define PSG_CATEGORY_SHORTEN_BYTES 256
#define PSG_CATEGORY_PREFIX_CHARS 48

/*
 * Every categorical column's current table and, for columns without a stored
 * baseline, the previous window's table (provenance set), one scan per
 * window.  The current table counts every category its baseline names
 * exactly.  Sets an->rows when no numeric column did.  Must be connected to
 * SPI; the tables' bytes go to keep.
 */
extern void psg_aggregate_categories(PsgAnalysis *an, const char *time_column_sql,
									 const char *time_cast, bool rows_known,
									 MemoryContext keep);

/*
 * Check the bytes of a stored category table; an ERROR (data_corrupted)
 * naming the column when they are not one.
 */
extern void psg_check_stored_categories(const char *bytes, size_t len, const char *column);

#endif							/* PSG_CATEGORIES_H */
