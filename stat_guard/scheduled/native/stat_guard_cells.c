/*
 * stat_guard_cells: a DuckDB aggregate that counts numeric columns into the cells of the
 * scheduled engine's ratio grids in one pass (stat_guard/scheduled/aggregates.py, Span).
 *
 *   stat_guard_cells(grids VARCHAR, x1 DOUBLE, ..., xn DOUBLE) -> BLOB    (1 <= n <= 64)
 *
 * ``grids`` holds 3n integers separated by spaces: the IEEE-754 bit patterns (as signed
 * 64-bit integers) of ``origin width half`` of each column's grid, exact and read the same
 * under any locale. The cell of a finite x is k = ceil(d / (|d| + width) * half),
 * d = x * 0.5 - origin, computed with the same IEEE double operations, in the same order,
 * as the engine's SQL key, so both give the same cells. For each non-empty cell the
 * aggregate keeps the count, the smallest and the largest value; NULLs and NaN / +-Inf
 * are counted apart. The counts go into an array of 2 * ceil(half) + 1 cells instead of a
 * hash table. One call counts every column of a window: DuckDB hands the aggregate one
 * chunk of all of them, where a call a column paid the chunk's overhead once a column.
 *
 * Each chunk is counted in two loops a column: the keys of the whole chunk first
 * (branch-free, so the compiler computes two or more at once), then the cells' updates.
 *
 * The answer (little-endian), per column in order:
 *   int64 nulls, int64 nonfinite, int64 cells, then per non-empty cell in key order
 *   double key, int64 count, double min, double max;
 * cells = -1 (and no cell) when that column's grid is not usable (origin or width not
 * finite, width <= 0, half outside [0.5, MAX_HALF]): the engine counts that column with
 * its GROUP BY. The whole answer is NULL when ``grids`` is NULL, is not 3n integers, or
 * changes from row to row.
 *
 *   stat_guard_values(x1 DOUBLE, ..., xn DOUBLE) -> BLOB                  (1 <= n <= 64)
 *
 * The finite values of each column, sorted: per column int64 count, then that many
 * doubles (little-endian). The engine asks it for a window's first rows, which place
 * each feature's grid: a list() aggregate a column cost 20 ms for 4,096 rows of 20
 * columns (DuckDB turns each list element into a Python object on its own), this 2 ms.
 * NULL when its memory cannot be had.
 *
 *   stat_guard_merge(historical BLOB, current BLOB) -> BLOB
 *
 * Two stat_guard_cells answers over the same grids (one a window) as one list of cells in
 * key order, per column: int64 nulls and nonfinite of each window, int64 cells (-1 when
 * either window's grid was refused), then per cell int64 count, double min, double max
 * of the historical window, the same of the current one (count 0, min +Inf, max -Inf
 * where a window has no value in the cell). Where rounding let a key step back by one
 * (a cell's smallest value not above the largest so far) the two cells are joined, so
 * the cells never overlap. NULL when either answer is NULL or malformed.
 */
#define DUCKDB_EXTENSION_NAME stat_guard_cells
#include "duckdb_extension.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

DUCKDB_EXTENSION_EXTERN

#define MAX_HALF 65536
#define MAX_COLUMNS 64
#define BLOCK 2048     /* keys computed ahead of the updates, at most a vector's rows */
#define OFF_GRID -1e300 /* the key of a finite value off the grid: cannot happen */

typedef struct {
	int64_t n;
	double lo;
	double hi;
} cell_t;

typedef struct {
	cell_t *cells; /* 2 * reach + 1 of them; NULL when the grid is not usable */
	double origin;
	double width;
	double half; /* the grid's half-width in cells, as the SQL key has it (may be x.5) */
	int32_t reach; /* ceil(half): keys lie in [-reach, reach] */
	int64_t nulls;
	int64_t nonfinite;
} grid_t;

typedef struct {
	grid_t *grids; /* one a column, once the first row set them */
	idx_t columns;
	char *text; /* the grids argument that set them, to compare later rows with */
	uint32_t length;
	int bad; /* unusable or changing grids argument: the answer is NULL */
} cells_state;

static idx_t state_size(duckdb_function_info info) {
	(void)info;
	return sizeof(cells_state);
}

