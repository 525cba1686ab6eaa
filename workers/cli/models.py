"""``stat-guard models list|add|remove``: the registrations in ``model_metadata``
(stat_guard/scheduled/models.py). Each opens the DuckDB file briefly; while a drift run
holds it, the command says the file is busy (exit 2) instead of waiting for the run.
"""

from __future__ import annotations

import argparse

from stat_guard.scheduled.aggregates import CATEGORICAL, NUMERIC
from stat_guard.scheduled.models import (
    ModelRegistration,
    add_model,
    list_models,
    remove_model,
)
from workers.cli.errors import OK
from workers.cli.tables import figure, moment, render_table, to_json
from workers.config import FleetConfig


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser(
        "models", help="list, add or remove the models in model_metadata",
        description="The models of the DuckDB file (duckdb.path) that scheduled drift runs.")
    actions = models.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="every registered model and its last run",
                                 description="Every registered model and its last run.")
    listing.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    listing.set_defaults(handler=_list)

    add = actions.add_parser(
        "add", help="register a model, checked against its feature table",
        description="Register a model. Its feature table must exist, with every column "
                    "named: a timestamp or date time column, numeric features of a number "
                    "type, categorical ones of a text, boolean, enum or integer type.")
    add.add_argument("name", help="the model's name (its runs are <name>@<slot>)")
    add.add_argument("--table", required=True, help="the feature table (one row per event)")
    add.add_argument("--time-column", required=True, help="the table's timestamp column")
    add.add_argument("--features", required=True, type=_names,
                     help="feature columns, comma-separated (numeric and categorical)")
    add.add_argument("--categorical", type=_names, default=(),
                     help="those of --features compared as categories, comma-separated")
    add.add_argument("--key", type=_names, default=(),
                     help="sampling key column(s), comma-separated (default: entity_id "
                          "when the table has it, else the row order)")
    add.add_argument("--status", default="production",
                     help="only 'production' models run on the schedule (default)")
    add.add_argument("--version", dest="model_version", default="1",
                     help="the model's version (default 1)")
    add.add_argument("--prediction-kind", choices=(NUMERIC, CATEGORICAL), default=NUMERIC,
                     help="how its predictions in model_events compare (default numeric)")
    add.set_defaults(handler=_add)

    remove = actions.add_parser(
        "remove", help="remove a model's registration (its run history stays)",
        description="Delete the model's row in model_metadata; drift_runs keeps its runs.")
    remove.add_argument("name")
    remove.set_defaults(handler=_remove)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _list(args: argparse.Namespace, config: FleetConfig) -> int:
    models = list_models(config.duckdb.path, config.drift_run_config())
    if args.json:
        print(to_json([model.to_json() for model in models]))
        return OK
    if not models:
        print(f"no models registered in {config.duckdb.path}")
        return OK
    rows = [(m.name, m.status, m.feature_table,
             f"{len(m.features)} ({len(m.categorical_features)} categorical)",
             m.last_verdict, figure(m.last_model_drift_score), moment(m.last_run_at),
             "yes" if m.flagged else "no") for m in models]
    print(render_table(("model", "status", "table", "features", "last verdict", "score",
                        "last run", "flagged"), rows))
    return OK


def _add(args: argparse.Namespace, config: FleetConfig) -> int:
    model = ModelRegistration(
        name=args.name, feature_table=args.table, timestamp_column=args.time_column,
        features=args.features, categorical_features=args.categorical,
        key_columns=args.key, status=args.status, version=args.model_version,
        prediction_kind=args.prediction_kind)
    add_model(config.duckdb.path, model, config.drift_run_config())
    numeric = len(model.features) - len(model.categorical_features)
    print(f"model {model.name} added ({args.status}): table {model.feature_table}, "
          f"{numeric} numeric and {len(model.categorical_features)} categorical features")
    return OK


def _remove(args: argparse.Namespace, config: FleetConfig) -> int:
    remove_model(config.duckdb.path, args.name, config.drift_run_config())
    print(f"model {args.name} removed (its runs stay in drift_runs)")
    return OK
