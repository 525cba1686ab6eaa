-- The golden vectors of docs/wire-format.md section 6 (test/golden/): the version 3 files
-- decode to the fields golden.json lists, encode back to the same bytes, give the same
-- cdf/quantile values as the Python reader; the version 1 and 2 files (test/golden/v1/,
-- test/golden/v2/) read as documented and are written back as the version 3 bytes listed;
-- every malformed input is rejected.
\set VERBOSITY terse
\set golden `cat test/golden/golden.json`
\set files `cd test/golden && for f in *.psgd v1/*.psgd v2/*.psgd; do printf '%s %s\n' "$f" "$(od -An -tx1 -v "$f" | tr -d ' \n')"; done`

CREATE TEMP TABLE golden AS SELECT :'golden'::jsonb AS j;
CREATE TEMP TABLE golden_file AS
SELECT split_part(line, ' ', 1) AS file, decode(split_part(line, ' ', 2), 'hex') AS bytes
FROM regexp_split_to_table(:'files', '\n') line;

-- golden.json numbers: JSON numbers, or the strings "Infinity" / "-Infinity".
CREATE FUNCTION pg_temp.num(v jsonb) RETURNS float8 LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE jsonb_typeof(v) WHEN 'null' THEN NULL WHEN 'string' THEN (v #>> '{}')::float8 ELSE (v::text)::float8 END $$;
-- Equal, or within 4 ulps (the readers may round differently in the last bits).
CREATE FUNCTION pg_temp.close(a float8, b float8) RETURNS bool LANGUAGE sql IMMUTABLE AS
$$ SELECT (a IS NULL AND b IS NULL) OR a = b OR abs(a - b) <= 4 * 2.220446049250313e-16 * greatest(abs(a), abs(b)) $$;

CREATE TEMP TABLE golden_digest AS
SELECT e.key AS name, e.value AS g, f.bytes, f.bytes::tdigest AS d
FROM golden, jsonb_each(j -> 'digests') e JOIN golden_file f ON f.file = e.value ->> 'file';

-- Every check below lists the digests that fail it: all lists are empty.
SELECT count(*) >= 7 AS has_golden_digests FROM golden_digest;

-- The file is the documented hex; send and the bytea cast give the same bytes back,
-- and so does a trip through the text form.
SELECT name AS bytes_differ FROM golden_digest
WHERE NOT (encode(bytes, 'hex') = g ->> 'hex' AND tdigest_send(d) = bytes AND d::bytea = bytes
           AND d::text::tdigest::bytea = bytes);

-- Decoded fields.
CREATE TEMP TABLE golden_fields AS
SELECT name,
       tdigest_compression(d) = (g ->> 'compression')::int AS compression,
       tdigest_count(d) = (g ->> 'count')::numeric AS count,
       (tdigest_invalid_counts(d)).null_count = (g ->> 'null_count')::numeric
         AND (tdigest_invalid_counts(d)).nan_count = (g ->> 'nan_count')::numeric
         AND (tdigest_invalid_counts(d)).pos_inf_count = (g ->> 'pos_inf_count')::numeric
         AND (tdigest_invalid_counts(d)).neg_inf_count = (g ->> 'neg_inf_count')::numeric AS invalid_counts,
       CASE WHEN tdigest_count(d) = 0 THEN tdigest_min(d) IS NULL AND tdigest_max(d) IS NULL
            ELSE tdigest_min(d) = pg_temp.num(g -> 'min') AND tdigest_max(d) = pg_temp.num(g -> 'max')
                 AND tdigest_mean(d) = pg_temp.num(g -> 'mean') END AS min_max_mean,
       pg_temp.num(d::text::jsonb -> 'mean_residual') = pg_temp.num(g -> 'mean_residual')
         AND pg_temp.num(d::text::jsonb -> 'm2') = pg_temp.num(g -> 'm2') AS moments,
       tdigest_centroid_count(d) = (g ->> 'n_centroids')::int AS n_centroids,
       (SELECT array_agg(pg_temp.num(c -> 0)) FROM jsonb_array_elements(d::text::jsonb -> 'centroids') c)
         IS NOT DISTINCT FROM (SELECT array_agg(pg_temp.num(m)) FROM jsonb_array_elements(g -> 'means') m) AS means,
       (SELECT array_agg((c ->> 1)::numeric) FROM jsonb_array_elements(d::text::jsonb -> 'centroids') c)
         IS NOT DISTINCT FROM (SELECT array_agg((w #>> '{}')::numeric) FROM jsonb_array_elements(g -> 'weights') w) AS weights
FROM golden_digest;
SELECT * FROM golden_fields
WHERE NOT (compression AND count AND invalid_counts AND min_max_mean AND moments AND n_centroids AND means AND weights);

-- Version 1 files: read (binary and bytea), and written back as the documented version 3
-- bytes with the converted moments.
CREATE TEMP TABLE golden_v1 AS
SELECT e.key AS name, e.value AS g, f.bytes, f.bytes::tdigest AS d
FROM golden, jsonb_each(j -> 'v1_digests') e JOIN golden_file f ON f.file = e.value ->> 'file';
SELECT count(*) >= 8 AS has_v1_digests FROM golden_v1;
SELECT name AS v1_not_read_as_documented FROM golden_v1
WHERE NOT (get_byte(bytes, 4) = 1 AND encode(tdigest_send(d), 'hex') = g ->> 'reads_as_hex'
           AND d::text::tdigest::bytea = tdigest_send(d)
           AND tdigest_count(d) = (g ->> 'count')::numeric
           AND pg_temp.num(d::text::jsonb -> 'm2') = pg_temp.num(g -> 'm2')
           AND (tdigest_count(d) = 0 OR tdigest_mean(d) = pg_temp.num(g -> 'mean')));

-- Version 2 files: read as the same digests, written back as the version 3 bytes.
CREATE TEMP TABLE golden_v2 AS
SELECT e.key AS name, e.value AS g, f.bytes, f.bytes::tdigest AS d
FROM golden, jsonb_each(j -> 'v2_digests') e JOIN golden_file f ON f.file = e.value ->> 'file';
SELECT count(*) >= 10 AS has_v2_digests FROM golden_v2;
SELECT name AS v2_not_read_as_documented FROM golden_v2
WHERE NOT (get_byte(bytes, 4) = 2 AND encode(tdigest_send(d), 'hex') = g ->> 'reads_as_hex'
           AND d::text::tdigest::bytea = tdigest_send(d)
           AND length(tdigest_send(d)) <= length(bytes)
           AND tdigest_count(d) = (g ->> 'count')::numeric
           AND tdigest_centroid_count(d) = (g ->> 'n_centroids')::int
           AND pg_temp.num(d::text::jsonb -> 'm2') = pg_temp.num(g -> 'm2')
           AND (tdigest_count(d) = 0 OR tdigest_mean(d) = pg_temp.num(g -> 'mean')));

-- cdf and quantile at the fixed points agree with the Python reader.
CREATE TEMP TABLE golden_points AS
SELECT name, 'cdf' AS kind, pg_temp.num(p -> 0) AS at, tdigest_cdf(d, pg_temp.num(p -> 0)) AS got, pg_temp.num(p -> 1) AS want
FROM golden_digest, jsonb_array_elements(g -> 'cdf') p
UNION ALL
SELECT name, 'quantile', pg_temp.num(p -> 0), tdigest_quantile(d, pg_temp.num(p -> 0)), pg_temp.num(p -> 1)
FROM golden_digest, jsonb_array_elements(g -> 'quantile') p;
SELECT count(*) >= 100 AS has_points FROM golden_points;
SELECT * FROM golden_points WHERE NOT pg_temp.close(got, want);
-- The array forms give the same values.
SELECT name AS array_forms_differ FROM golden_digest
WHERE tdigest_cdf(d, ARRAY(SELECT at FROM golden_points p WHERE p.name = golden_digest.name AND kind = 'cdf' ORDER BY at))
      IS DISTINCT FROM (SELECT CASE WHEN tdigest_count(d) = 0 THEN NULL ELSE array_agg(got ORDER BY at) END
                        FROM golden_points p WHERE p.name = golden_digest.name AND kind = 'cdf');

-- Malformed inputs: every one is an error with SQLSTATE 22P03.
CREATE FUNCTION pg_temp.try_digest(b bytea) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM b::tdigest;
  RETURN 'accepted';
EXCEPTION WHEN others THEN
  RETURN SQLSTATE;
END $$;
SELECT count(*) >= 20 AS has_malformed_inputs FROM golden, jsonb_array_elements(j -> 'malformed_digests') m;
SELECT m ->> 'reason' AS not_rejected FROM golden, jsonb_array_elements(j -> 'malformed_digests') m
WHERE pg_temp.try_digest(decode(m ->> 'hex', 'hex')) <> '22P03';