static void state_init(duckdb_function_info info, duckdb_aggregate_state state) {
	(void)info;
	memset(state, 0, sizeof(cells_state));
}

static void release(cells_state *s) {
	for (idx_t c = 0; s->grids && c < s->columns; c++) {
		free(s->grids[c].cells);
	}
	free(s->grids);
	free(s->text);
	s->grids = NULL;
	s->text = NULL;
}

static void state_destroy(duckdb_aggregate_state *states, idx_t count) {
	for (idx_t i = 0; i < count; i++) {
		release((cells_state *)states[i]);
	}
}

static int grid_usable(double origin, double width, double half) {
	return isfinite(origin) && isfinite(width) && width > 0.0 && half >= 0.5 && half <= (double)MAX_HALF;
}

static void grid_set(grid_t *g, double origin, double width, double half) {
	g->origin = origin;
	g->width = width;
	g->half = half;
	if (!grid_usable(origin, width, half)) {
		return; /* cells stay NULL: this column is answered as not counted */
	}
	g->reach = (int32_t)ceil(half);
	int64_t count = 2 * (int64_t)g->reach + 1;
	g->cells = malloc((size_t)count * sizeof(cell_t));
	for (int64_t i = 0; g->cells && i < count; i++) {
		g->cells[i].n = 0;
		g->cells[i].lo = INFINITY;
		g->cells[i].hi = -INFINITY;
	}
}

/* Parse the grids argument (3 * columns integers, each a double's bits) into the state;
 * 0 when it is not that. */
static int grids_parse(cells_state *s, const char *data, uint32_t length, idx_t columns) {
	char *text = malloc((size_t)length + 1);
	grid_t *grids = calloc(columns, sizeof(grid_t));
	if (!text || !grids) {
		free(text);
		free(grids);
		return 0;
	}
	memcpy(text, data, length);
	text[length] = '\0';
	double numbers[3 * MAX_COLUMNS];
	const char *at = text;
	for (idx_t i = 0; i < 3 * columns; i++) {
		char *end;
		errno = 0;
		long long bits = strtoll(at, &end, 10);
		if (end == at || errno || (*end != ' ' && *end != '\0')) {
			free(text);
			free(grids);
			return 0;
		}
		int64_t exact = (int64_t)bits;
		memcpy(&numbers[i], &exact, sizeof(double));
		at = end;
	}
	while (*at == ' ') {
		at++;
	}
	if (*at != '\0' || strlen(text) != length) { /* trailing text, or a NUL inside */
		free(text);
		free(grids);
		return 0;
	}
	for (idx_t c = 0; c < columns; c++) {
		grid_set(&grids[c], numbers[3 * c], numbers[3 * c + 1], numbers[3 * c + 2]);
	}
	s->grids = grids;
	s->columns = columns;
	s->text = text;
	s->length = length;
	return 1;
}

/* The state's grids for this row's argument: set by the first row, repeated by the rest. */
static int grids_ok(cells_state *s, const char *data, uint32_t length, idx_t columns) {
	if (s->bad) {
		return 0;
	}
	if (s->text) {
		if (length == s->length && columns == s->columns && memcmp(data, s->text, length) == 0) {
			return 1;
		}
	} else if (grids_parse(s, data, length, columns)) {
		return 1;
	}
	s->bad = 1;
	return 0;
}

/* DuckDB's validity mask: bit r of the 64-bit words, set when row r is not NULL; no mask
 * at all when no row is NULL. Read inline: the API's function costs a call a row. */
static inline int row_valid(const uint64_t *validity, idx_t row) {
	return !validity || ((validity[row >> 6] >> (row & 63)) & 1);
}

/* The keys of rows [0, m), as doubles: ceil(u) for |u| <= half, computed as r + (r < u)
 * with r = u rounded to the nearest integer by adding and subtracting 1.5 * 2^52 (exact
 * for |u| < 2^51 under the default rounding; the same value as ceil() for such u, -0.0
 * coming out as 0, the same cell). All in doubles and without a branch, so the compiler
 * computes two keys (four with AVX) at once. Non-finite x (counted apart by the caller)
 * take no division result; a u off the grid (cannot happen for a finite x:
 * |d / (|d| + width)| <= 1) gets OFF_GRID. */
