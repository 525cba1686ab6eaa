/*
 * transport_curl.c — the built-in libcurl transport.
 *
 * Why not a plain curl_easy_perform: it blocks in the kernel with no way to
 * notice a cancel, and curl's own signal use (for DNS timeouts) fights the
 * backend's signal handlers.  Here the transfer runs on a multi handle that is
 * driven in slices of at most PSG_SLICE_MS: each slice waits on curl's own
 * sockets (curl_multi_wait), so data is handled the moment it arrives, and
 * between slices the backend checks for interrupts, so pg_cancel_backend and
 * statement_timeout (whose signals also cut the wait short) end the call
 * within one slice.
 *
 * Rules kept on every path: CURLOPT_NOSIGNAL; no palloc or ereport inside a
 * curl callback (they use malloc and report through flags); every curl
 * resource released before an ERROR leaves this file.  The easy and multi
 * handles live for the backend's lifetime so connections are reused.
 *
 * Where the request goes is the superuser's URL and nothing else: no proxy
 * (an empty CURLOPT_PROXY also overrides http_proxy, HTTPS_PROXY and ALL_PROXY
 * in the server's environment), no .netrc, no redirects, TLS peer and host
 * verification on, nothing printed (CURLOPT_VERBOSE off).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"

#include "pg_stat_guard.h"
#include "transport.h"

#ifdef PSG_NO_CURL

bool
psg_curl_available(void)
{
	return false;
}

bool
psg_curl_post(const PsgHttpRequest *req, PsgHttpResponse *resp)
{
	resp->failure = PSG_HTTP_UNAVAILABLE;
	snprintf(resp->message, sizeof(resp->message),
			 "this build of pg_stat_guard has no libcurl transport");
	return false;
}

PsgHttpFailure
psg_curl_probe_connect(const char *url, int timeout_ms)
{
	return PSG_HTTP_UNAVAILABLE;
}

#else

#include <curl/curl.h>

#define PSG_SLICE_MS 10

typedef struct ResponseBuffer
{
	char	   *data;			/* malloc'd */
	size_t		len;
	size_t		cap;
	size_t		max;
	bool		too_large;
	bool		out_of_memory;
} ResponseBuffer;

static bool curl_initialised = false;
static CURLM *multi_handle = NULL;
static CURL *easy_handle = NULL;

bool
psg_curl_available(void)
{
	return true;
}

/* curl callbacks: plain C, no PostgreSQL calls that could raise an ERROR. */

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	ResponseBuffer *buf = (ResponseBuffer *) userdata;
	size_t		n = size * nmemb;

	if (n > buf->max - buf->len)
	{
		buf->too_large = true;
		return 0;				/* makes curl stop with CURLE_WRITE_ERROR */
	}
	if (buf->len + n + 1 > buf->cap)
	{
		size_t		want = Max(buf->cap * 2, buf->len + n + 1);
		char	   *grown;

		want = Min(want, buf->max + 1);
		grown = realloc(buf->data, want);
		if (grown == NULL)
		{
			buf->out_of_memory = true;
			return 0;
		}
		buf->data = grown;
		buf->cap = want;
	}
	memcpy(buf->data + buf->len, ptr, n);
	buf->len += n;
	return n;
}

