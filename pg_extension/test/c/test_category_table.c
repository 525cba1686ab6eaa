/*
 * test_category_table.c — unit tests of the pure category table code
 * (src/category_table.c), without PostgreSQL: the golden PSGC files of
 * test/golden/ (written by Python's stat_guard.wire) decode, encode back to
 * their bytes and are rebuilt byte for byte from raw counts by the same
 * bounded selection the extension uses; every malformed table golden.json
 * lists is rejected; mutated tables never crash the reader.
 * Build and run from pg_extension/: make unittest
 */
#include "category_table.h"

#define UNIT_RNG_SEED 0x243F6A8885A308D3ULL
#include "unit_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN "test/golden/"


static uint8_t *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	uint8_t    *buf;
	long		size;

	if (f == NULL)
	{
		fprintf(stderr, "cannot open %s (run from pg_extension/)\n", path);
		exit(2);
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(size > 0 ? (size_t) size : 1);
	if (size > 0 && fread(buf, 1, (size_t) size, f) != (size_t) size)
		exit(2);
	fclose(f);
	*len = (size_t) size;
	return buf;
}

/* Decode a whole table into malloc'd categories; false when rejected. */
static bool
decode(const uint8_t *buf, size_t len, CtTable *t, CtCategory **cats, char *err)
{
	*cats = NULL;
	if (!ct_decode_header(buf, len, t, err, CT_ERRMSG_SIZE))
		return false;
	*cats = malloc(sizeof(CtCategory) * (t->n ? t->n : 1));
	return ct_decode_categories(buf, len, t, *cats, err, CT_ERRMSG_SIZE);
}

static bool
encodes_to(const CtTable *t, const uint8_t *expected, size_t len)
{
	size_t		size = ct_encoded_size(t);
	uint8_t    *out = malloc(size ? size : 1);
	bool		same = size == len && ct_encode(t, out) == size && memcmp(out, expected, len) == 0;

	free(out);
	return same;
}

/*
 * Bound raw counts as the extension does (categories.c): listed names
 * exactly, the `cap` first of the others in canonical order, the rest pooled.
 */
static void
bound(const CtCategory *all, uint32_t n, const CtCategory *listed, uint32_t nlisted,
	  uint32_t cap, CtTable *t, CtCategory *out)
{
	CtCategory *sorted_listed = malloc(sizeof(CtCategory) * (nlisted ? nlisted : 1));
	uint64_t   *listed_counts = calloc(nlisted ? nlisted : 1, sizeof(uint64_t));
	CtTopK		top = {malloc(sizeof(CtCategory) * (cap ? cap : 1)), 0, cap};
	uint32_t	m = 0;

	if (nlisted)
		memcpy(sorted_listed, listed, sizeof(CtCategory) * nlisted);
	ct_sort_by_bytes(sorted_listed, nlisted);
	t->other_count = t->other_distinct = 0;
	for (uint32_t i = 0; i < n; i++)
	{
		int64_t		at = ct_find(sorted_listed, nlisted, all[i].bytes, all[i].len);
		CtCategory	dropped;

		if (at >= 0)
			listed_counts[at] += all[i].count;
		else if (!ct_topk_admits(&top, &all[i]))
		{
			t->other_count += all[i].count;
			t->other_distinct++;
		}
		else if (ct_topk_insert(&top, &all[i], &dropped))
		{
			t->other_count += dropped.count;
			t->other_distinct++;
		}
	}
	for (uint32_t i = 0; i < nlisted; i++)
		if (listed_counts[i] > 0)
		{
			out[m] = sorted_listed[i];
			out[m++].count = listed_counts[i];
		}
	for (uint32_t i = 0; i < top.n; i++)
		out[m++] = top.heap[i];
	ct_sort(out, m);
	t->n = m;
	t->categories = out;
	free(listed_counts);
	free(top.heap);
	/* sorted_listed's bytes belong to the caller; the array itself may go */
	free(sorted_listed);
}

static CtCategory
cat(const char *name, uint64_t count)
{
	CtCategory	c = {(const uint8_t *) name, (uint32_t) strlen(name), count};

	return c;
}

/* ------------------------------------------------------------------ */

static const char *const golden_tables[] = {
	"categories_small", "categories_listed", "categories_pooled", "categories_empty",
	"categories_missing_only", "categories_long", "categories_extremes",
};