static void keys_of(const grid_t *g, const double *x, idx_t m, double *keys) {
	const double origin = g->origin, width = g->width, half = g->half;
	const double round = 6755399441055744.0; /* 1.5 * 2^52 */
	for (idx_t i = 0; i < m; i++) {
		double v = fabs(x[i]) <= DBL_MAX ? x[i] : 0.0;
		double d = v * 0.5 - origin;
		double u = d / (fabs(d) + width) * half;
		int inside = fabs(u) <= half; /* false for NaN */
		u = inside ? u : 0.0;
		double r = (u + round) - round;
		double k = r + (r < u ? 1.0 : 0.0);
		keys[i] = inside ? k : OFF_GRID;
	}
}

static inline void count_in(grid_t *g, cell_t *centre, double v, double k) {
	if (!isfinite(v)) {
		g->nonfinite++;
		return;
	}
	if (k == OFF_GRID) { /* cannot happen; the column is then answered as not counted */
		free(g->cells);
		g->cells = NULL;
		return;
	}
	cell_t *cell = centre + (int32_t)k;
	double lo = cell->lo, hi = cell->hi;
	cell->n++;
	cell->lo = v < lo ? v : lo; /* minsd / maxsd, no branch */
	cell->hi = v > hi ? v : hi;
}

/* Rows [0, rows) of one column into one state's grid. */
static void count_column(grid_t *g, const double *x, const uint64_t *validity, idx_t rows) {
	double keys[BLOCK];
	for (idx_t start = 0; start < rows && g->cells; start += BLOCK) {
		idx_t m = rows - start < BLOCK ? rows - start : BLOCK;
		const double *xs = x + start;
		keys_of(g, xs, m, keys);
		for (idx_t i = 0; i < m && g->cells; i++) {
			if (!row_valid(validity, start + i)) {
				g->nulls++;
			} else {
				count_in(g, g->cells + g->reach, xs[i], keys[i]);
			}
		}
	}
}

static void string_of(duckdb_string_t *value, const char **data, uint32_t *length) {
	*length = duckdb_string_t_length(*value);
	*data = duckdb_string_t_data(value);
}

static void update(duckdb_function_info info, duckdb_data_chunk input, duckdb_aggregate_state *states) {
	(void)info;
	idx_t rows = duckdb_data_chunk_get_size(input);
	idx_t columns = duckdb_data_chunk_get_column_count(input) - 1;
	if (rows == 0 || columns < 1 || columns > MAX_COLUMNS) {
		return;
	}
	duckdb_vector grid_vector = duckdb_data_chunk_get_vector(input, 0);
	duckdb_string_t *grids = (duckdb_string_t *)duckdb_vector_get_data(grid_vector);
	uint64_t *grid_validity = duckdb_vector_get_validity(grid_vector);
	double *data[MAX_COLUMNS];
	uint64_t *validity[MAX_COLUMNS];
	for (idx_t c = 0; c < columns; c++) {
		duckdb_vector vector = duckdb_data_chunk_get_vector(input, c + 1);
		data[c] = (double *)duckdb_vector_get_data(vector);
		validity[c] = duckdb_vector_get_validity(vector);
	}
	/* The common case: one state (no GROUP BY) and the same grids argument on every row
	 * (a constant: DuckDB repeats its 16-byte string header row by row). */
	int uniform = !grid_validity;
	for (idx_t r = 1; uniform && r < rows; r++) {
		uniform = states[r] == states[0] && memcmp(&grids[r], &grids[0], sizeof(duckdb_string_t)) == 0;
	}
	const char *text;
	uint32_t length;
	if (uniform) {
		cells_state *s = (cells_state *)states[0];
		string_of(&grids[0], &text, &length);
		if (!grids_ok(s, text, length, columns)) {
			return;
		}
		for (idx_t c = 0; c < columns; c++) {
			count_column(&s->grids[c], data[c], validity[c], rows);
		}
		return;
	}
	for (idx_t r = 0; r < rows; r++) {
		cells_state *s = (cells_state *)states[r];
		if (!row_valid(grid_validity, r)) {
			s->bad = 1;
			continue;
		}
		string_of(&grids[r], &text, &length);
		if (!grids_ok(s, text, length, columns)) {
			continue;
		}
		for (idx_t c = 0; c < columns; c++) {
			grid_t *g = &s->grids[c];
			if (!g->cells) {
				continue;
			}
			if (!row_valid(validity[c], r)) {
				g->nulls++;
				continue;
			}
			double key;
			keys_of(g, &data[c][r], 1, &key);
			count_in(g, g->cells + g->reach, data[c][r], key);
		}
	}
}

