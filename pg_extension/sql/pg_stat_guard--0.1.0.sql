/* pg_stat_guard 0.1.0: the tdigest type and its aggregates. */
\echo Use "CREATE EXTENSION pg_stat_guard" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Type: varlena whose bytes are the wire-format digest, version 2 (docs/wire-format.md)
-- ---------------------------------------------------------------------------
CREATE TYPE tdigest;

CREATE FUNCTION tdigest_in(cstring) RETURNS tdigest
    AS 'MODULE_PATHNAME', 'psg_tdigest_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_out(tdigest) RETURNS cstring
    AS 'MODULE_PATHNAME', 'psg_tdigest_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_recv(internal) RETURNS tdigest
    AS 'MODULE_PATHNAME', 'psg_tdigest_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_send(tdigest) RETURNS bytea
    AS 'MODULE_PATHNAME', 'psg_tdigest_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE TYPE tdigest (
    INPUT = tdigest_in,
    OUTPUT = tdigest_out,
    RECEIVE = tdigest_recv,
    SEND = tdigest_send,
    INTERNALLENGTH = VARIABLE,
    ALIGNMENT = int4,
    STORAGE = extended
);
COMMENT ON TYPE tdigest IS 'merging t-digest with exact count, min, max, mean, M2 and NULL/NaN/Inf counts';

CREATE FUNCTION tdigest_to_bytea(tdigest) RETURNS bytea
    AS 'MODULE_PATHNAME', 'psg_tdigest_to_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bytea_to_tdigest(bytea) RETURNS tdigest
    AS 'MODULE_PATHNAME', 'psg_bytea_to_tdigest' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (tdigest AS bytea) WITH FUNCTION tdigest_to_bytea(tdigest);
CREATE CAST (bytea AS tdigest) WITH FUNCTION bytea_to_tdigest(bytea);

-- ---------------------------------------------------------------------------
-- Reading a digest
-- ---------------------------------------------------------------------------
CREATE FUNCTION tdigest_quantile(tdigest, double precision) RETURNS double precision
    AS 'MODULE_PATHNAME', 'psg_tdigest_quantile' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_quantile(tdigest, double precision[]) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'psg_tdigest_quantile_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_cdf(tdigest, double precision) RETURNS double precision
    AS 'MODULE_PATHNAME', 'psg_tdigest_cdf' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_cdf(tdigest, double precision[]) RETURNS double precision[]
    AS 'MODULE_PATHNAME', 'psg_tdigest_cdf_array' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION tdigest_count(tdigest) RETURNS bigint
    AS 'MODULE_PATHNAME', 'psg_tdigest_count' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_min(tdigest) RETURNS double precision
    AS 'MODULE_PATHNAME', 'psg_tdigest_min' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_max(tdigest) RETURNS double precision
    AS 'MODULE_PATHNAME', 'psg_tdigest_max' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_sum(tdigest) RETURNS double precision
    AS 'MODULE_PATHNAME', 'psg_tdigest_sum' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_mean(tdigest) RETURNS double precision
    AS 'MODULE_PATHNAME', 'psg_tdigest_mean' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_stddev(tdigest) RETURNS double precision
    AS 'MODULE_PATHNAME', 'psg_tdigest_stddev' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_compression(tdigest) RETURNS integer
    AS 'MODULE_PATHNAME', 'psg_tdigest_compression' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_centroid_count(tdigest) RETURNS integer
    AS 'MODULE_PATHNAME', 'psg_tdigest_centroid_count' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_invalid_counts(tdigest,
    OUT null_count numeric, OUT nan_count numeric,
    OUT pos_inf_count numeric, OUT neg_inf_count numeric)
    AS 'MODULE_PATHNAME', 'psg_tdigest_invalid_counts' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- ---------------------------------------------------------------------------
