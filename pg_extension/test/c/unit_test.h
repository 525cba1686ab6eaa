/*
 * unit_test.h — what the stand-alone C unit tests share: check counters, the CHECK
 * macro (counts, reports the failing condition with a message, never stops) and a
 * deterministic xorshift64* generator.  A test defines UNIT_RNG_SEED before including.
 */
#ifndef PSG_UNIT_TEST_H
#define PSG_UNIT_TEST_H

#include <stdint.h>
#include <stdio.h>

static int	failures = 0;
static int	checks = 0;

#define CHECK(cond, ...) \
	do { \
		checks++; \
		if (!(cond)) { \
			failures++; \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
		} \
	} while (0)

static uint64_t rng_state = UNIT_RNG_SEED;

static uint64_t
rng_u64(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

#endif							/* PSG_UNIT_TEST_H */