static void combine(duckdb_function_info info, duckdb_aggregate_state *source, duckdb_aggregate_state *target,
                    idx_t count) {
	(void)info;
	for (idx_t j = 0; j < count; j++) {
		cells_state *a = (cells_state *)source[j];
		cells_state *b = (cells_state *)target[j];
		if (a->bad || b->bad) {
			b->bad = 1;
			continue;
		}
		if (!a->text || !grids_ok(b, a->text, a->length, a->columns)) {
			continue;
		}
		for (idx_t c = 0; c < a->columns; c++) {
			grid_t *from = &a->grids[c], *to = &b->grids[c];
			to->nulls += from->nulls;
			to->nonfinite += from->nonfinite;
			if (!from->cells || !to->cells) {
				free(to->cells);
				to->cells = NULL;
				continue;
			}
			for (int64_t i = 0; i < 2 * (int64_t)to->reach + 1; i++) {
				to->cells[i].n += from->cells[i].n;
				if (from->cells[i].lo < to->cells[i].lo) {
					to->cells[i].lo = from->cells[i].lo;
				}
				if (from->cells[i].hi > to->cells[i].hi) {
					to->cells[i].hi = from->cells[i].hi;
				}
			}
		}
	}
}

static unsigned char *put64(unsigned char *out, const void *value) {
	memcpy(out, value, 8); /* x86-64 and aarch64 are little-endian, as the reader expects */
	return out + 8;
}

static int64_t filled_cells(const grid_t *g) {
	int64_t filled = 0;
	for (int64_t i = 0; g->cells && i < 2 * (int64_t)g->reach + 1; i++) {
		filled += g->cells[i].n > 0;
	}
	return filled;
}

/* One column's part of the answer; ``g`` NULL: a column of a state that saw no row. */
static unsigned char *answer_column(unsigned char *at, const grid_t *g) {
	static const grid_t none;
	int64_t cells = !g ? 0 : g->cells ? filled_cells(g) : -1;
	g = g ? g : &none;
	at = put64(at, &g->nulls);
	at = put64(at, &g->nonfinite);
	at = put64(at, &cells);
	for (int64_t i = 0; g->cells && i < 2 * (int64_t)g->reach + 1; i++) {
		const cell_t *cell = &g->cells[i];
		if (cell->n) {
			double key = (double)(i - g->reach);
			at = put64(at, &key);
			at = put64(at, &cell->n);
			at = put64(at, &cell->lo);
			at = put64(at, &cell->hi);
		}
	}
	return at;
}

static void finalize(duckdb_function_info info, duckdb_aggregate_state *source, duckdb_vector result, idx_t count,
                     idx_t offset) {
	idx_t arity = (idx_t)(uintptr_t)duckdb_aggregate_function_get_extra_info(info);
	duckdb_vector_ensure_validity_writable(result);
	uint64_t *validity = duckdb_vector_get_validity(result);
	for (idx_t j = 0; j < count; j++) {
		cells_state *s = (cells_state *)source[j];
		if (s->bad) {
			duckdb_validity_set_row_invalid(validity, offset + j);
			continue;
		}
		/* No row: every column counted nothing (an empty grid, not an unusable one). */
		idx_t columns = s->grids ? s->columns : arity;
		size_t size = 0;
		for (idx_t c = 0; c < columns; c++) {
			size += 24 + (size_t)(s->grids ? filled_cells(&s->grids[c]) : 0) * 32;
		}
		unsigned char *blob = malloc(size ? size : 1);
		if (!blob) {
			duckdb_validity_set_row_invalid(validity, offset + j);
			continue;
		}
		unsigned char *at = blob;
		for (idx_t c = 0; c < columns; c++) {
			at = answer_column(at, s->grids ? &s->grids[c] : NULL);
		}
		duckdb_vector_assign_string_element_len(result, offset + j, (const char *)blob, size);
		free(blob);
	}
}

