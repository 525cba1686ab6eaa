-- Text and binary forms of the tdigest type.
\set VERBOSITY terse

-- The text form is JSON; it round-trips exactly, shortest doubles included.
SELECT '{"compression": 100, "count": 3, "null_count": 1, "nan_count": 2, "pos_inf_count": 3, "neg_inf_count": 4, "min": 0.1, "max": 3.3000000000000003, "sum": 5.4, "sum_sq": 14.12, "centroids": [[0.1, 1], [2, 1], [3.3000000000000003, 1]]}'::tdigest;
SELECT t::tdigest::text = t AS round_trips
FROM (SELECT tdigest_agg(x / 7.0)::text AS t FROM generate_series(1, 5000) x) s;
SELECT tdigest_agg(x)::text::jsonb ->> 'count' AS count_via_jsonb FROM generate_series(1, 10) x;

-- Whitespace and key order are free.
SELECT '  { "centroids" : [ [ 0 , 2 ] ] , "count":2,"compression":10,"null_count":0,"nan_count":0,"pos_inf_count":0,"neg_inf_count":0,"min":0,"max":0,"sum":0,"sum_sq":0 } '::tdigest;

-- Empty digest, overflowed sums, extreme magnitudes.
SELECT '{"compression": 10, "count": 0, "null_count": 5, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0, "centroids": []}'::tdigest;
SELECT '{"compression": 10, "count": 2, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1e+308, "max": 1.7976931348623157e+308, "sum": "Infinity", "sum_sq": "Infinity", "centroids": [[1e+308, 1], [1.7976931348623157e+308, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 2, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": -5e-324, "max": 5e-324, "sum": 0, "sum_sq": 0, "centroids": [[-5e-324, 1], [5e-324, 1]]}'::tdigest;

-- bytea casts carry the wire format; bytea -> tdigest validates.
SELECT encode(tdigest_agg(x)::bytea, 'hex') FROM (VALUES (1.5::float8), (NULL)) v(x);
SELECT tdigest_agg(x)::bytea::tdigest::text = tdigest_agg(x)::text AS bytea_round_trip FROM generate_series(1, 1000) x;
SELECT tdigest_send(d) = d::bytea AS send_is_bytea FROM (SELECT tdigest_agg(x) d FROM generate_series(1, 100) x) s;
SELECT '\x'::bytea::tdigest;
SELECT '\x50534744'::bytea::tdigest;
SELECT (tdigest_agg(x)::bytea || '\x00'::bytea)::tdigest FROM generate_series(1, 10) x;
SELECT substr(tdigest_agg(x)::bytea, 1, 100)::tdigest FROM generate_series(1, 10) x;
SELECT substr(tdigest_agg(x)::bytea, 1, 60)::tdigest FROM generate_series(1, 10) x;
SELECT overlay(tdigest_agg(x)::bytea PLACING '\x01'::bytea FROM 6)::tdigest FROM generate_series(1, 10) x;

-- Malformed text: every rule of the binary reader applies, and the syntax is strict.
SELECT ''::tdigest;
SELECT '{}'::tdigest;
SELECT 'null'::tdigest;
SELECT '{"compression": 9, "count": 0, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0, "centroids": []}'::tdigest;
SELECT '{"compression": 10001, "count": 0, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0, "centroids": []}'::tdigest;
SELECT '{"compression": 10, "count": 0, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0}'::tdigest;
SELECT '{"compression": 10, "count": 0, "count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0, "centroids": []}'::tdigest;
SELECT '{"compression": 10, "count": 0, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 0, "max": 0, "sum": 0, "sum_sq": 0, "centroids": [], "extra": 1}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 2]]}'::tdigest;
SELECT '{"compression": 10, "count": 2, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 2, "sum": 3, "sum_sq": 5, "centroids": [[2, 1], [1, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [["NaN", 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[NaN, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [["Infinity", 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1e999, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[0x1p0, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[2, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 0]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": -1, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 18446744073709551616, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": -1, "centroids": [[1, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": "Infinity", "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": -0, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 0, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 0, "sum_sq": 0, "centroids": []}'::tdigest;
SELECT '{"compression": 10, "count": 2, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 2, "sum_sq": 2, "centroids": [[1, 18446744073709551615], [1, 3]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]} x'::tdigest;
SELECT '{"compression": 010, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1., "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": -1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[-0, 1]]}'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1]]'::tdigest;
SELECT '{"compression": 10, "count": 1, "null_count": 0, "nan_count": 0, "pos_inf_count": 0, "neg_inf_count": 0, "min": 1, "max": 1, "sum": 1, "sum_sq": 1, "centroids": [[1, 1], ]}'::tdigest;
