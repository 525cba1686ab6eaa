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
 */
#include "postgres.h"

#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"

#include "analysis.h"
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

static void
release_transfer(struct curl_slist *headers, ResponseBuffer *buf)
{
	curl_multi_remove_handle(multi_handle, easy_handle);
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
	bool		finished = false;
	instr_time	start;

	memset(resp, 0, sizeof(*resp));
	ensure_handles();
	buf.max = req->max_response;

	headers = build_headers(req->key);
	if (headers == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building the drift function request")));

	curl_easy_reset(easy_handle);
	curl_easy_setopt(easy_handle, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy_handle, CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy_handle, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy_handle, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
	curl_easy_setopt(easy_handle, CURLOPT_POST, 1L);
	curl_easy_setopt(easy_handle, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(easy_handle, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	curl_easy_setopt(easy_handle, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy_handle, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy_handle, CURLOPT_WRITEDATA, &buf);
	curl_easy_setopt(easy_handle, CURLOPT_CONNECTTIMEOUT_MS, (long) req->connect_timeout_ms);
	curl_easy_setopt(easy_handle, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(easy_handle, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) req->max_response);
	curl_easy_setopt(easy_handle, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy_handle, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy_handle, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy_handle, CURLOPT_USERAGENT, "pg_stat_guard/" PSG_EXTENSION_VERSION);

	if (curl_multi_add_handle(multi_handle, easy_handle) != CURLM_OK)
	{
		release_transfer(headers, &buf);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not start the drift function request")));
	}

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
				if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy_handle)
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
			if (elapsed_ms > req->timeout_ms + 50)
			{
				result = CURLE_OPERATION_TIMEDOUT;
				break;
			}
			if (!wait_for_progress(req->timeout_ms + 50 - elapsed_ms))
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
		release_transfer(headers, &buf);
		PG_RE_THROW();
	}
	PG_END_TRY();

	curl_easy_getinfo(easy_handle, CURLINFO_RESPONSE_CODE, &resp->status);

	if (buf.too_large || result == CURLE_FILESIZE_EXCEEDED)
		fail(resp, PSG_HTTP_TOO_LARGE, "answer exceeds pg_stat_guard.max_response_bytes%s", "");
	else if (buf.out_of_memory)
		fail(resp, PSG_HTTP_PROTOCOL, "out of memory reading the answer%s", "");
	else if (result == CURLE_OPERATION_TIMEDOUT)
		fail(resp, PSG_HTTP_TIMEOUT, "no answer within pg_stat_guard.timeout%s", "");
	else if (result == CURLE_COULDNT_CONNECT || result == CURLE_COULDNT_RESOLVE_HOST ||
			 result == CURLE_COULDNT_RESOLVE_PROXY)
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

#endif							/* PSG_NO_CURL */