/* ---- stat_guard_values ------------------------------------------------------------ */

typedef struct {
	double *values;
	idx_t count;
	idx_t capacity;
} column_values;

typedef struct {
	column_values *columns; /* one a column, once the first row came */
	idx_t width;
	int bad; /* out of memory: the answer is NULL */
} values_state;

static idx_t values_size(duckdb_function_info info) {
	(void)info;
	return sizeof(values_state);
}

static void values_init(duckdb_function_info info, duckdb_aggregate_state state) {
	(void)info;
	memset(state, 0, sizeof(values_state));
}

static void values_release(values_state *s) {
	for (idx_t c = 0; s->columns && c < s->width; c++) {
		free(s->columns[c].values);
	}
	free(s->columns);
	s->columns = NULL;
}

static void values_destroy(duckdb_aggregate_state *states, idx_t count) {
	for (idx_t i = 0; i < count; i++) {
		values_release((values_state *)states[i]);
	}
}

/* Room for ``more`` values in every column of the state; 0 (and the state bad) if not. */
static int values_room(values_state *s, idx_t width, idx_t more) {
	if (s->bad) {
		return 0;
	}
	if (!s->columns) {
		s->columns = calloc(width, sizeof(column_values));
		s->width = width;
	}
	if (!s->columns || s->width != width) {
		s->bad = 1;
		return 0;
	}
	for (idx_t c = 0; c < width; c++) {
		column_values *column = &s->columns[c];
		if (column->count + more <= column->capacity) {
			continue;
		}
		idx_t capacity = column->capacity ? column->capacity : 1024;
		while (capacity < column->count + more) {
			capacity *= 2;
		}
		double *grown = realloc(column->values, capacity * sizeof(double));
		if (!grown) {
			s->bad = 1;
			return 0;
		}
		column->values = grown;
		column->capacity = capacity;
	}
	return 1;
}

static void values_update(duckdb_function_info info, duckdb_data_chunk input, duckdb_aggregate_state *states) {
	(void)info;
	idx_t rows = duckdb_data_chunk_get_size(input);
	idx_t width = duckdb_data_chunk_get_column_count(input);
	if (rows == 0 || width < 1 || width > MAX_COLUMNS) {
		return;
	}
	int uniform = 1;
	for (idx_t r = 1; uniform && r < rows; r++) {
		uniform = states[r] == states[0];
	}
	for (idx_t c = 0; c < width; c++) {
		duckdb_vector vector = duckdb_data_chunk_get_vector(input, c);
		const double *x = (const double *)duckdb_vector_get_data(vector);
		const uint64_t *validity = duckdb_vector_get_validity(vector);
		if (uniform) {
			values_state *s = (values_state *)states[0];
			if (!values_room(s, width, rows)) {
				return;
			}
			column_values *column = &s->columns[c];
			for (idx_t r = 0; r < rows; r++) {
				if (row_valid(validity, r) && isfinite(x[r])) {
					column->values[column->count++] = x[r];
				}
			}
			continue;
		}
		for (idx_t r = 0; r < rows; r++) {
			values_state *s = (values_state *)states[r];
			if (values_room(s, width, 1) && row_valid(validity, r) && isfinite(x[r])) {
				column_values *column = &s->columns[c];
				column->values[column->count++] = x[r];
			}
		}
	}
}

static void values_combine(duckdb_function_info info, duckdb_aggregate_state *source,
                           duckdb_aggregate_state *target, idx_t count) {
	(void)info;
	for (idx_t j = 0; j < count; j++) {
		values_state *a = (values_state *)source[j];
		values_state *b = (values_state *)target[j];
		if (a->bad) {
			b->bad = 1;
		}
		if (!a->columns || b->bad) {
			continue;
		}
		idx_t most = 0;
		for (idx_t c = 0; c < a->width; c++) {
			most = a->columns[c].count > most ? a->columns[c].count : most;
		}
		if (!values_room(b, a->width, most)) {
			continue;
		}
		for (idx_t c = 0; c < a->width; c++) {
			column_values *from = &a->columns[c], *to = &b->columns[c];
			memcpy(to->values + to->count, from->values, from->count * sizeof(double));
			to->count += from->count;
		}
	}
}