static void
ensure_handles(void)
{
	if (!curl_initialised)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not initialise libcurl")));
		curl_initialised = true;
	}
	if (multi_handle == NULL)
	{
		multi_handle = curl_multi_init();
		if (multi_handle == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl multi handle")));
		curl_multi_setopt(multi_handle, CURLMOPT_MAXCONNECTS, 4L);
	}
	if (easy_handle == NULL)
	{
		easy_handle = curl_easy_init();
		if (easy_handle == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create a libcurl handle")));
	}
}

/*
 * Wait until curl's sockets are ready or one slice has passed.  A signal
 * (cancel, statement_timeout) interrupts the poll at once; the slice bounds
 * how long an interrupt that raced the poll can wait.
 */
static bool
wait_for_progress(long deadline_left_ms)
{
	int			timeout = (int) Min(Max(deadline_left_ms, 0), PSG_SLICE_MS);
	int			ready = 0;

	if (timeout == 0)
		return true;
	return curl_multi_wait(multi_handle, NULL, 0, timeout, &ready) == CURLM_OK;
}

/*
 * The options every transfer of ours carries, whatever libcurl's defaults and
 * the server's environment say (see the opening comment).
 */
static void
set_destination_options(CURL *handle, const char *url, long connect_timeout_ms)
{
	curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(handle, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(handle, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
	curl_easy_setopt(handle, CURLOPT_PROXY, "");
	curl_easy_setopt(handle, CURLOPT_NETRC, (long) CURL_NETRC_IGNORED);
	curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(handle, CURLOPT_VERBOSE, 0L);
	curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
	curl_easy_setopt(handle, CURLOPT_TCP_NODELAY, 1L);
}

/*
 * Run the transfer of ``handle`` on the multi handle until it ends or
 * timeout_ms (plus a small guard) has passed; checks for interrupts between
 * slices.  The handle is off the multi handle again on return and on ERROR.
 */
static CURLcode
drive_transfer(CURL *handle, long timeout_ms)
{
	CURLcode	result = CURLE_OK;
	bool		finished = false;
	instr_time	start;

	if (curl_multi_add_handle(multi_handle, handle) != CURLM_OK)
		return CURLE_FAILED_INIT;

	INSTR_TIME_SET_CURRENT(start);
	PG_TRY();
	{
		while (!finished)
		{
			int			running = 0;
			CURLMsg    *msg;
			int			pending;
			instr_time	now;
			long		elapsed_ms;

			if (curl_multi_perform(multi_handle, &running) != CURLM_OK)
			{
				result = CURLE_FAILED_INIT;
				break;
			}
			while ((msg = curl_multi_info_read(multi_handle, &pending)) != NULL)
			{
				if (msg->msg == CURLMSG_DONE && msg->easy_handle == handle)
				{
					result = msg->data.result;
					finished = true;
				}
			}
			if (finished || running == 0)
				break;

			INSTR_TIME_SET_CURRENT(now);
			INSTR_TIME_SUBTRACT(now, start);
			elapsed_ms = (long) INSTR_TIME_GET_MILLISEC(now);
			/* curl enforces the timeout too; this guards against a stuck timer */
			if (elapsed_ms > timeout_ms + 50)
			{
				result = CURLE_OPERATION_TIMEDOUT;
				break;
			}
			if (!wait_for_progress(timeout_ms + 50 - elapsed_ms))
			{
				result = CURLE_FAILED_INIT;
				break;
			}
			if (!PostmasterIsAlive())
				proc_exit(1);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		curl_multi_remove_handle(multi_handle, handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
	curl_multi_remove_handle(multi_handle, handle);
	return result;
}

static void
release_transfer(struct curl_slist *headers, ResponseBuffer *buf)
{
	/* The easy handle must not keep pointers into this call's memory. */
	curl_easy_setopt(easy_handle, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(easy_handle, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(easy_handle, CURLOPT_WRITEDATA, NULL);
	curl_slist_free_all(headers);
	free(buf->data);
	buf->data = NULL;
}

/* The request headers; NULL when out of memory (curl lists use malloc). */
static struct curl_slist *
build_headers(const char *key)
{
	static const char *const fixed[] = {
		"Content-Type: application/octet-stream",
		"Accept: application/json",
		"Expect:",				/* no 100-continue round trip */
	};
	struct curl_slist *list = NULL;
	struct curl_slist *next;
	int			i;

	for (i = 0; i < lengthof(fixed); i++)
	{
		next = curl_slist_append(list, fixed[i]);
		if (next == NULL)
			goto oom;
		list = next;
	}
	if (key != NULL && key[0] != '\0')
	{
		size_t		len = strlen(key) + sizeof("x-functions-key: ");
		char	   *line = malloc(len);

		if (line == NULL)
			goto oom;
		snprintf(line, len, "x-functions-key: %s", key);
		next = curl_slist_append(list, line);
		explicit_bzero(line, len);
		free(line);
		if (next == NULL)
			goto oom;
		list = next;
	}
	return list;

oom:
	curl_slist_free_all(list);
	return NULL;
}

/* What kind of failure a libcurl result code is (too large is told apart by the caller). */
static PsgHttpFailure
classify(CURLcode result)
{
	switch (result)
	{
		case CURLE_OK:
			return PSG_HTTP_OK;
		case CURLE_OPERATION_TIMEDOUT:
			return PSG_HTTP_TIMEOUT;
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
			return PSG_HTTP_CONNECT;
		default:
			return PSG_HTTP_PROTOCOL;
	}
}

static void
fail(PsgHttpResponse *resp, PsgHttpFailure kind, const char *fmt, const char *detail)
{
	resp->failure = kind;
	snprintf(resp->message, sizeof(resp->message), fmt, detail);
}

bool
psg_curl_post(const PsgHttpRequest *req, PsgHttpResponse *resp)
{
	struct curl_slist *volatile headers = NULL;
	ResponseBuffer buf = {0};
	CURLcode	result = CURLE_OK;

	memset(resp, 0, sizeof(*resp));
	ensure_handles();
	buf.max = req->max_response;

	headers = build_headers(req->key);
	if (headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building the drift function request")));

	curl_easy_reset(easy_handle);
	set_destination_options(easy_handle, req->url, (long) req->connect_timeout_ms);
	curl_easy_setopt(easy_handle, CURLOPT_POST, 1L);
	curl_easy_setopt(easy_handle, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(easy_handle, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	curl_easy_setopt(easy_handle, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy_handle, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy_handle, CURLOPT_WRITEDATA, &buf);
	curl_easy_setopt(easy_handle, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(easy_handle, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) req->max_response);
	curl_easy_setopt(easy_handle, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy_handle, CURLOPT_USERAGENT, PSG_CLIENT_NAME);

	PG_TRY();
	{
		result = drive_transfer(easy_handle, (long) req->timeout_ms);
	}
	PG_CATCH();
	{
		release_transfer(headers, &buf);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (result == CURLE_FAILED_INIT)
	{
		release_transfer(headers, &buf);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not run the drift function request")));
	}

	curl_easy_getinfo(easy_handle, CURLINFO_RESPONSE_CODE, &resp->status);

	if (buf.too_large || result == CURLE_FILESIZE_EXCEEDED)
		fail(resp, PSG_HTTP_TOO_LARGE, "answer exceeds pg_stat_guard.max_response_bytes%s", "");
	else if (buf.out_of_memory)
		fail(resp, PSG_HTTP_PROTOCOL, "out of memory reading the answer%s", "");
	else if (classify(result) == PSG_HTTP_TIMEOUT)
		fail(resp, PSG_HTTP_TIMEOUT, "no answer within pg_stat_guard.timeout%s", "");
	else if (classify(result) == PSG_HTTP_CONNECT)
		fail(resp, PSG_HTTP_CONNECT, "could not connect: %s", curl_easy_strerror(result));
	else if (result != CURLE_OK)
		fail(resp, PSG_HTTP_PROTOCOL, "transfer failed: %s", curl_easy_strerror(result));

	if (resp->failure == PSG_HTTP_OK)
	{
		/* Copy out with palloc only now that curl is done with the buffer. */
		size_t		len = buf.len;
		char	   *copy;

		PG_TRY();
		{
			copy = palloc(len + 1);
		}
		PG_CATCH();
		{
			release_transfer(headers, &buf);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (len > 0)
			memcpy(copy, buf.data, len);
		copy[len] = '\0';
		resp->body = copy;
		resp->body_len = len;
	}
	release_transfer(headers, &buf);
	return resp->failure == PSG_HTTP_OK;
}

/*
 * Connect to the URL's host (TLS handshake included, nothing sent) with the
 * same destination options as a request, on a handle of its own that is
 * closed afterwards.  Tells the pgsql-http transport whether a failed request
 * could not reach the endpoint or failed in the answer.
 */
PsgHttpFailure
psg_curl_probe_connect(const char *url, int timeout_ms)
{
	CURL	   *volatile probe;
	CURLcode	result;

	if (timeout_ms <= 0)
		return PSG_HTTP_TIMEOUT;
	ensure_handles();
	probe = curl_easy_init();
	if (probe == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	set_destination_options(probe, url, (long) timeout_ms);
	curl_easy_setopt(probe, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(probe, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(probe, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
	PG_TRY();
	{
		result = drive_transfer(probe, (long) timeout_ms);
	}
	PG_CATCH();
	{
		curl_easy_cleanup(probe);
		PG_RE_THROW();
	}
	PG_END_TRY();
	curl_easy_cleanup(probe);
	return classify(result);
}

#endif							/* PSG_NO_CURL */
