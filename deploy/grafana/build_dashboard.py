"""Generate deploy/grafana/dashboards/stat_guard.json with grafana-foundation-sdk.

``make dashboard`` (or ``python deploy/grafana/build_dashboard.py``) rewrites the file;
``--check`` only compares. Every query names metrics of workers/exporter.py; the tests in
tests/observability check that against a live scrape and that this output is committed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DataTransformerConfig,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: find workers/

from workers.reaction_keys import COUNTER_KINDS  # noqa: E402

OUTPUT = ROOT / "deploy" / "grafana" / "dashboards" / "stat_guard.json"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="stat-guard-prometheus")
MODEL = 'model=~"$model"'
RATE = "$__rate_interval"
# The owner's verdict thresholds (stat_guard.verdict.Thresholds defaults) drawn on panels.
PSI_STEPS = ((None, "green"), (0.1, "yellow"), (0.25, "red"))
KS_STATISTIC_STEPS = ((None, "green"), (0.1, "yellow"))
KS_PVALUE_STEPS = ((None, "yellow"), (0.05, "green"))
REACTION_KINDS_SHOWN = ("alert", "reminder", "resolved", "suppressed", "out_of_order", "flag",
                        "warning", "error", "failed", "given_up", "duplicate", "dead_letter")


# ---- small typed helpers ------------------------------------------------------------------


def query(expr: str, legend: str = "", ref_id: str = "A", instant: bool = False,
          table_format: bool = False) -> prometheus.Dataquery:
    built = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(DATASOURCE)
    if legend:
        built = built.legend_format(legend)
    if instant:
        built = built.instant()
    else:
        built = built.range()
    if table_format:
        built = built.format(PromQueryFormat.TABLE)
    return built


def steps(pairs: tuple[tuple[float | None, str], ...]) -> dash.ThresholdsConfig:
    return dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(
        [Threshold(value=value, color=color) for value, color in pairs])


def opt_in(series: str) -> str:
    """The panel's series is not exported by default (docs/observability.md)."""
    return (f"Needs the exporter's opt-in series {series} (exporter.feature_series; "
            "docker-compose.yml switches it on).")


def series_panel(title: str, description: str, targets: list[prometheus.Dataquery],
                 unit: str = "short", width: int = 12, height: int = 8,
                 thresholds: tuple[tuple[float | None, str], ...] | None = None,
                 log_scale: bool = False) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).span(width).height(height).line_width(1).fill_opacity(8)
             .legend(common_builders.VizLegendOptions()
                     .display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.RIGHT).show_legend(True)
                     .calcs(["lastNotNull", "max"])))
    if thresholds:
        panel = panel.thresholds(steps(thresholds)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig()
            .mode(common.GraphThresholdsStyleMode.DASHED))
    if log_scale:
        panel = panel.scale_distribution(common_builders.ScaleDistributionConfig()
                                         .type(common.ScaleDistribution.LOG).log(10))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def table_panel(title: str, description: str, targets: list[prometheus.Dataquery],
                rename: dict[str, str], width: int = 12, height: int = 8) -> table.Panel:
    panel = (table.Panel().title(title).description(description).datasource(DATASOURCE)
             .span(width).height(height))
    for target in targets:
        panel = panel.with_target(target)
    # instant table queries joined on their labels, then tidied
    panel = panel.with_transformation(DataTransformerConfig(id_val="merge", options={}))
    hidden = {"Time": True, "__name__": True, "job": True, "instance": True,
              "Value #A": True}
    return panel.with_transformation(DataTransformerConfig(
        id_val="organize", options={"excludeByName": hidden, "renameByName": rename}))


def stat_panel(title: str, description: str, target: prometheus.Dataquery, unit: str,
               thresholds: tuple[tuple[float | None, str], ...], width: int = 12,
               height: int = 8) -> stat.Panel:
    return (stat.Panel().title(title).description(description).datasource(DATASOURCE)
            .unit(unit).span(width).height(height).thresholds(steps(thresholds))
            .color_mode(common.BigValueColorMode.BACKGROUND).with_target(target))