static int ascending(const void *a, const void *b) {
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void values_finalize(duckdb_function_info info, duckdb_aggregate_state *source, duckdb_vector result,
                            idx_t count, idx_t offset) {
	idx_t arity = (idx_t)(uintptr_t)duckdb_aggregate_function_get_extra_info(info);
	duckdb_vector_ensure_validity_writable(result);
	uint64_t *validity = duckdb_vector_get_validity(result);
	for (idx_t j = 0; j < count; j++) {
		values_state *s = (values_state *)source[j];
		size_t size = 8 * (size_t)arity;
		for (idx_t c = 0; s->columns && c < s->width; c++) {
			size += 8 * (size_t)s->columns[c].count;
		}
		unsigned char *blob = s->bad ? NULL : malloc(size);
		if (!blob) {
			duckdb_validity_set_row_invalid(validity, offset + j);
			continue;
		}
		unsigned char *at = blob;
		for (idx_t c = 0; c < arity; c++) {
			column_values *column = s->columns && c < s->width ? &s->columns[c] : NULL;
			int64_t n = column ? (int64_t)column->count : 0;
			at = put64(at, &n);
			if (n) {
				qsort(column->values, column->count, sizeof(double), ascending);
				memcpy(at, column->values, column->count * sizeof(double));
				at += column->count * sizeof(double);
			}
		}
		duckdb_vector_assign_string_element_len(result, offset + j, (const char *)blob, size);
		free(blob);
	}
}

static int register_values_arity(duckdb_aggregate_function_set set, idx_t columns) {
	duckdb_aggregate_function function = duckdb_create_aggregate_function();
	duckdb_aggregate_function_set_name(function, "stat_guard_values");
	duckdb_logical_type number = duckdb_create_logical_type(DUCKDB_TYPE_DOUBLE);
	duckdb_logical_type blob = duckdb_create_logical_type(DUCKDB_TYPE_BLOB);
	for (idx_t c = 0; c < columns; c++) {
		duckdb_aggregate_function_add_parameter(function, number);
	}
	duckdb_aggregate_function_set_return_type(function, blob);
	duckdb_aggregate_function_set_functions(function, values_size, values_init, values_update, values_combine,
	                                        values_finalize);
	duckdb_aggregate_function_set_destructor(function, values_destroy);
	duckdb_aggregate_function_set_special_handling(function); /* NULL rows reach the update */
	duckdb_aggregate_function_set_extra_info(function, (void *)(uintptr_t)columns, NULL);
	duckdb_state added = duckdb_add_aggregate_function_to_set(set, function);
	duckdb_destroy_aggregate_function(&function);
	duckdb_destroy_logical_type(&number);
	duckdb_destroy_logical_type(&blob);
	return added == DuckDBSuccess;
}

/* ---- stat_guard_merge -------------------------------------------------------------- */

typedef struct {
	int64_t nulls;
	int64_t nonfinite;
	int64_t cells; /* -1: the grid was refused */
	const unsigned char *first; /* its first cell: key, count, min, max */
} part_t;

static int64_t get64(const unsigned char *at) {
	int64_t value;
	memcpy(&value, at, 8);
	return value;
}

static double get_double(const unsigned char *at) {
	double value;
	memcpy(&value, at, 8);
	return value;
}

/* The next column's part of an answer; 0 when the bytes left do not hold one. */
static int next_part(const unsigned char **at, const unsigned char *end, part_t *part) {
	if (end - *at < 24) {
		return 0;
	}
	part->nulls = get64(*at);
	part->nonfinite = get64(*at + 8);
	part->cells = get64(*at + 16);
	*at += 24;
	part->first = *at;
	if (part->cells == -1) {
		return 1;
	}
	if (part->cells < 0 || (uint64_t)part->cells > (uint64_t)(end - *at) / 32) {
		return 0;
	}
	*at += part->cells * 32;
	return 1;
}

typedef struct {
	int64_t n[2];
	double lo[2];
	double hi[2];
} merged_t;

/* Both parts' cells in key order into ``out`` (room for h->cells + c->cells), joining
 * overlapping ones; returns how many. */
static int64_t merge_parts(const part_t *h, const part_t *c, merged_t *out) {
	int64_t i = 0, j = 0, count = 0;
	double reach = -INFINITY; /* the largest value so far */
	while (i < h->cells || j < c->cells) {
		double hk = i < h->cells ? get_double(h->first + 32 * i) : INFINITY;
		double ck = j < c->cells ? get_double(c->first + 32 * j) : INFINITY;
		merged_t cell = {{0, 0}, {INFINITY, INFINITY}, {-INFINITY, -INFINITY}};
		int take_h = i < h->cells && !(ck < hk);
		int take_c = j < c->cells && !(hk < ck);
		if (!take_h && !take_c) { /* keys that compare as neither (NaN): one at a time */
			take_h = i < h->cells;
			take_c = !take_h;
		}
		if (take_h) {
			const unsigned char *at = h->first + 32 * i++;
			cell.n[0] = get64(at + 8);
			cell.lo[0] = get_double(at + 16);
			cell.hi[0] = get_double(at + 24);
		}
		if (take_c) {
			const unsigned char *at = c->first + 32 * j++;
			cell.n[1] = get64(at + 8);
			cell.lo[1] = get_double(at + 16);
			cell.hi[1] = get_double(at + 24);
		}
		if (count && (cell.lo[0] <= reach || cell.lo[1] <= reach)) {
			merged_t *previous = &out[count - 1];
			for (int w = 0; w < 2; w++) {
				previous->n[w] += cell.n[w];
				previous->lo[w] = cell.lo[w] < previous->lo[w] ? cell.lo[w] : previous->lo[w];
				previous->hi[w] = cell.hi[w] > previous->hi[w] ? cell.hi[w] : previous->hi[w];
			}
		} else {
			out[count++] = cell;
		}
		for (int w = 0; w < 2; w++) {
			reach = cell.hi[w] > reach ? cell.hi[w] : reach;
		}
	}
	return count;
}

/* One row's answer, or NULL (0) when an input is malformed or memory is short. */
static int merge_row(duckdb_string_t *historical, duckdb_string_t *current, duckdb_vector result, idx_t row) {
	const unsigned char *h_at = (const unsigned char *)duckdb_string_t_data(historical);
	const unsigned char *c_at = (const unsigned char *)duckdb_string_t_data(current);
	const unsigned char *h_end = h_at + duckdb_string_t_length(*historical);
	const unsigned char *c_end = c_at + duckdb_string_t_length(*current);
	/* At most 40 bytes a column and 48 a cell: 24 and 32 of the inputs' own. */
	size_t room = 2 * (size_t)(h_end - h_at) + 2 * (size_t)(c_end - c_at) + 40;
	unsigned char *blob = malloc(room);
	merged_t *cells = NULL;
	unsigned char *out = blob;
	int ok = blob != NULL;
	while (ok && (h_at < h_end || c_at < c_end)) {
		part_t h, c;
		ok = next_part(&h_at, h_end, &h) && next_part(&c_at, c_end, &c);
		if (!ok) {
			break;
		}
		int refused = h.cells < 0 || c.cells < 0;
		int64_t most = refused ? 0 : h.cells + c.cells;
		merged_t *grown = realloc(cells, (size_t)(most ? most : 1) * sizeof(merged_t));
		ok = grown != NULL;
		if (!ok) {
			break;
		}
		cells = grown;
		int64_t count = refused ? -1 : merge_parts(&h, &c, cells);
		out = put64(out, &h.nulls);
		out = put64(out, &h.nonfinite);
		out = put64(out, &c.nulls);
		out = put64(out, &c.nonfinite);
		out = put64(out, &count);
		for (int64_t k = 0; k < count; k++) {
			for (int w = 0; w < 2; w++) {
				out = put64(out, &cells[k].n[w]);
				out = put64(out, &cells[k].lo[w]);
				out = put64(out, &cells[k].hi[w]);
			}
		}
	}
	if (ok) {
		duckdb_vector_assign_string_element_len(result, row, (const char *)blob, (idx_t)(out - blob));
	}
	free(cells);
	free(blob);
	return ok;
}

static void merge_function(duckdb_function_info info, duckdb_data_chunk input, duckdb_vector output) {
	(void)info;
	idx_t rows = duckdb_data_chunk_get_size(input);
	duckdb_vector first = duckdb_data_chunk_get_vector(input, 0);
	duckdb_vector second = duckdb_data_chunk_get_vector(input, 1);
	duckdb_string_t *historical = (duckdb_string_t *)duckdb_vector_get_data(first);
	duckdb_string_t *current = (duckdb_string_t *)duckdb_vector_get_data(second);
	uint64_t *h_valid = duckdb_vector_get_validity(first);
	uint64_t *c_valid = duckdb_vector_get_validity(second);
	duckdb_vector_ensure_validity_writable(output);
	uint64_t *validity = duckdb_vector_get_validity(output);
	for (idx_t r = 0; r < rows; r++) {
		if (!row_valid(h_valid, r) || !row_valid(c_valid, r) ||
		    !merge_row(&historical[r], &current[r], output, r)) {
			duckdb_validity_set_row_invalid(validity, r);
		}
	}
}

static int register_merge(duckdb_connection connection) {
	duckdb_scalar_function function = duckdb_create_scalar_function();
	duckdb_scalar_function_set_name(function, "stat_guard_merge");
	duckdb_logical_type blob = duckdb_create_logical_type(DUCKDB_TYPE_BLOB);
	duckdb_scalar_function_add_parameter(function, blob);
	duckdb_scalar_function_add_parameter(function, blob);
	duckdb_scalar_function_set_return_type(function, blob);
	duckdb_scalar_function_set_function(function, merge_function);
	duckdb_state registered = duckdb_register_scalar_function(connection, function);
	duckdb_destroy_scalar_function(&function);
	duckdb_destroy_logical_type(&blob);
	return registered == DuckDBSuccess;
}

/* ---- registration ------------------------------------------------------------------ */

static int register_arity(duckdb_aggregate_function_set set, idx_t columns) {
	duckdb_aggregate_function function = duckdb_create_aggregate_function();
	duckdb_aggregate_function_set_name(function, "stat_guard_cells");
	duckdb_logical_type text = duckdb_create_logical_type(DUCKDB_TYPE_VARCHAR);
	duckdb_logical_type number = duckdb_create_logical_type(DUCKDB_TYPE_DOUBLE);
	duckdb_logical_type blob = duckdb_create_logical_type(DUCKDB_TYPE_BLOB);
	duckdb_aggregate_function_add_parameter(function, text);
	for (idx_t c = 0; c < columns; c++) {
		duckdb_aggregate_function_add_parameter(function, number);
	}
	duckdb_aggregate_function_set_return_type(function, blob);
	duckdb_aggregate_function_set_functions(function, state_size, state_init, update, combine, finalize);
	duckdb_aggregate_function_set_destructor(function, state_destroy);
	duckdb_aggregate_function_set_special_handling(function); /* NULL x is counted, not skipped */
	duckdb_aggregate_function_set_extra_info(function, (void *)(uintptr_t)columns, NULL);
	duckdb_state added = duckdb_add_aggregate_function_to_set(set, function);
	duckdb_destroy_aggregate_function(&function);
	duckdb_destroy_logical_type(&text);
	duckdb_destroy_logical_type(&number);
	duckdb_destroy_logical_type(&blob);
	return added == DuckDBSuccess;
}

DUCKDB_EXTENSION_ENTRYPOINT(duckdb_connection connection, duckdb_extension_info info,
                            struct duckdb_extension_access *access) {
	duckdb_aggregate_function_set set = duckdb_create_aggregate_function_set("stat_guard_cells");
	duckdb_aggregate_function_set values = duckdb_create_aggregate_function_set("stat_guard_values");
	int ok = 1;
	for (idx_t columns = 1; ok && columns <= MAX_COLUMNS; columns++) {
		ok = register_arity(set, columns) && register_values_arity(values, columns);
	}
	ok = ok && duckdb_register_aggregate_function_set(connection, set) == DuckDBSuccess;
	ok = ok && duckdb_register_aggregate_function_set(connection, values) == DuckDBSuccess;
	ok = ok && register_merge(connection);
	duckdb_destroy_aggregate_function_set(&set);
	duckdb_destroy_aggregate_function_set(&values);
	if (!ok) {
		access->set_error(info, "stat_guard_cells: could not register the aggregates");
		return false;
	}
	return true;
}
