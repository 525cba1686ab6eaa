-- Reading digests: quantiles, CDF and the summary accessors.
\set VERBOSITY terse

CREATE TEMP TABLE d AS SELECT tdigest_agg(x) AS d FROM (VALUES (1.0::float8), (2.0), (2.0), (3.0), (5.5), (NULL), ('NaN'), (-1.25)) v(x);
SELECT d FROM d;

-- cdf: P(X <= x) with the anchors of docs/wire-format.md section 2.
SELECT x, tdigest_cdf(d, x) FROM d, unnest(ARRAY[-1e308, -2, -1.25, 0, 1, 1.5, 2, 2.5, 3, 5.5, 6, 1e308, '-Infinity', 'Infinity']::float8[]) x;
SELECT tdigest_cdf(d, ARRAY[-2, 2, NULL, 5.5]::float8[]) FROM d;
SELECT tdigest_cdf(d, ARRAY[[1, 2], [3, 4]]::float8[]) FROM d;
SELECT tdigest_cdf(d, 'NaN'::float8) FROM d;
SELECT tdigest_cdf(d, ARRAY[1, 'NaN']::float8[]) FROM d;

-- quantile: q in [0, 1]; 0 and 1 give min and max.
SELECT q, tdigest_quantile(d, q) FROM d, unnest(ARRAY[0, 0.001, 0.1, 1.0/6, 0.25, 0.5, 0.75, 0.9, 0.999, 1]::float8[]) q;
SELECT tdigest_quantile(d, ARRAY[0, 0.5, NULL, 1]::float8[]) FROM d;
SELECT tdigest_quantile(d, '{}'::float8[]) FROM d;
SELECT tdigest_quantile(d, -0.1) FROM d;
SELECT tdigest_quantile(d, 1.5) FROM d;
SELECT tdigest_quantile(d, 'NaN'::float8) FROM d;
SELECT tdigest_quantile(d, 'Infinity'::float8) FROM d;
SELECT tdigest_quantile(d, ARRAY[0.5, 2]::float8[]) FROM d;

-- Summaries.
SELECT tdigest_count(d), tdigest_min(d), tdigest_max(d), tdigest_sum(d), tdigest_mean(d),
       tdigest_stddev(d), tdigest_compression(d), tdigest_centroid_count(d) FROM d;
SELECT * FROM tdigest_invalid_counts((SELECT d FROM d));

-- Empty digest: no distribution, count 0.
CREATE TEMP TABLE e AS SELECT tdigest_agg(x) AS d FROM (VALUES (NULL::float8), ('NaN'), ('Infinity')) v(x);
SELECT tdigest_count(d), tdigest_min(d), tdigest_max(d), tdigest_sum(d), tdigest_mean(d), tdigest_stddev(d),
       tdigest_quantile(d, 0.5), tdigest_cdf(d, 0), tdigest_quantile(d, ARRAY[0.5]::float8[]),
       tdigest_cdf(d, ARRAY[0]::float8[]) FROM e;
SELECT * FROM tdigest_invalid_counts((SELECT d FROM e));
-- Arguments are still checked for an empty digest.
SELECT tdigest_quantile(d, 2) FROM e;

-- A single value: an atom.
SELECT tdigest_quantile(d, 0.3), tdigest_cdf(d, 42.4), tdigest_cdf(d, 42.5), tdigest_stddev(d), tdigest_mean(d)
FROM (SELECT tdigest_agg(42.5::float8) d) s;

-- Constant input: one value however many rows.
SELECT tdigest_quantile(d, 0.5), tdigest_cdf(d, 7), tdigest_cdf(d, 6.999), tdigest_stddev(d), tdigest_centroid_count(d) > 0
FROM (SELECT tdigest_agg(7.0::float8) d FROM generate_series(1, 100000)) s;

-- Huge constant values: the mean stays finite, the spread is 0, the sum (mean * count) overflows.
SELECT tdigest_sum(d), tdigest_mean(d), tdigest_stddev(d)
FROM (SELECT tdigest_agg(1e308::float8) d FROM generate_series(1, 3)) s;

-- Known distributions: uniform ranks are linear, quantiles invert the CDF.
SELECT max(abs(tdigest_cdf(d, g * 1000.0) - g / 1000.0)) < 0.002 AS uniform_cdf_ok,
       max(abs(tdigest_quantile(d, g / 1000.0) - g * 1000.0)) < 2000 AS uniform_quantile_ok
FROM (SELECT tdigest_agg(x::float8) d FROM generate_series(1, 1000000) x) s, generate_series(1, 999) g;
