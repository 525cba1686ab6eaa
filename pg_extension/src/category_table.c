/*
 * category_table.c — category count tables: canonical order, validation,
 * the PSGC encoding (docs/wire-format.md, section 3.2) and the bounded
 * selection of a window's most frequent categories.
 *
 * No PostgreSQL calls and no allocation: see category_table.h.  Every field
 * a reader takes from the input is checked before it is used, and the header
 * check bounds the categories a caller allocates by the input's length.
 */
#include "category_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t ct_magic[4] = {'P', 'S', 'G', 'C'};

static void
put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static uint16_t
get_u16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) |
		((uint32_t) p[3] << 24);
}

static uint64_t
get_u64(const uint8_t *p)
{
	uint64_t	v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ------------------------------------------------------------- order */

int
ct_compare_bytes(const uint8_t *a, uint32_t alen, const uint8_t *b, uint32_t blen)
{
	uint32_t	common = alen < blen ? alen : blen;
	int			c = common ? memcmp(a, b, common) : 0;

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen;
}

int
ct_compare(const CtCategory *a, const CtCategory *b)
{
	if (a->count != b->count)
		return a->count > b->count ? -1 : 1;
	return ct_compare_bytes(a->bytes, a->len, b->bytes, b->len);
}

static int
qsort_canonical(const void *a, const void *b)
{
	return ct_compare((const CtCategory *) a, (const CtCategory *) b);
}

static int
qsort_bytes(const void *a, const void *b)
{
	const CtCategory *x = a,
			   *y = b;

	return ct_compare_bytes(x->bytes, x->len, y->bytes, y->len);
}

void
ct_sort(CtCategory *categories, uint32_t n)
{
	if (n > 1)
		qsort(categories, n, sizeof(CtCategory), qsort_canonical);
}

void
ct_sort_by_bytes(CtCategory *categories, uint32_t n)
{
	if (n > 1)
		qsort(categories, n, sizeof(CtCategory), qsort_bytes);
}

int64_t
ct_find(const CtCategory *sorted, uint32_t n, const uint8_t *bytes, uint32_t len)
{
	uint32_t	lo = 0,
				hi = n;

	while (lo < hi)
	{
		uint32_t	mid = lo + (hi - lo) / 2;
		int			c = ct_compare_bytes(sorted[mid].bytes, sorted[mid].len, bytes, len);

		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* ------------------------------------------------------------ checks */

bool
ct_valid_utf8(const uint8_t *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		uint8_t		c = s[i];
		size_t		need;
		uint8_t		lo = 0x80,
					hi = 0xBF;	/* allowed range of the second byte */

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			need = 1;
		else if (c >= 0xE0 && c <= 0xEF)
		{
			need = 2;
			if (c == 0xE0)
				lo = 0xA0;		/* overlong */
			else if (c == 0xED)
				hi = 0x9F;		/* surrogates */
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			need = 3;
			if (c == 0xF0)
				lo = 0x90;		/* overlong */
			else if (c == 0xF4)
				hi = 0x8F;		/* above U+10FFFF */
		}
		else
			return false;
		if (len - i <= need)
			return false;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t k = 2; k <= need; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
		i += need + 1;
	}
	return true;
}

bool
ct_validate(const CtTable *t, char *err, size_t errlen)
{
	uint64_t	total;

	if (t->n > CT_MAX_CATEGORIES)
	{
		snprintf(err, errlen, "%u categories exceed the limit of %d", t->n, CT_MAX_CATEGORIES);
		return false;
	}
	if (t->other_distinct > t->other_count || (t->other_count == 0) != (t->other_distinct == 0))
	{
		snprintf(err, errlen, "other_distinct must be 0 exactly when other_count is, "
				 "and at most other_count");
		return false;
	}
	if (t->missing > UINT64_MAX - t->other_count)
	{
		snprintf(err, errlen, "category table counts sum beyond 2^64-1");
		return false;
	}
	total = t->missing + t->other_count;
	for (uint32_t i = 0; i < t->n; i++)
	{
		const CtCategory *c = &t->categories[i];

		if (c->len > CT_MAX_CATEGORY_BYTES)
		{
			snprintf(err, errlen, "category %u: %u bytes exceed %d", i, c->len,
					 CT_MAX_CATEGORY_BYTES);
			return false;
		}
		if (!ct_valid_utf8(c->bytes, c->len))
		{
			snprintf(err, errlen, "category %u is not UTF-8", i);
			return false;
		}
		if (c->len > 0 && memchr(c->bytes, 0, c->len) != NULL)
		{
			snprintf(err, errlen, "category %u contains NUL", i);
			return false;
		}
		if (c->count < 1)
		{
			snprintf(err, errlen, "category %u has count 0", i);
			return false;
		}
		if (i > 0 && ct_compare(&t->categories[i - 1], c) >= 0)
		{
			snprintf(err, errlen, "category %u is out of order: categories go by count, "
					 "most frequent first, ties by their bytes", i);
			return false;
		}
		if (c->count > UINT64_MAX - total)
		{
			snprintf(err, errlen, "category table counts sum beyond 2^64-1");
			return false;
		}
		total += c->count;
	}
	return true;
}

/* ---------------------------------------------------------- encoding */

size_t
ct_encoded_size(const CtTable *t)
{
	size_t		size = CT_HEADER_SIZE;

	for (uint32_t i = 0; i < t->n; i++)
		size += CT_ENTRY_MIN_SIZE + t->categories[i].len;
	return size;
}

size_t
ct_encode(const CtTable *t, uint8_t *out)
{
	uint8_t    *p = out;

	memcpy(p, ct_magic, 4);
	p[4] = CT_VERSION;
	p[5] = 0;					/* flags */
	put_u16(p + 6, 0);			/* reserved */
	put_u64(p + 8, t->missing);
	put_u64(p + 16, t->other_count);
	put_u64(p + 24, t->other_distinct);
	put_u32(p + 32, t->n);
	p += CT_HEADER_SIZE;
	for (uint32_t i = 0; i < t->n; i++)
	{
		const CtCategory *c = &t->categories[i];

		put_u16(p, (uint16_t) c->len);
		if (c->len)
			memcpy(p + 2, c->bytes, c->len);
		put_u64(p + 2 + c->len, c->count);
		p += CT_ENTRY_MIN_SIZE + c->len;
	}
	return (size_t) (p - out);
}

bool
ct_decode_header(const uint8_t *buf, size_t len, CtTable *t, char *err, size_t errlen)
{
	if (len < CT_HEADER_SIZE)
	{
		snprintf(err, errlen, "category table too short: %zu bytes, the header alone is %d",
				 len, CT_HEADER_SIZE);
		return false;
	}
	if (memcmp(buf, ct_magic, 4) != 0)
	{
		snprintf(err, errlen, "bad category table magic");
		return false;
	}
	if (buf[4] != CT_VERSION)
	{
		snprintf(err, errlen, "unsupported category table version %u, expected %d",
				 buf[4], CT_VERSION);
		return false;
	}
	if (buf[5] != 0 || get_u16(buf + 6) != 0)
	{
		snprintf(err, errlen, "reserved category table fields must be 0");
		return false;
	}
	t->missing = get_u64(buf + 8);
	t->other_count = get_u64(buf + 16);
	t->other_distinct = get_u64(buf + 24);
	t->n = get_u32(buf + 32);
	t->categories = NULL;
	if (t->n > CT_MAX_CATEGORIES)
	{
		snprintf(err, errlen, "%u categories exceed the limit of %d", t->n, CT_MAX_CATEGORIES);
		return false;
	}
	if ((uint64_t) CT_HEADER_SIZE + (uint64_t) CT_ENTRY_MIN_SIZE * t->n > len)
	{
		snprintf(err, errlen, "%u categories cannot fit in %zu bytes", t->n, len);
		return false;
	}
	return true;
}

bool
ct_decode_categories(const uint8_t *buf, size_t len, CtTable *t, CtCategory *out,
					 char *err, size_t errlen)
{
	size_t		offset = CT_HEADER_SIZE;

	for (uint32_t i = 0; i < t->n; i++)
	{
		uint16_t	name_len;

		if (len - offset < 2)
		{
			snprintf(err, errlen, "category table truncated at category %u", i);
			return false;
		}
		name_len = get_u16(buf + offset);
		offset += 2;
		if (name_len > CT_MAX_CATEGORY_BYTES)
		{
			snprintf(err, errlen, "category %u: %u bytes exceed %d", i, name_len,
					 CT_MAX_CATEGORY_BYTES);
			return false;
		}
		if (len - offset < (size_t) name_len + 8)
		{
			snprintf(err, errlen, "category table truncated at category %u", i);
			return false;
		}
		out[i].bytes = buf + offset;
		out[i].len = name_len;
		out[i].count = get_u64(buf + offset + name_len);
		offset += (size_t) name_len + 8;
	}
	if (offset != len)
	{
		snprintf(err, errlen, "%zu trailing bytes after the category table", len - offset);
		return false;
	}
	t->categories = out;
	return ct_validate(t, err, errlen);
}

/* ------------------------------------------------------------- top-k */

/* a would be dropped before b: it comes later in canonical order. */
static bool
weaker(const CtCategory *a, const CtCategory *b)
{
	return ct_compare(a, b) > 0;
}

static void
sift_down(CtCategory *heap, uint32_t n, uint32_t i)
{
	for (;;)
	{
		uint32_t	weakest = i,
					left = 2 * i + 1,
					right = 2 * i + 2;
		CtCategory	tmp;

		if (left < n && weaker(&heap[left], &heap[weakest]))
			weakest = left;
		if (right < n && weaker(&heap[right], &heap[weakest]))
			weakest = right;
		if (weakest == i)
			return;
		tmp = heap[i];
		heap[i] = heap[weakest];
		heap[weakest] = tmp;
		i = weakest;
	}
}

bool
ct_topk_admits(const CtTopK *t, const CtCategory *c)
{
	if (t->cap == 0)
		return false;
	return t->n < t->cap || weaker(&t->heap[0], c);
}

bool
ct_topk_insert(CtTopK *t, const CtCategory *c, CtCategory *dropped)
{
	uint32_t	i;

	if (t->n == t->cap)
	{
		*dropped = t->heap[0];
		t->heap[0] = *c;
		sift_down(t->heap, t->n, 0);
		return true;
	}
	i = t->n++;
	t->heap[i] = *c;
	while (i > 0)
	{
		uint32_t	parent = (i - 1) / 2;
		CtCategory	tmp;

		if (!weaker(&t->heap[i], &t->heap[parent]))
			break;
		tmp = t->heap[i];
		t->heap[i] = t->heap[parent];
		t->heap[parent] = tmp;
		i = parent;
	}
	return false;
}
