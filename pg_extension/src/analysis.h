/*
 * analysis.h — perform_drift_analysis and what it shares with the transports.
 */
#ifndef PSG_ANALYSIS_H
#define PSG_ANALYSIS_H

#define PSG_EXTENSION_VERSION "0.1.0"

/* Envelope layout constants (docs/wire-format.md, section 3). */
#define PSG_ENVELOPE_MAX_ENTRIES 4096
#define PSG_ENVELOPE_MAX_NAME 1024
#define PSG_ENVELOPE_MAX_METADATA 65536
#define PSG_MAX_ANALYSIS_COLUMNS 256

#include <stdbool.h>

extern bool psg_library_preloaded(void);

#endif							/* PSG_ANALYSIS_H */