-- Aggregates (parallel: partial states travel as wire-format bytes)
-- ---------------------------------------------------------------------------
-- Transition functions are not strict: NULL values are counted, not skipped.
CREATE FUNCTION tdigest_agg_trans(internal, double precision) RETURNS internal
    AS 'MODULE_PATHNAME', 'psg_tdigest_agg_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION tdigest_agg_trans(internal, double precision, integer) RETURNS internal
    AS 'MODULE_PATHNAME', 'psg_tdigest_agg_trans_compression' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION tdigest_merge_trans(internal, tdigest) RETURNS internal
    AS 'MODULE_PATHNAME', 'psg_tdigest_merge_trans' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION tdigest_agg_combine(internal, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'psg_tdigest_agg_combine' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION tdigest_agg_serialize(internal) RETURNS bytea
    AS 'MODULE_PATHNAME', 'psg_tdigest_agg_serialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_agg_deserialize(bytea, internal) RETURNS internal
    AS 'MODULE_PATHNAME', 'psg_tdigest_agg_deserialize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION tdigest_agg_final(internal) RETURNS tdigest
    AS 'MODULE_PATHNAME', 'psg_tdigest_agg_final' LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE AGGREGATE tdigest_agg(double precision) (
    SFUNC = tdigest_agg_trans,
    STYPE = internal,
    FINALFUNC = tdigest_agg_final,
    COMBINEFUNC = tdigest_agg_combine,
    SERIALFUNC = tdigest_agg_serialize,
    DESERIALFUNC = tdigest_agg_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE tdigest_agg(double precision) IS 't-digest of the values (compression 40)';

CREATE AGGREGATE tdigest_agg(double precision, integer) (
    SFUNC = tdigest_agg_trans,
    STYPE = internal,
    FINALFUNC = tdigest_agg_final,
    COMBINEFUNC = tdigest_agg_combine,
    SERIALFUNC = tdigest_agg_serialize,
    DESERIALFUNC = tdigest_agg_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE tdigest_agg(double precision, integer) IS 't-digest of the values with the given compression (10..10000)';

CREATE AGGREGATE tdigest_merge(tdigest) (
    SFUNC = tdigest_merge_trans,
    STYPE = internal,
    FINALFUNC = tdigest_agg_final,
    COMBINEFUNC = tdigest_agg_combine,
    SERIALFUNC = tdigest_agg_serialize,
    DESERIALFUNC = tdigest_agg_deserialize,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE tdigest_merge(tdigest) IS 'one digest summarising all input digests';

-- ---------------------------------------------------------------------------
-- On-demand analysis (docs/analysis.md)
-- ---------------------------------------------------------------------------

-- Baselines per source and column: a digest for a numeric column, a category
-- table (docs/wire-format.md 3.2; category_counts_json reads it) for a
-- categorical one; dumped by pg_dump.
CREATE TABLE pg_stat_guard_baselines (
    source       text        NOT NULL,
    column_name  name        NOT NULL,
    digest       tdigest,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    captured_at  timestamptz NOT NULL DEFAULT now(),
    compression  integer     NOT NULL,
    categories   bytea,
    PRIMARY KEY (source, column_name),
    CHECK (window_start < window_end),
    CHECK ((digest IS NULL) <> (categories IS NULL))
);
SELECT pg_catalog.pg_extension_config_dump('pg_stat_guard_baselines', '');
REVOKE ALL ON pg_stat_guard_baselines FROM PUBLIC;

-- The drift function's URL and key for this database, stored by a superuser
-- with pg_stat_guard_set_function_url() / pg_stat_guard_set_function_key();
-- each takes precedence over its setting (pg_stat_guard.function_url / _key).
-- One row at most; readable by superusers only; the analysis reads it in C.
-- Not registered with pg_extension_config_dump: a dump does not carry the key
-- (docs/analysis.md).
CREATE TABLE pg_stat_guard_function (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    function_url text,
    function_key text,
    changed_at   timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON pg_stat_guard_function FROM PUBLIC;

-- Store this database's URL / key (checked as the settings are); NULL removes
-- it. Superusers only.
CREATE FUNCTION pg_stat_guard_set_function_url(url text) RETURNS void
    AS 'MODULE_PATHNAME', 'psg_set_function_url'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION pg_stat_guard_set_function_key(key text) RETURNS void
    AS 'MODULE_PATHNAME', 'psg_set_function_key'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION pg_stat_guard_set_function_url(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_stat_guard_set_function_key(text) FROM PUBLIC;

CREATE FUNCTION perform_drift_analysis("window" interval) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'psg_perform_drift_analysis_default'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION perform_drift_analysis("window" interval, source regclass,
                                       time_column name, value_columns name[])
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'psg_perform_drift_analysis'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The same, with the integer value columns to analyse as categories.
CREATE FUNCTION perform_drift_analysis("window" interval, source regclass,
                                       time_column name, value_columns name[],
                                       category_columns name[])
    RETURNS jsonb
    AS 'MODULE_PATHNAME', 'psg_perform_drift_analysis'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The category table of each categorical column among value_columns (text,
-- varchar, char, name, boolean, enum, and integer columns in category_columns)
-- over [window_start, window_end): the pg_stat_guard.max_categories most
-- frequent categories, the rest pooled. capture_baseline stores these.
CREATE FUNCTION category_counts(source regclass, time_column name, value_columns name[],
                                window_start timestamptz, window_end timestamptz,
                                category_columns name[] DEFAULT '{}')
    RETURNS TABLE (column_name name, categories bytea)
    AS 'MODULE_PATHNAME', 'psg_category_counts'
    LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- A category table as {"categories": [[name, count], ...], "other_count": ...,
-- "other_distinct": ..., "missing": ...}.
CREATE FUNCTION category_counts_json(bytea) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'psg_category_counts_json'
    LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Store one baseline per column from [window_start, window_end): a digest of
-- each numeric column (one scan), a category table of each categorical one
-- (category_counts, one more scan); a re-capture replaces the previous
-- baseline. Runs with the caller's privileges: SELECT on the source and
-- INSERT/UPDATE on the baselines table.
CREATE FUNCTION capture_baseline(source regclass, time_column name, value_columns name[],
                                 window_start timestamptz, window_end timestamptz,
                                 compression integer DEFAULT NULL,
                                 category_columns name[] DEFAULT '{}')
    RETURNS integer
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    qualified text;
    delta integer := coalesce(compression,
                              pg_catalog.current_setting('pg_stat_guard.compression', true)::integer,
                              200);
    select_list text;
    numeric_columns name[];
    digests @extschema@.tdigest[];
    categorical_columns name[];
    tables bytea[];
    i integer;
BEGIN
    IF source IS NULL OR time_column IS NULL OR value_columns IS NULL
       OR window_start IS NULL OR window_end IS NULL THEN
        RAISE EXCEPTION 'capture_baseline arguments must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF window_start >= window_end THEN
        RAISE EXCEPTION 'window_start must be before window_end'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.cardinality(value_columns) < 1 THEN
        RAISE EXCEPTION 'value_columns must name at least one column'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) INTO qualified
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = source;
    -- Categorical columns first: category_counts checks every column's type and
    -- the caller's SELECT on it.
    SELECT coalesce(pg_catalog.array_agg(c.column_name), '{}'), pg_catalog.array_agg(c.categories)
      INTO categorical_columns, tables
      FROM @extschema@.category_counts(source, time_column, value_columns, window_start,
                                       window_end, coalesce(category_columns, '{}')) c;
    SELECT pg_catalog.array_agg(col ORDER BY ord) INTO numeric_columns
      FROM pg_catalog.unnest(value_columns) WITH ORDINALITY AS u(col, ord)
     WHERE col <> ALL (categorical_columns);
    IF pg_catalog.cardinality(numeric_columns) > 0 THEN
        SELECT pg_catalog.string_agg(
                   pg_catalog.format('@extschema@.tdigest_agg(%I::pg_catalog.float8, $3)', col),
                   ', ' ORDER BY ord)
          INTO select_list
          FROM pg_catalog.unnest(numeric_columns) WITH ORDINALITY AS u(col, ord);
        EXECUTE pg_catalog.format('SELECT ARRAY[%s] FROM %s WHERE %I >= $1 AND %I < $2',
                                  select_list, qualified, time_column, time_column)
           INTO digests USING window_start, window_end, delta;
        FOR i IN 1 .. pg_catalog.cardinality(numeric_columns) LOOP
            INSERT INTO @extschema@.pg_stat_guard_baselines AS b
                   (source, column_name, digest, categories, window_start, window_end,
                    captured_at, compression)
            VALUES (qualified, numeric_columns[i], digests[i], NULL, window_start, window_end,
                    pg_catalog.now(), delta)
            ON CONFLICT ON CONSTRAINT pg_stat_guard_baselines_pkey DO UPDATE
               SET digest = EXCLUDED.digest, categories = NULL,
                   window_start = EXCLUDED.window_start,
                   window_end = EXCLUDED.window_end, captured_at = EXCLUDED.captured_at,
                   compression = EXCLUDED.compression;
        END LOOP;
    END IF;
    FOR i IN 1 .. pg_catalog.cardinality(categorical_columns) LOOP
        INSERT INTO @extschema@.pg_stat_guard_baselines AS b
               (source, column_name, digest, categories, window_start, window_end,
                captured_at, compression)
        VALUES (qualified, categorical_columns[i], NULL, tables[i], window_start, window_end,
                pg_catalog.now(), delta)
        ON CONFLICT ON CONSTRAINT pg_stat_guard_baselines_pkey DO UPDATE
           SET digest = NULL, categories = EXCLUDED.categories,
               window_start = EXCLUDED.window_start,
               window_end = EXCLUDED.window_end, captured_at = EXCLUDED.captured_at,
               compression = EXCLUDED.compression;
    END LOOP;
    RETURN pg_catalog.cardinality(value_columns);
END
$$;

-- The configured source (pg_stat_guard.source, .time_column, .value_columns),
-- over the window that ends now.
-- Names resolve on the caller's search_path, as in perform_drift_analysis(interval).
CREATE FUNCTION capture_baseline("window" interval) RETURNS integer
    LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
AS $$
DECLARE
    src text := pg_catalog.current_setting('pg_stat_guard.source', true);
    tcol text := pg_catalog.current_setting('pg_stat_guard.time_column', true);
    cols text := pg_catalog.current_setting('pg_stat_guard.value_columns', true);
    categories text := pg_catalog.current_setting('pg_stat_guard.category_columns', true);
BEGIN
    IF coalesce(src, '') = '' OR coalesce(tcol, '') = '' OR coalesce(cols, '') = '' THEN
        RAISE EXCEPTION 'pg_stat_guard.source, pg_stat_guard.time_column and pg_stat_guard.value_columns must be set'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF "window" IS NULL OR "window" <= interval '0' THEN
        RAISE EXCEPTION 'window must be a positive interval'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN @extschema@.capture_baseline(
        src::regclass, tcol::name,
        (SELECT pg_catalog.array_agg(pg_catalog.btrim(c)::name)
           FROM pg_catalog.regexp_split_to_table(cols, ',') AS c),
        pg_catalog.now() - "window", pg_catalog.now(), NULL,
        coalesce((SELECT pg_catalog.array_agg(pg_catalog.btrim(c)::name)
                    FROM pg_catalog.regexp_split_to_table(categories, ',') AS c
                   WHERE pg_catalog.btrim(c) <> ''), '{}'));
END
$$;

CREATE FUNCTION drop_baseline(source regclass) RETURNS integer
    LANGUAGE sql VOLATILE PARALLEL UNSAFE
    SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM @extschema@.pg_stat_guard_baselines b
         USING pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = drop_baseline.source
           AND b.source = pg_catalog.format('%I.%I', n.nspname, c.relname)
        RETURNING 1)
    SELECT pg_catalog.count(*)::integer FROM gone;
$$;
