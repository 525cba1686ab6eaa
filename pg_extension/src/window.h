/*
 * window.h — the analysed window aggregated into one digest (numeric) or
 * category table (categorical) per column, and the previous window for
 * columns without a stored baseline.
 */
#ifndef PSG_WINDOW_H
#define PSG_WINDOW_H

#include "analysis.h"

/*
 * Fill every column's current (and missing baseline) digest, the row count
 * and the aggregation time.  The reads run in a subtransaction that is rolled
 * back, so no lock taken on the source outlives this call.
 */
extern void psg_aggregate_window(PsgAnalysis *an);

/* The cast that makes a timestamptz parameter compare with the time column. */
extern const char *psg_time_cast(const PsgAnalysis *an);

#endif							/* PSG_WINDOW_H */
