/*
 * stat_guard_cells: a DuckDB aggregate that counts a numeric column into the cells of the
 * scheduled engine's ratio grid in one pass (stat_guard/scheduled/aggregates.py, Span).
 *
 *   stat_guard_cells(x DOUBLE, origin DOUBLE, width DOUBLE, half DOUBLE) -> BLOB
 *
 * The cell of a finite x is k = ceil(d / (|d| + width) * half), d = x * 0.5 - origin,
 * computed with the same IEEE double operations, in the same order, as the engine's SQL
 * key, so both give the same cells. For each non-empty cell the aggregate keeps the
 * count, the smallest and the largest value; NULLs and NaN / +-Inf are counted apart.
 * The counts go into an array of 2 * half + 1 cells instead of a hash table: a
 * GROUP BY over the same key costs several times as much a value.
 *
 * The answer (little-endian):
 *   int64 nulls, int64 nonfinite, int64 cells, then per non-empty cell in key order
 *   double key, int64 count, double min, double max.
 * NULL when the arguments are not usable (origin or width not finite, width <= 0, half
 * outside [0.5, MAX_HALF], or they change from row to row): the engine then counts with
 * its GROUP BY.
 */
#define DUCKDB_EXTENSION_NAME stat_guard_cells
#include "duckdb_extension.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

DUCKDB_EXTENSION_EXTERN

#define MAX_HALF 65536

typedef struct {
	int64_t n;
	double lo;
	double hi;
} cell_t;

typedef struct {
	cell_t *cells; /* 2 * half + 1 of them, once the first row set the grid */
	double origin;
	double width;
	double half;   /* the grid's half-width in cells, as the SQL key has it (may be x.5) */
	int64_t reach; /* ceil(half): keys lie in [-reach, reach] */
	int64_t nulls;
	int64_t nonfinite;
	int bad; /* unusable arguments: the answer is NULL */
} cells_state;

static idx_t state_size(duckdb_function_info info) {
	(void)info;
	return sizeof(cells_state);
}

static void state_init(duckdb_function_info info, duckdb_aggregate_state state) {
	(void)info;
	memset(state, 0, sizeof(cells_state));
}

static void state_destroy(duckdb_aggregate_state *states, idx_t count) {
	for (idx_t i = 0; i < count; i++) {
		cells_state *s = (cells_state *)states[i];
		free(s->cells);
		s->cells = NULL;
	}
}

static cell_t *new_cells(int64_t half) {
	int64_t count = 2 * half + 1;
	cell_t *cells = malloc((size_t)count * sizeof(cell_t));
	if (!cells) {
		return NULL;
	}
	for (int64_t i = 0; i < count; i++) {
		cells[i].n = 0;
		cells[i].lo = INFINITY;
		cells[i].hi = -INFINITY;
	}
	return cells;
}

/* Set the grid from the first row's arguments; later rows must repeat them. */
static int grid_ok(cells_state *s, double origin, double width, double half) {
	if (s->bad) {
		return 0;
	}
	if (s->cells) {
		if (origin == s->origin && width == s->width && half == s->half) {
			return 1;
		}
		s->bad = 1;
		return 0;
	}
	if (!isfinite(origin) || !isfinite(width) || !(width > 0.0) || !(half >= 0.5) ||
	    !(half <= (double)MAX_HALF)) {
		s->bad = 1;
		return 0;
	}
	s->reach = (int64_t)ceil(half);
	s->cells = new_cells(s->reach);
	if (!s->cells) {
		s->bad = 1;
		return 0;
	}
	s->origin = origin;
	s->width = width;
	s->half = half;
	return 1;
}

/* DuckDB's validity mask: bit r of the 64-bit words, set when row r is not NULL; no mask
 * at all when no row is NULL. Read inline: the API's function costs a call a row. */
static inline int row_valid(const uint64_t *validity, idx_t row) {
	return !validity || ((validity[row >> 6] >> (row & 63)) & 1);
}

/* ceil(u) for |u| <= MAX_HALF, without a call into libm (x86-64's baseline has no
 * rounding instruction): the same value as ceil() for every such u (-0.0 comes out as
 * 0.0, the same key). */
static inline double ceil_small(double u) {
	double t = (double)(int64_t)u; /* truncated toward zero */
	return t + (double)(t < u);    /* branch-free: the comparison is a coin toss */
}

static inline void count_value(cells_state *s, double x) {
	if (!isfinite(x)) {
		s->nonfinite++;
		return;
	}
	double d = x * 0.5 - s->origin;
	double k = ceil_small(d / (fabs(d) + s->width) * s->half);
	if (!(k >= (double)-s->reach && k <= (double)s->reach)) { /* cannot happen: |u| <= 1 */
		s->bad = 1;
		return;
	}
	cell_t *cell = &s->cells[(int64_t)k + s->reach];
	cell->n++;
	cell->lo = x < cell->lo ? x : cell->lo; /* minsd / maxsd, no branch */
	cell->hi = x > cell->hi ? x : cell->hi;
}

