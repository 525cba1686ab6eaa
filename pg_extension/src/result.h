/*
 * result.h — what perform_drift_analysis returns for the function's answer.
 */
#ifndef PSG_RESULT_H
#define PSG_RESULT_H

#include "postgres.h"

#include "portability/instr_time.h"

#include "analysis.h"
#include "transport.h"

/*
 * The result (jsonb) for the outcome of the POST: the function's verdict
 * with an "analysis" object added, or, when the endpoint failed or lied, an
 * ERROR, or a JSON status with pg_stat_guard.on_unavailable = json.  start
 * is when the call began (for timings_ms.total).
 */
extern Datum psg_analysis_result(const PsgAnalysis *an, bool posted,
								 const PsgHttpResponse *resp, instr_time start);

#endif							/* PSG_RESULT_H */
