/*
 * subxact.h — the internal-subtransaction idiom in one place.
 *
 *     PsgSubxact sx = psg_subxact_begin();
 *     PG_TRY();
 *     {
 *         ... work ...
 *         psg_subxact_end(&sx, rollback);
 *     }
 *     PG_CATCH();
 *     {
 *         ErrorData *edata = psg_subxact_abort(&sx);
 *         ... rethrow or turn edata into a result ...
 *     }
 *     PG_END_TRY();
 *
 * After each of end/abort the caller's memory context and resource owner are back.
 */
#ifndef PSG_SUBXACT_H
#define PSG_SUBXACT_H

#include "postgres.h"

#include "utils/elog.h"
#include "utils/resowner.h"

typedef struct PsgSubxact
{
	MemoryContext caller_cxt;
	ResourceOwner caller_owner;
} PsgSubxact;

extern PsgSubxact psg_subxact_begin(void);

/* Commit (rollback = false) or roll back (true) a subtransaction that succeeded. */
extern void psg_subxact_end(const PsgSubxact *sx, bool rollback);

/* In PG_CATCH: copy the error out, roll the subtransaction back, return the error. */
extern ErrorData *psg_subxact_abort(const PsgSubxact *sx);

#endif							/* PSG_SUBXACT_H */
