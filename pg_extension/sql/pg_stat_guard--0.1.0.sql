/* pg_stat_guard 0.1.0: the tdigest type and its aggregates. */
\echo Use "CREATE EXTENSION pg_stat_guard" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Type: varlena whose bytes are the wire-format v1 digest (docs/wire-format.md)
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
COMMENT ON TYPE tdigest IS 'merging t-digest with exact count, min, max, sum, sum_sq and NULL/NaN/Inf counts';

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
COMMENT ON AGGREGATE tdigest_agg(double precision) IS 't-digest of the values (compression 100)';

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
