/*
 * slots.c — concurrency slots of perform_drift_analysis.
 *
 * A slot is a session-level advisory lock tried without waiting, so a caller
 * over pg_stat_guard.max_concurrent is told "busy" at once instead of queuing,
 * and nothing needs shared_preload_libraries.  The lock tag's fourth field
 * keeps ours apart from user advisory locks (which use 1 and 2).
 */
#include "postgres.h"

#include "storage/lock.h"

#include "guc.h"
#include "slots.h"

#define PSG_LOCK_FIELD4 7
#define PSG_LOCK_KEY1 0x70736767	/* "psgg" */

static void
slot_tag(LOCKTAG *tag, int slot)
{
	SET_LOCKTAG_ADVISORY(*tag, InvalidOid, PSG_LOCK_KEY1, (uint32) slot, PSG_LOCK_FIELD4);
}

int
psg_acquire_slot(void)
{
	int			slot;

	for (slot = 0; slot < psg_max_concurrent; slot++)
	{
		LOCKTAG		tag;

		slot_tag(&tag, slot);
		if (LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
			return slot;
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("pg_stat_guard is busy: %d analyses are already running",
					psg_max_concurrent),
			 errhint("Retry later, or raise pg_stat_guard.max_concurrent.")));
	return -1;					/* not reached */
}

void
psg_release_slot(int slot)
{
	LOCKTAG		tag;

	slot_tag(&tag, slot);
	LockRelease(&tag, ExclusiveLock, true);
}