static void
test_golden_tables_round_trip(void)
{
	for (size_t k = 0; k < sizeof(golden_tables) / sizeof(golden_tables[0]); k++)
	{
		char		path[256],
					err[CT_ERRMSG_SIZE];
		size_t		len;
		uint8_t    *buf;
		CtTable		t;
		CtCategory *cats;

		snprintf(path, sizeof(path), GOLDEN "%s.psgc", golden_tables[k]);
		buf = read_file(path, &len);
		CHECK(decode(buf, len, &t, &cats, err), "%s: %s", golden_tables[k], err);
		CHECK(encodes_to(&t, buf, len), "%s encodes back to its bytes", golden_tables[k]);
		free(cats);
		free(buf);
	}
}

/* The golden tables Python wrote, rebuilt here from raw counts. */
static void
test_golden_tables_are_rebuilt_from_raw_counts(void)
{
	/* paris 4, lyon 3, "" 1, Lyon 1, Zürich 1, nice 1, 日本 1; 2 NULLs */
	CtCategory	small_raw[] = {cat("nice", 1), cat("paris", 4), cat("Zürich", 1), cat("", 1),
	cat("日本", 1), cat("Lyon", 1), cat("lyon", 3)};
	/* the next window: small's names listed, one other named, the rest pooled */
	CtCategory	listed_raw[] = {cat("metz", 1), cat("lyon", 9), cat("lille", 1),
	cat("bordeaux", 2), cat("paris", 3), cat("Zürich", 1)};
	CtCategory	out[400];
	CtCategory	pooled_raw[300];
	char		names[300][16];
	CtTable		t;
	size_t		len;
	uint8_t    *buf;

	bound(small_raw, 7, NULL, 0, 10, &t, out);
	t.missing = 2;
	buf = read_file(GOLDEN "categories_small.psgc", &len);
	CHECK(encodes_to(&t, buf, len), "categories_small rebuilt");
	free(buf);

	bound(listed_raw, 6, small_raw, 7, 1, &t, out);
	t.missing = 1;
	buf = read_file(GOLDEN "categories_listed.psgc", &len);
	CHECK(encodes_to(&t, buf, len), "categories_listed rebuilt");
	free(buf);

	for (int i = 0; i < 300; i++)
	{
		snprintf(names[i], sizeof(names[i]), "c%03d", i);
		pooled_raw[(i * 7) % 300] = cat(names[i], (uint64_t) (1000 - 3 * i));
	}
	bound(pooled_raw, 300, NULL, 0, 200, &t, out);
	t.missing = 17;
	CHECK(t.n == 200 && t.other_distinct == 100, "pooled: %u named, %llu pooled", t.n,
		  (unsigned long long) t.other_distinct);
	buf = read_file(GOLDEN "categories_pooled.psgc", &len);
	CHECK(encodes_to(&t, buf, len), "categories_pooled rebuilt");
	free(buf);
}

/* Every "hex" of golden.json's malformed_category_tables is rejected. */
static void
test_golden_malformed_tables_are_rejected(void)
{
	size_t		len;
	char	   *json = (char *) read_file(GOLDEN "golden.json", &len);
	char	   *section,
			   *end,
			   *p;
	int			rejected = 0;

	json = realloc(json, len + 1);
	json[len] = '\0';
	section = strstr(json, "\"malformed_category_tables\"");
	CHECK(section != NULL, "golden.json lists malformed tables");
	if (section == NULL)
		return;
	end = strchr(section, ']');
	for (p = strstr(section, "\"hex\": \""); p != NULL && p < end; p = strstr(p, "\"hex\": \""))
	{
		char		err[CT_ERRMSG_SIZE];
		size_t		n = 0;
		uint8_t    *bytes;
		CtTable		t;
		CtCategory *cats;

		p += strlen("\"hex\": \"");
		while (p[n] != '"')
			n++;
		bytes = malloc(n / 2 + 1);
		for (size_t i = 0; i < n / 2; i++)
			sscanf(p + 2 * i, "%2hhx", &bytes[i]);
		CHECK(!decode(bytes, n / 2, &t, &cats, err), "malformed table %d was accepted",
			  rejected);
		rejected++;
		free(cats);
		free(bytes);
		p += n;
	}
	CHECK(rejected >= 30, "only %d malformed tables found", rejected);
	free(json);
}

