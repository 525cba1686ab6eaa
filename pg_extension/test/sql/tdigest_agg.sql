-- Aggregates: tdigest_agg(value [, compression]) and tdigest_merge(tdigest).
\set VERBOSITY terse

-- Zero rows give an empty digest; NULL, NaN and +/-Infinity are counted, never summarised.
SELECT tdigest_agg(x) FROM generate_series(1, 0) x;
SELECT tdigest_agg(x) FROM (VALUES (NULL::float8), (NULL)) v(x);
SELECT tdigest_agg(x) FROM (VALUES (1.0::float8), (NULL), ('NaN'), ('Infinity'), ('-Infinity'), ('NaN'), (-0.0), (2.5)) v(x);
SELECT tdigest_agg(x) FROM (VALUES (42.5::float8)) v(x);

-- Small inputs keep every value as its own centroid.
SELECT tdigest_agg(x) FROM generate_series(1, 10) x;

-- Huge and tiny magnitudes: means never overflow, M2 may (+Infinity).
SELECT tdigest_agg(x) FROM (VALUES (1e308::float8), (-1e308), (5e-324), (-5e-324), (1e308), (1e308)) v(x);
SELECT tdigest_count(d), tdigest_min(d), tdigest_max(d), tdigest_sum(d), tdigest_mean(d), tdigest_stddev(d),
       tdigest_quantile(d, 0.5)
FROM (SELECT tdigest_agg(CASE WHEN x % 2 = 0 THEN 1e308 ELSE 1.5e308 END, 10) d FROM generate_series(1, 100000) x) s;
SELECT bool_and(m >= -1e308 AND m <= 1e308) AS means_in_range
FROM (SELECT tdigest_agg(CASE WHEN x % 2 = 0 THEN 1e308 ELSE -1e308 END * (1 - x * 1e-9), 10)::text::jsonb AS j
      FROM generate_series(1, 100000) x) s,
     LATERAL (SELECT (c ->> 0)::float8 AS m FROM jsonb_array_elements(j -> 'centroids') c) cs;

-- Compression argument: 10..10000, not NULL.
SELECT tdigest_compression(tdigest_agg(x, 10)), tdigest_compression(tdigest_agg(x, 10000)) FROM generate_series(1, 100) x;
SELECT tdigest_agg(x, 9) FROM generate_series(1, 100) x;
SELECT tdigest_agg(x, 10001) FROM generate_series(1, 100) x;
SELECT tdigest_agg(x, -5) FROM generate_series(1, 100) x;
SELECT tdigest_agg(x, NULL) FROM generate_series(1, 100) x;
SELECT tdigest_compression(tdigest_agg(x)) AS default_compression FROM generate_series(1, 100) x;

-- Larger inputs: counts, extremes and moments are exact; centroids stay few.
SELECT tdigest_count(d), tdigest_min(d), tdigest_max(d), tdigest_sum(d), tdigest_mean(d),
       round(tdigest_stddev(d)::numeric, 6) AS stddev, tdigest_centroid_count(d) < 150 AS compact
FROM (SELECT tdigest_agg(x) d FROM generate_series(1, 1000000) x) s;
SELECT round(tdigest_quantile(d, 0.5)::numeric, 0) AS median,
       abs(tdigest_quantile(d, 0.99) - 990000) < 2000 AS p99_close,
       abs(tdigest_cdf(d, 250000) - 0.25) < 0.002 AS cdf_close
FROM (SELECT tdigest_agg(x) d FROM generate_series(1, 1000000) x) s;

-- GROUP BY and rolling stored digests up with tdigest_merge.
CREATE TEMP TABLE digests AS
SELECT g, tdigest_agg(x::float8) AS d FROM generate_series(1, 100000) x, LATERAL (SELECT x % 10 AS g) gg GROUP BY g;
SELECT count(*), sum(tdigest_count(d)) FROM digests;
SELECT tdigest_count(m), tdigest_min(m), tdigest_max(m), tdigest_sum(m),
       abs(tdigest_quantile(m, 0.5) - 50000) < 500 AS median_close
