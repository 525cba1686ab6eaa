/*
 * function_target.h — the drift function's URL and key for this database.
 *
 * Each is, in this order: the value a superuser stored for the database with
 * pg_stat_guard_set_function_url() / pg_stat_guard_set_function_key() (the
 * extension's table pg_stat_guard_function, readable by superusers only),
 * else the setting pg_stat_guard.function_url / .function_key as PostgreSQL
 * resolved it for the session.
 */
#ifndef PSG_FUNCTION_TARGET_H
#define PSG_FUNCTION_TARGET_H

#include "postgres.h"

/* Longest accepted URL and key, in bytes. */
#define PSG_MAX_FUNCTION_URL 2048
#define PSG_MAX_FUNCTION_KEY 1024

typedef struct PsgFunctionTarget
{
	char	   *url;			/* palloc'd; "" when not set anywhere */
	char	   *key;			/* palloc'd; "" for no x-functions-key header */
	bool		url_stored;		/* from the database's table, not the setting */
	bool		key_stored;
} PsgFunctionTarget;

/*
 * What is wrong with a URL or key, as a sentence without the value; NULL when
 * it is acceptable.  The settings' check hooks and the setters use them.
 */
extern const char *psg_function_url_problem(const char *url);
extern const char *psg_function_key_problem(const char *key);

/*
 * The URL and key for a call, the extension's objects being in namespace.
 * The key is never printed; clear it with psg_forget_function_key after use.
 */
extern void psg_resolve_function_target(Oid namespace, PsgFunctionTarget *target);
extern void psg_forget_function_key(PsgFunctionTarget *target);

#endif							/* PSG_FUNCTION_TARGET_H */