/* The bounded selection agrees with sorting everything. */
static void
test_topk_matches_a_full_sort(void)
{
	for (int round = 0; round < 200; round++)
	{
		uint32_t	n = (uint32_t) (rng_u64() % 500),
					cap = (uint32_t) (rng_u64() % 60);
		CtCategory *all = malloc(sizeof(CtCategory) * (n ? n : 1));
		CtCategory *sorted = malloc(sizeof(CtCategory) * (n ? n : 1));
		CtCategory *out = malloc(sizeof(CtCategory) * (n ? n : 1));
		char	   (*names)[12] = malloc(12 * (n ? n : 1));
		CtTable		t;
		uint64_t	rest = 0;
		bool		same = true;

		for (uint32_t i = 0; i < n; i++)
		{
			snprintf(names[i], 12, "v%u", i);
			all[i] = cat(names[i], 1 + rng_u64() % 8);	/* many ties */
		}
		memcpy(sorted, all, sizeof(CtCategory) * n);
		ct_sort(sorted, n);
		bound(all, n, NULL, 0, cap, &t, out);
		for (uint32_t i = cap; i < n; i++)
			rest += sorted[i].count;
		CHECK(t.n == (n < cap ? n : cap), "round %d: %u kept", round, t.n);
		for (uint32_t i = 0; i < t.n && same; i++)
			same = ct_compare(&out[i], &sorted[i]) == 0;
		CHECK(same, "round %d: the kept categories are the first in canonical order", round);
		CHECK(t.other_count == rest && t.other_distinct == (n > cap ? n - cap : 0),
			  "round %d: pooled counts", round);
		free(all);
		free(sorted);
		free(out);
		free(names);
	}
}

static void
test_utf8_is_checked_strictly(void)
{
	struct
	{
		const char *bytes;
		bool		valid;
	}			cases[] = {
		{"", true}, {"plain", true}, {"Z\xc3\xbcrich", true}, {"\xe6\x97\xa5", true},
		{"\xf0\x9f\x98\x80", true}, {"\xf4\x8f\xbf\xbf", true}, {"\xed\x9f\xbf", true},
		{"\xff", false}, {"\xc0\x80", false}, {"\xc1\xbf", false}, {"\xe0\x80\xaf", false},
		{"\xed\xa0\x80", false}, {"\xf4\x90\x80\x80", false}, {"\xf5\x80\x80\x80", false},
		{"\xe6\x97", false}, {"\x80", false}, {"\xc3\x28", false}, {"\xf0\x80\x80\x80", false},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(ct_valid_utf8((const uint8_t *) cases[i].bytes, strlen(cases[i].bytes)) ==
			  cases[i].valid, "utf-8 case %zu", i);
}

/* Mutated golden tables: rejected, or accepted only when canonical. */
static void
test_mutated_tables_never_crash(void)
{
	for (size_t k = 0; k < sizeof(golden_tables) / sizeof(golden_tables[0]); k++)
	{
		char		path[256];
		size_t		len;
		uint8_t    *valid;

		snprintf(path, sizeof(path), GOLDEN "%s.psgc", golden_tables[k]);
		valid = read_file(path, &len);
		for (int round = 0; round < 3000; round++)
		{
			size_t		n = len;
			uint8_t    *data = malloc(len + 8);
			char		err[CT_ERRMSG_SIZE];
			CtTable		t;
			CtCategory *cats;
			int			edits = 1 + (int) (rng_u64() % 3);

			memcpy(data, valid, len);
			for (int e = 0; e < edits; e++)
			{
				size_t		at = n ? rng_u64() % n : 0;

				switch (rng_u64() % 3)
				{
					case 0:
						if (n)
							data[at] = (uint8_t) rng_u64();
						break;
					case 1:
						if (n)
						{
							memmove(data + at, data + at + 1, n - at - 1);
							n--;
						}
						break;
					default:
						if (n < len + 8)
						{
							memmove(data + at + 1, data + at, n - at);
							data[at] = (uint8_t) rng_u64();
							n++;
						}
				}
			}
			if (decode(data, n, &t, &cats, err))
				CHECK(encodes_to(&t, data, n), "%s round %d: accepted but not canonical",
					  golden_tables[k], round);
			free(cats);
			free(data);
		}
		free(valid);
	}
}

int
main(void)
{
	test_golden_tables_round_trip();
	test_golden_tables_are_rebuilt_from_raw_counts();
	test_golden_malformed_tables_are_rejected();
	test_topk_matches_a_full_sort();
	test_utf8_is_checked_strictly();
	test_mutated_tables_never_crash();
	printf("%d checks, %d failures\n", checks, failures);
	return failures == 0 ? 0 : 1;
}
