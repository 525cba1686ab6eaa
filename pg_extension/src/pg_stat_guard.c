/*
 * pg_stat_guard.c — module entry point.
 */
#include "postgres.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Nothing to set up yet: the digest type and aggregates need no shared
 * state.  Configuration (endpoints, limits) is registered here as it lands.
 */
void
_PG_init(void)
{
}