# ---- the dashboard -------------------------------------------------------------------------


def build() -> dash.Dashboard:
    model_variable = (dash.QueryVariable("model").label("Model").datasource(DATASOURCE)
                      .query({"query": "label_values(stat_guard_model_drift_score, model)",
                              "refId": "model"})
                      .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                      .sort(VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True)
                      .all_value(".*"))
    feature_legend = "{{model}} · {{feature}} ({{source}})"
    board = (dash.Dashboard("pg_stat_guard drift").uid("stat-guard").tags(["pg_stat_guard"])
             .description("Drift of every production model's features (scheduled runs "
                          "over DuckDB and on-demand analyses in PostgreSQL), run health "
                          "and the Celery fleet's queues. Data: workers/exporter.py.")
             .time("now-24h", "now").refresh("1m").timezone("utc")
             .tooltip(DashboardCursorSync.CROSSHAIR).with_variable(model_variable))

    board = board.with_row(dash.Row("Verdicts"))
    board = board.with_panel(table_panel(
        "Model verdicts", "Latest verdict of every model and source, its drift score "
        "(largest feature PSI) and how long ago the run finished.",
        [query("stat_guard_model_verdict == 1", ref_id="A", instant=True, table_format=True),
         query("stat_guard_model_drift_score", ref_id="B", instant=True, table_format=True),
         query("time() - stat_guard_model_last_success_timestamp_seconds", ref_id="C",
               instant=True, table_format=True)],
        rename={"Value #B": "drift score", "Value #C": "seconds since run"}))
    board = board.with_panel(table_panel(
        "Feature verdicts ($model)", "Latest verdict of each feature of the selected "
        "models, with its PSI and KS p-value (those two columns need the exporter's "
        "opt-in series psi and ks_pvalue: exporter.feature_series).",
        [query(f"stat_guard_feature_verdict{{{MODEL}}} == 1", ref_id="A", instant=True,
               table_format=True),
         query(f"stat_guard_feature_psi{{{MODEL}}}", ref_id="B", instant=True,
               table_format=True),
         query(f"stat_guard_feature_ks_pvalue{{{MODEL}}}", ref_id="C", instant=True,
               table_format=True)],
        rename={"Value #B": "PSI", "Value #C": "KS p-value"}))

    board = board.with_row(dash.Row("Drift per feature ($model)"))
    board = board.with_panel(series_panel(
        "PSI per feature", "Population stability index of each feature's latest run; "
        "dashed lines at 0.1 (watch) and 0.25 (drift). " + opt_in("psi"),
        [query(f"stat_guard_feature_psi{{{MODEL}}}", feature_legend)],
        thresholds=PSI_STEPS))
    board = board.with_panel(series_panel(
        "KS statistic per feature", "Kolmogorov–Smirnov statistic; it warns only above "
        "0.1 together with p < 0.05. " + opt_in("ks_statistic"),
        [query(f"stat_guard_feature_ks_statistic{{{MODEL}}}", feature_legend)],
        thresholds=KS_STATISTIC_STEPS))
    board = board.with_panel(series_panel(
        "KS p-value per feature", "Kolmogorov–Smirnov p-value (log scale); the dashed "
        "line is 0.05. " + opt_in("ks_pvalue"),
        [query(f"stat_guard_feature_ks_pvalue{{{MODEL}}}", feature_legend)],
        thresholds=KS_PVALUE_STEPS, log_scale=True))
    board = board.with_panel(series_panel(
        "KL divergence per feature", "Kullback–Leibler divergence of the current window "
        "from the baseline (smoothed bins). " + opt_in("kl_divergence"),
        [query(f"stat_guard_feature_kl_divergence{{{MODEL}}}", feature_legend)]))
    board = board.with_panel(series_panel(
        "Jensen–Shannon distance per feature", "Symmetric, bounded 0..1. " + opt_in("js_distance"),
        [query(f"stat_guard_feature_js_distance{{{MODEL}}}", feature_legend)]))
    board = board.with_panel(series_panel(
        "Wasserstein distance per feature", "Earth mover's distance divided by the "
        "baseline's spread. " + opt_in("wasserstein_normalized"),
        [query(f"stat_guard_feature_wasserstein_normalized{{{MODEL}}}", feature_legend)]))

    board = board.with_row(dash.Row("Runs"))
    board = board.with_panel(series_panel(
        "Drift score", "Each model's drift score (largest feature PSI) per source.",
        [query(f"stat_guard_model_drift_score{{{MODEL}}}", "{{model}} ({{source}})")],
        thresholds=PSI_STEPS))
    board = board.with_panel(series_panel(
        "Run duration", "How long each model's latest run took: minutes for a scheduled "
        "DuckDB run, milliseconds for an on-demand analysis.",
        [query(f"stat_guard_model_run_duration_seconds{{{MODEL}}}",
               "{{model}} ({{source}})")], unit="s"))
    board = board.with_panel(stat_panel(
        "Time since the last scheduled run", "Per model; red beyond twice the drift "
        "schedule (the StatGuardNoRecentScheduledRun alert).",
        query(f'time() - stat_guard_model_last_success_timestamp_seconds{{{MODEL}, '
              f'source="scheduled"}}', "{{model}}", instant=True),
        unit="s", thresholds=((None, "green"), (3600 * 1.5, "yellow"), (7200, "red")),
        width=24, height=5))

    board = board.with_row(dash.Row("On-demand analyses"))
    board = board.with_panel(series_panel(
        "On-demand latency", "Quantiles of the on-demand analysis duration (histogram "
        "stat_guard_ondemand_duration_seconds); the target is about 200 ms.",
        [query("histogram_quantile(0.5, sum by (le) (rate("
               f"stat_guard_ondemand_duration_seconds_bucket[{RATE}])))", "p50", "A"),
         query("histogram_quantile(0.95, sum by (le) (rate("
               f"stat_guard_ondemand_duration_seconds_bucket[{RATE}])))", "p95", "B"),
         query("histogram_quantile(0.99, sum by (le) (rate("
               f"stat_guard_ondemand_duration_seconds_bucket[{RATE}])))", "p99", "C")],
        unit="s", thresholds=((None, "green"), (0.2, "yellow"), (1.0, "red"))))
    board = board.with_panel(series_panel(
        "On-demand analyses per minute", "Analyses published to the stream, by verdict.",
        [query(f"sum by (verdict) (rate(stat_guard_ondemand_analyses_total[{RATE}])) * 60",
               "{{verdict}}")], unit="short"))

    board = board.with_row(dash.Row("Queues and reactions"))
    board = board.with_panel(series_panel(
        "Queue length", "Messages waiting in each Celery queue. A growing drift queue "
        "means runs take longer than the schedule; a non-empty ondemand queue means "
        "requests wait.",
        [query("stat_guard_queue_drift_messages", "drift", "A"),
         query("stat_guard_queue_ondemand_messages", "ondemand", "B"),
         query("stat_guard_queue_reactions_messages", "reactions", "C")], unit="short"))
    kinds = [kind for kind in COUNTER_KINDS if kind in REACTION_KINDS_SHOWN]
    board = board.with_panel(series_panel(
        "Reactions per hour", "What the reaction task did with stream entries (Redis "
        "counters stat_guard:reactions:<kind>).",
        [query(f"increase(stat_guard_reactions_{kind}_total[1h])", kind, chr(ord("A") + i))
         for i, kind in enumerate(kinds)], unit="short"))
    board = board.with_panel(series_panel(
        "Exporter", "1 while the exporter reads Redis; entries on the result stream.",
        [query("stat_guard_exporter_redis_up", "Redis readable", "A"),
         query("stat_guard_results_stream_entries", "stream entries", "B")],
        unit="short", width=24, height=6))
    return board


def render() -> str:
    document = json.loads(json.dumps(build().build(), cls=JSONEncoder))
    for number, panel in enumerate(document["panels"], start=1):
        panel["id"] = number  # stable ids: Grafana links and alerts refer to them
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if the file differs from what would be generated")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run make dashboard", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
