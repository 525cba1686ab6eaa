/*
 * transport.h — one POST of the request envelope to the drift function.
 *
 * Both transports send the same bytes.  A transport returns false with a
 * failure kind and message for anything the endpoint did wrong (down, slow,
 * oversized answer); the caller decides between ERROR and a JSON status.  A
 * cancel or statement_timeout is raised as the usual ERROR (57014) after every
 * transport resource has been released.
 */
#ifndef PSG_TRANSPORT_H
#define PSG_TRANSPORT_H

#include <stddef.h>
#include <stdbool.h>

typedef enum PsgHttpFailure
{
	PSG_HTTP_OK = 0,
	PSG_HTTP_CONNECT,			/* could not reach the endpoint */
	PSG_HTTP_TIMEOUT,			/* no complete answer within the timeout */
	PSG_HTTP_TOO_LARGE,			/* answer over max_response_bytes */
	PSG_HTTP_PROTOCOL,			/* any other transfer failure */
	PSG_HTTP_UNAVAILABLE		/* the transport itself cannot be used */
} PsgHttpFailure;

typedef struct PsgHttpRequest
{
	const char *url;
	const char *key;			/* may be empty: no header then */
	const char *body;
	size_t		body_len;
	int			connect_timeout_ms;
	int			timeout_ms;
	size_t		max_response;
} PsgHttpRequest;

typedef struct PsgHttpResponse
{
	long		status;			/* HTTP status, 0 if none */
	char	   *body;			/* palloc'd, NUL-terminated */
	size_t		body_len;
	PsgHttpFailure failure;
	char		message[256];	/* what failed; never holds the key */
} PsgHttpResponse;

/* Built-in libcurl transport; false when built with NO_CURL. */
extern bool psg_curl_available(void);
extern bool psg_curl_post(const PsgHttpRequest *req, PsgHttpResponse *resp);

/*
 * Connect only (TLS handshake included, nothing sent) to the URL's endpoint:
 * PSG_HTTP_OK, _CONNECT, _TIMEOUT or _PROTOCOL (TLS); _UNAVAILABLE without
 * libcurl.
 */
extern PsgHttpFailure psg_curl_probe_connect(const char *url, int timeout_ms);

/* pgsql-http's http() through SPI; the caller must be connected to SPI. */
extern bool psg_pgsql_http_post(const PsgHttpRequest *req, PsgHttpResponse *resp);

#endif							/* PSG_TRANSPORT_H */
