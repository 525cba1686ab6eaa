"""The DuckDB tables of scheduled drift: model metadata, model events, run results.

Feature tables belong to the platform (one wide table per model, named in
``model_metadata.feature_table``); this module creates only the three shared tables.
"""

from __future__ import annotations

from stat_guard.scheduled.connection import Session

# drift_runs rows that are not features; a feature may not use these names.
PREDICTION_ROW = "__prediction__"
MODEL_ROW = "__model__"
RESERVED_FEATURE_NAMES = frozenset({PREDICTION_ROW, MODEL_ROW})

MODEL_METADATA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("version", "VARCHAR"),
    ("status", "VARCHAR"),
    ("features", "VARCHAR[]"),  # every feature column, numeric and categorical
    ("categorical_features", "VARCHAR[]"),  # the subset compared as categories
    ("feature_table", "VARCHAR"),
    ("timestamp_column", "VARCHAR DEFAULT 'ts'"),
    ("key_column", "VARCHAR DEFAULT 'entity_id'"),  # sampling key; rowid when absent
    ("prediction_kind", "VARCHAR DEFAULT 'numeric'"),  # or 'categorical' (class ids)
    ("last_model_drift_score", "DOUBLE"),
    ("last_feature_drift_scores", "MAP(VARCHAR, DOUBLE)"),
    ("last_verdict", "VARCHAR"),
    ("last_run_id", "VARCHAR"),
    ("last_run_at", "TIMESTAMP"),
    ("flagged", "BOOLEAN DEFAULT false"),
    ("flag_reason", "VARCHAR"),
    ("flagged_run_id", "VARCHAR"),
    ("flagged_at", "TIMESTAMP"),
)

MODEL_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS model_events (
    ts TIMESTAMP NOT NULL,
    model VARCHAR NOT NULL,
    prediction DOUBLE,
    label DOUBLE
)"""

DRIFT_RUNS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "VARCHAR NOT NULL"),
    ("model", "VARCHAR NOT NULL"),
    ("feature", "VARCHAR NOT NULL"),  # or __prediction__ / __model__
    ("kind", "VARCHAR"),  # numeric, categorical, prediction, model
    ("verdict", "VARCHAR"),
    ("reasons", "VARCHAR"),
    ("error", "VARCHAR"),
    ("drift_score", "DOUBLE"),
    ("historical_start", "TIMESTAMP"),
    ("historical_end", "TIMESTAMP"),
    ("current_start", "TIMESTAMP"),
    ("current_end", "TIMESTAMP"),
    ("historical_rows", "BIGINT"),  # rows in the window before sampling
    ("current_rows", "BIGINT"),
    ("historical_sampled", "BIGINT"),  # rows compared after sampling
    ("current_sampled", "BIGINT"),
    ("n_historical", "BIGINT"),  # finite (or non-NULL categorical) values compared
    ("n_current", "BIGINT"),
    ("missing_historical", "BIGINT"),  # NULL, NaN and ±Inf values left out
    ("missing_current", "BIGINT"),
    ("psi", "DOUBLE"),
    ("psi_critical", "DOUBLE"),
    ("psi_pvalue", "DOUBLE"),  # chi-square test of the PSI bins (or categories)
    ("psi_bin_edges", "DOUBLE[]"),
    ("kl", "DOUBLE"),
    ("js", "DOUBLE"),
    ("wasserstein", "DOUBLE"),
    ("wasserstein_normalized", "DOUBLE"),
    ("ks_statistic", "DOUBLE"),
    ("ks_pvalue", "DOUBLE"),
    ("ks_error_bound", "DOUBLE"),
    ("pvalue_adjusted", "DOUBLE"),  # Benjamini–Hochberg across the model's features
    ("chi2", "DOUBLE"),
    ("chi2_pvalue", "DOUBLE"),
    ("unseen_categories", "VARCHAR[]"),  # the most frequent of them, at most 20
    ("unseen_share", "DOUBLE"),  # current share in categories the historical window lacks
    ("distinct_categories", "BIGINT"),  # in both windows together
    ("performance_metric", "VARCHAR"),  # accuracy or mae, on the prediction row
    ("performance_historical", "DOUBLE"),
    ("performance_current", "DOUBLE"),
    ("labeled_historical", "BIGINT"),
    ("labeled_current", "BIGINT"),
    ("created_at", "TIMESTAMP NOT NULL"),
)


def schema_statements() -> list[str]:
    """Idempotent DDL: creates missing tables, adds missing columns (files written by an
    earlier version get the new ones)."""
    metadata_columns = ",\n    ".join(f"{n} {t}" for n, t in MODEL_METADATA_COLUMNS)
    runs_columns = ",\n    ".join(f"{n} {t}" for n, t in DRIFT_RUNS_COLUMNS)
    statements = [
        f"CREATE TABLE IF NOT EXISTS model_metadata (\n    name VARCHAR PRIMARY KEY,\n"
        f"    {metadata_columns}\n)",
        MODEL_EVENTS_DDL,
        f"CREATE TABLE IF NOT EXISTS drift_runs (\n    {runs_columns},\n"
        f"    PRIMARY KEY (run_id, model, feature)\n)",
    ]
    statements += [f"ALTER TABLE model_metadata ADD COLUMN IF NOT EXISTS {n} {t}"
                   for n, t in MODEL_METADATA_COLUMNS]
    statements += [f"ALTER TABLE drift_runs ADD COLUMN IF NOT EXISTS {n} {t}"
                   for n, t in DRIFT_RUNS_COLUMNS if "NOT NULL" not in t]
    return statements


def apply_schema(session: Session) -> None:
    """Create what is missing of the three tables. One catalog read first: when nothing
    is missing (every run after the first) no DDL runs at all, so the write phase does
    not pay ~60 no-op statements."""
    present = {(table, column) for table, column in session.fetchall(
        "SELECT table_name, column_name FROM duckdb_columns() "
        "WHERE schema_name = current_schema() AND database_name = current_database() "
        "AND table_name IN ('model_metadata', 'model_events', 'drift_runs')")}
    tables = {table for table, _ in present}
    wanted = [("model_metadata", n) for n, _ in MODEL_METADATA_COLUMNS]
    wanted += [("drift_runs", n) for n, t in DRIFT_RUNS_COLUMNS if "NOT NULL" not in t]
    if {"model_metadata", "model_events", "drift_runs"} <= tables and all(
            column in present for column in wanted):
        return
    for statement in schema_statements():
        session.execute(statement)


def table_columns(session: Session, table: str) -> dict[str, str] | None:
    """Column name → DuckDB type of a table in the default schema; None if it is absent."""
    rows = session.fetchall(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE table_name = $table AND schema_name = current_schema() "
        "AND database_name = current_database() ORDER BY column_index",
        {"table": table})
    return {name: dtype for name, dtype in rows} if rows else None


def is_table(session: Session, name: str) -> bool:
    """Whether ``name`` is a table of the default schema (a view has no rowid)."""
    rows = session.fetchall(
        "SELECT 1 FROM duckdb_tables() WHERE table_name = $table "
        "AND schema_name = current_schema() AND database_name = current_database()",
        {"table": name})
    return bool(rows)