FROM (SELECT tdigest_merge(d) m FROM digests) s;
SELECT tdigest_merge(d) FROM digests WHERE false;
SELECT tdigest_count(tdigest_merge(d)) FROM (SELECT NULL::tdigest d UNION ALL SELECT d FROM digests WHERE g = 1) s;
-- Merging keeps the NULL/NaN/Inf counts and the largest compression.
SELECT tdigest_merge(d) FROM (VALUES
  ('{"compression": 10, "count": 1, "null_count": 2, "nan_count": 3, "pos_inf_count": 4, "neg_inf_count": 5, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]}'::tdigest),
  ('{"compression": 50, "count": 0, "null_count": 1, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0, "centroids": []}'::tdigest),
  ('{"compression": 20, "count": 2, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": -1, "max": 3, "sum": 2, "sum_sq": 10, "centroids": [[-1, 1], [3, 1]]}'::tdigest)) v(d);
-- Counters that would overflow 64 bits are an error, not a wrap-around.
SELECT tdigest_merge(d) FROM (VALUES
  ('{"compression": 10, "count": 0, "null_count": 18446744073709551615, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0, "centroids": []}'::tdigest),
  ('{"compression": 10, "count": 0, "null_count": 1, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0, "centroids": []}'::tdigest)) v(d);
-- Opposite infinite sums do not make NaN.
SELECT tdigest_sum(tdigest_merge(d)) FROM (VALUES
  ('{"compression": 10, "count": 2, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1e+308, "max": 1e+308, "sum": "Infinity", "sum_sq": "Infinity", "centroids": [[1e+308, 2]]}'::tdigest),
  ('{"compression": 10, "count": 2, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": -1e+308, "max": -1e+308, "sum": "-Infinity", "sum_sq": "Infinity", "centroids": [[-1e+308, 2]]}'::tdigest)) v(d);

-- Parallel plans: partial aggregates in workers, combined in the leader.
CREATE TABLE tdigest_parallel_values AS
SELECT CASE WHEN x % 1000 = 0 THEN NULL ELSE (x % 9973)::float8 / 16 END AS v FROM generate_series(1, 400000) x;
ANALYZE tdigest_parallel_values;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT tdigest_agg(v) FROM tdigest_parallel_values;
-- Workers really ran (the leader does not scan), so states crossed serialize/deserialize.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT tdigest_agg(v) FROM tdigest_parallel_values;
CREATE TABLE tdigest_parallel_digests AS SELECT g, tdigest_agg(v) AS d FROM tdigest_parallel_values, LATERAL (SELECT floor(v)::int % 50 AS g) gg GROUP BY g;
ANALYZE tdigest_parallel_digests;
EXPLAIN (COSTS OFF) SELECT tdigest_merge(d) FROM tdigest_parallel_digests;
SELECT tdigest_count(tdigest_merge(d)) FROM tdigest_parallel_digests;
CREATE TEMP TABLE parallel_result AS SELECT tdigest_agg(v) AS d FROM tdigest_parallel_values;
RESET parallel_leader_participation;
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE serial_result AS SELECT tdigest_agg(v) AS d FROM tdigest_parallel_values;
SELECT tdigest_count(p.d) = tdigest_count(s.d) AS same_count,
       tdigest_min(p.d) = tdigest_min(s.d) AND tdigest_max(p.d) = tdigest_max(s.d) AS same_extremes,
       tdigest_sum(p.d) = tdigest_sum(s.d) AS same_sum,
       (tdigest_invalid_counts(p.d)).null_count = (tdigest_invalid_counts(s.d)).null_count AS same_nulls,
       (SELECT max(abs(a - b)) FROM unnest(tdigest_cdf(p.d, ARRAY(SELECT g / 10.0 FROM generate_series(0, 6300) g)),
                                           tdigest_cdf(s.d, ARRAY(SELECT g / 10.0 FROM generate_series(0, 6300) g))) u(a, b)) < 0.02 AS close_cdf
FROM parallel_result p, serial_result s;
DROP TABLE tdigest_parallel_values, tdigest_parallel_digests;
