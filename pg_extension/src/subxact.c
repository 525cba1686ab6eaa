/*
 * subxact.c — begin, end and abort an internal subtransaction, restoring the
 * caller's memory context and resource owner each time.
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/memutils.h"

#include "subxact.h"

PsgSubxact
psg_subxact_begin(void)
{
	PsgSubxact	sx;

	sx.caller_cxt = CurrentMemoryContext;
	sx.caller_owner = CurrentResourceOwner;
	BeginInternalSubTransaction(NULL);
	/* Work allocates in the caller's context, so results survive the rollback. */
	MemoryContextSwitchTo(sx.caller_cxt);
	return sx;
}

void
psg_subxact_end(const PsgSubxact *sx, bool rollback)
{
	if (rollback)
		RollbackAndReleaseCurrentSubTransaction();
	else
		ReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(sx->caller_cxt);
	CurrentResourceOwner = sx->caller_owner;
}

ErrorData *
psg_subxact_abort(const PsgSubxact *sx)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(sx->caller_cxt);
	edata = CopyErrorData();
	FlushErrorState();
	RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(sx->caller_cxt);
	CurrentResourceOwner = sx->caller_owner;
	return edata;
}
