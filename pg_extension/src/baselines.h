/*
 * baselines.h — what each column's current window is compared with, and
 * where that baseline came from.
 */
#ifndef PSG_BASELINES_H
#define PSG_BASELINES_H

#include "analysis.h"

/*
 * Copy the stored baselines of the analysed columns into keep (digest and
 * provenance; has_stored set).  Must be connected to SPI.
 */
extern void psg_load_stored_baselines(PsgAnalysis *an, MemoryContext keep);

/* Provenance of a previous-window baseline, a JSON object in keep. */
extern char *psg_previous_window_provenance(const PsgAnalysis *an, MemoryContext keep);

/*
 * Every column's provenance as one JSON object (column order), and the kind
 * that sums them up: "stored", "previous_window" or "mixed".
 */
extern char *psg_baselines_json(const PsgAnalysis *an, const char **summary_kind);

#endif							/* PSG_BASELINES_H */
