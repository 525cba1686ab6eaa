/*
 * pg_stat_guard.c — module entry point.
 */
#include "postgres.h"

#include "fmgr.h"

#include "guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * The digest type and aggregates need no shared state; the on-demand
 * analysis registers its settings (pg_stat_guard.*).  Nothing here needs
 * shared_preload_libraries: concurrency slots are advisory locks.
 */
void
_PG_init(void)
{
	psg_define_gucs();
}
