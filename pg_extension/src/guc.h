/*
 * guc.h — settings of the on-demand analysis (pg_stat_guard.*).
 */
#ifndef PSG_GUC_H
#define PSG_GUC_H

typedef enum PsgTransport
{
	PSG_TRANSPORT_AUTO,
	PSG_TRANSPORT_CURL,
	PSG_TRANSPORT_PGSQL_HTTP
} PsgTransport;

typedef enum PsgOnUnavailable
{
	PSG_UNAVAILABLE_ERROR,
	PSG_UNAVAILABLE_JSON
} PsgOnUnavailable;

extern char *psg_function_url;
extern char *psg_function_key;
extern int	psg_connect_timeout_ms;
extern int	psg_timeout_ms;
extern int	psg_max_response_bytes;
extern int	psg_max_window_rows;
extern int	psg_max_window_s;
extern int	psg_compression;
extern int	psg_max_concurrent;
extern int	psg_transport;
extern int	psg_on_unavailable;
extern int	psg_fallback_window_s;
extern char *psg_source;
extern char *psg_time_column;
extern char *psg_value_columns;
extern char *psg_category_columns;
extern int	psg_max_categories;
extern int	psg_window_cache_bucket_s;
extern int	psg_window_cache_settle_s;
extern int	psg_window_cache_size_kb;

extern void psg_define_gucs(void);

#endif							/* PSG_GUC_H */
