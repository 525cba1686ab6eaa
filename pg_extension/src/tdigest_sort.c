/*
 * tdigest_sort.c — sorting value keys before they are merged into centroids.
 * No PostgreSQL calls and no allocation: see tdigest.h.
 */
#include "tdigest.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------------
 * Sorting
 * ---------------------------------------------------------------------
 */

/*
 * Insertion sort that gives up after `budget` element moves.  Returns true
 * when keys are sorted.  Either way keys remain a permutation of the input.
 */
static bool
insertion_sort_bounded(uint64_t *keys, size_t n, size_t budget)
{
	size_t		moves = 0;

	for (size_t i = 1; i < n; i++)
	{
		uint64_t	k = keys[i];
		size_t		j = i;

		while (j > 0 && keys[j - 1] > k)
		{
			keys[j] = keys[j - 1];
			j--;
		}
		keys[j] = k;
		moves += i - j;
		if (moves > budget)
			return false;
	}
	return true;
}

/* Plain LSD radix sort over all eight bytes, skipping bytes all keys share. */
static void
radix_sort_full(uint64_t *keys, uint64_t *scratch, size_t n)
{
	uint32_t	counts[8][256];
	uint64_t   *src = keys;
	uint64_t   *dst = scratch;

	memset(counts, 0, sizeof(counts));
	for (size_t i = 0; i < n; i++)
	{
		uint64_t	k = keys[i];

		for (int b = 0; b < 8; b++)
			counts[b][(k >> (8 * b)) & 0xff]++;
	}
	for (int pass = 0; pass < 8; pass++)
	{
		uint32_t   *c = counts[pass];
		int			shift = pass * 8;
		uint32_t	offset = 0;

		if (c[(src[0] >> shift) & 0xff] == n)
			continue;
		for (int b = 0; b < 256; b++)
		{
			uint32_t	cnt = c[b];

			c[b] = offset;
			offset += cnt;
		}
		for (size_t i = 0; i < n; i++)
		{
			uint64_t	k = src[i];

			dst[c[(k >> shift) & 0xff]++] = k;
		}
		{
			uint64_t   *t = src;

			src = dst;
			dst = t;
		}
	}
	if (src != keys)
		memcpy(keys, src, n * sizeof(uint64_t));
}

#define RADIX_BITS		12
#define RADIX_BUCKETS	(1 << RADIX_BITS)
#define RADIX_PASSES	2

/*
 * Sorting is most of the aggregate's own cost, so it sorts only what
 * matters: the 24 bits below the highest bit in which any two keys differ
 * (two 12-bit LSD passes).  Keys equal in those bits differ by less than
 * 2^-23 of the key range, so few are out of order, and a bounded insertion
 * sort puts them in order.  If
 * that takes too long (data concentrated in a tiny part of its range), a
 * full radix sort finishes the job.
 */
void
td_sort_keys(uint64_t *keys, uint64_t *scratch, size_t n)
{
	uint32_t	counts[RADIX_PASSES][RADIX_BUCKETS];
	uint64_t	diff = 0;
	uint64_t	first;
	int			top_bit;
	int			low_bit;
	uint64_t   *src = keys;
	uint64_t   *dst = scratch;

	if (n < 64)
	{
		(void) insertion_sort_bounded(keys, n, SIZE_MAX);
		return;
	}

	first = keys[0];
	for (size_t i = 1; i < n; i++)
		diff |= keys[i] ^ first;
	if (diff == 0)
		return;					/* all equal */
	top_bit = 63 - __builtin_clzll(diff);
	low_bit = top_bit + 1 - RADIX_BITS * RADIX_PASSES;
	if (low_bit < 0)
		low_bit = 0;

	memset(counts, 0, sizeof(counts));
	for (size_t i = 0; i < n; i++)
	{
		uint64_t	k = keys[i] >> low_bit;

		counts[0][k & (RADIX_BUCKETS - 1)]++;
		counts[1][(k >> RADIX_BITS) & (RADIX_BUCKETS - 1)]++;
	}
	for (int pass = 0; pass < RADIX_PASSES; pass++)
	{
		uint32_t   *c = counts[pass];
		int			shift = low_bit + pass * RADIX_BITS;
		uint32_t	offset = 0;

		if (shift > 63 || c[(src[0] >> shift) & (RADIX_BUCKETS - 1)] == n)
			continue;
		for (int b = 0; b < RADIX_BUCKETS; b++)
		{
			uint32_t	cnt = c[b];

			c[b] = offset;
			offset += cnt;
		}
		for (size_t i = 0; i < n; i++)
		{
			uint64_t	k = src[i];

			dst[c[(k >> shift) & (RADIX_BUCKETS - 1)]++] = k;
		}
		{
			uint64_t   *t = src;

			src = dst;
			dst = t;
		}
	}
	if (src != keys)
		memcpy(keys, src, n * sizeof(uint64_t));

	if (low_bit > 0 && !insertion_sort_bounded(keys, n, 8 * n))
		radix_sort_full(keys, scratch, n);
}
