/*
 * slots.h — at most pg_stat_guard.max_concurrent analyses at once in the cluster.
 */
#ifndef PSG_SLOTS_H
#define PSG_SLOTS_H

/* A free slot, or an ERROR ("busy", 53400) at once when there is none. */
extern int	psg_acquire_slot(void);

extern void psg_release_slot(int slot);

#endif							/* PSG_SLOTS_H */