static void update(duckdb_function_info info, duckdb_data_chunk input, duckdb_aggregate_state *states) {
	(void)info;
	idx_t rows = duckdb_data_chunk_get_size(input);
	if (rows == 0) {
		return;
	}
	double *data[4];
	uint64_t *validity[4];
	for (idx_t c = 0; c < 4; c++) {
		duckdb_vector vector = duckdb_data_chunk_get_vector(input, c);
		data[c] = (double *)duckdb_vector_get_data(vector);
		validity[c] = duckdb_vector_get_validity(vector);
	}
	/* The common case: one state (no GROUP BY) and the same grid on every row. */
	int uniform = !validity[1] && !validity[2] && !validity[3];
	if (uniform) {
		const double origin = data[1][0], width = data[2][0], half = data[3][0];
		int differs = 0; /* branch-free, so the compiler can vectorise it */
		for (idx_t r = 0; r < rows; r++) {
			differs |= (states[r] != states[0]) | (data[1][r] != origin) | (data[2][r] != width) |
			           (data[3][r] != half);
		}
		uniform = !differs;
	}
	if (uniform) {
		cells_state *s = (cells_state *)states[0];
		if (!grid_ok(s, data[1][0], data[2][0], data[3][0])) {
			return;
		}
		const double *x = data[0];
		for (idx_t r = 0; r < rows; r++) {
			if (!row_valid(validity[0], r)) {
				s->nulls++;
			} else {
				count_value(s, x[r]);
			}
		}
		return;
	}
	for (idx_t r = 0; r < rows; r++) {
		cells_state *s = (cells_state *)states[r];
		if (!row_valid(validity[1], r) || !row_valid(validity[2], r) || !row_valid(validity[3], r)) {
			s->bad = 1;
			continue;
		}
		if (!grid_ok(s, data[1][r], data[2][r], data[3][r])) {
			continue;
		}
		if (!row_valid(validity[0], r)) {
			s->nulls++;
		} else {
			count_value(s, data[0][r]);
		}
	}
}

static void combine(duckdb_function_info info, duckdb_aggregate_state *source, duckdb_aggregate_state *target,
                    idx_t count) {
	(void)info;
	for (idx_t j = 0; j < count; j++) {
		cells_state *a = (cells_state *)source[j];
		cells_state *b = (cells_state *)target[j];
		b->nulls += a->nulls;
		b->nonfinite += a->nonfinite;
		if (a->bad || b->bad) {
			b->bad = 1;
			continue;
		}
		if (!a->cells) {
			continue;
		}
		if (!grid_ok(b, a->origin, a->width, a->half)) {
			continue;
		}
		for (int64_t i = 0; i < 2 * a->reach + 1; i++) {
			cell_t *from = &a->cells[i], *to = &b->cells[i];
			to->n += from->n;
			if (from->lo < to->lo) {
				to->lo = from->lo;
			}
			if (from->hi > to->hi) {
				to->hi = from->hi;
			}
		}
	}
}

static void put64(unsigned char *out, const void *value) {
	memcpy(out, value, 8); /* x86-64 and aarch64 are little-endian, as the reader expects */
}

static void finalize(duckdb_function_info info, duckdb_aggregate_state *source, duckdb_vector result, idx_t count,
                     idx_t offset) {
	(void)info;
	duckdb_vector_ensure_validity_writable(result);
	uint64_t *validity = duckdb_vector_get_validity(result);
	for (idx_t j = 0; j < count; j++) {
		cells_state *s = (cells_state *)source[j];
		if (s->bad) {
			duckdb_validity_set_row_invalid(validity, offset + j);
			continue;
		}
		int64_t filled = 0;
		int64_t total = s->cells ? 2 * s->reach + 1 : 0;
		for (int64_t i = 0; i < total; i++) {
			filled += s->cells[i].n > 0;
		}
		size_t size = 24 + (size_t)filled * 32;
		unsigned char *blob = malloc(size);
		if (!blob) {
			duckdb_validity_set_row_invalid(validity, offset + j);
			continue;
		}
		put64(blob, &s->nulls);
		put64(blob + 8, &s->nonfinite);
		put64(blob + 16, &filled);
		unsigned char *at = blob + 24;
		for (int64_t i = 0; i < total; i++) {
			cell_t *cell = &s->cells[i];
			if (!cell->n) {
				continue;
			}
			double key = (double)(i - s->reach);
			put64(at, &key);
			put64(at + 8, &cell->n);
			put64(at + 16, &cell->lo);
			put64(at + 24, &cell->hi);
			at += 32;
		}
		duckdb_vector_assign_string_element_len(result, offset + j, (const char *)blob, size);
		free(blob);
	}
}

DUCKDB_EXTENSION_ENTRYPOINT(duckdb_connection connection, duckdb_extension_info info,
                            struct duckdb_extension_access *access) {
	duckdb_aggregate_function function = duckdb_create_aggregate_function();
	duckdb_aggregate_function_set_name(function, "stat_guard_cells");
	duckdb_logical_type number = duckdb_create_logical_type(DUCKDB_TYPE_DOUBLE);
	duckdb_logical_type blob = duckdb_create_logical_type(DUCKDB_TYPE_BLOB);
	for (int i = 0; i < 4; i++) {
		duckdb_aggregate_function_add_parameter(function, number);
	}
	duckdb_aggregate_function_set_return_type(function, blob);
	duckdb_aggregate_function_set_functions(function, state_size, state_init, update, combine, finalize);
	duckdb_aggregate_function_set_destructor(function, state_destroy);
	duckdb_aggregate_function_set_special_handling(function); /* NULL x is counted, not skipped */
	duckdb_state registered = duckdb_register_aggregate_function(connection, function);
	duckdb_destroy_aggregate_function(&function);
	duckdb_destroy_logical_type(&number);
	duckdb_destroy_logical_type(&blob);
	if (registered != DuckDBSuccess) {
		access->set_error(info, "stat_guard_cells: could not register the aggregate");
		return false;
	}
	return true;
}
