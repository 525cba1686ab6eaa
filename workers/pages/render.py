"""The one renderer of results: the pages (workers/pages/app.py) and the report file
(workers/report.py) print the same HTML for a result, the report only without links to
the server. Every name (model, feature, category, run id, reason) is user data and goes
through :func:`esc`; the pages carry no script at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from stat_guard.display import (
    CATEGORICAL,
    NUMERIC,
    PREDICTION_NAME,
    QUANTILE_LEVELS,
    FeatureDisplay,
    verdict_rank,
)
from stat_guard.result_record import ResultRecord
from stat_guard.verdict import Thresholds
from workers.pages import charts, urls
from workers.pages.charts import Point, category_bars, esc, histogram, number, score_line, share
from workers.pages.data import Result

TRIGGERS = {"scheduled": "scheduled", "manual": "manual", "ondemand": "on-demand"}
SOURCES = {"scheduled": "scheduled (DuckDB)", "ondemand": "on-demand (PostgreSQL)"}

CSS = """
:root{color-scheme:light}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;
background:#fff;margin:0}
header.top{background:#24292f;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;
align-items:baseline}
header.top a{color:#fff}header.top .brand{font-weight:700;font-size:1.05rem}
main{padding:1rem 1.2rem;max-width:1240px}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}h2{font-size:1.15rem;margin:1.4rem 0 .5rem}
h3{font-size:1rem;margin:0 0 .4rem;display:flex;gap:.5rem;align-items:center;
flex-wrap:wrap;word-break:break-all}
a{color:#0550ae}
table{border-collapse:collapse}th,td{padding:.25rem .6rem;text-align:left;
border-bottom:1px solid #d0d7de;vertical-align:top}
th{font-weight:600;background:#f6f8fa}td.num{text-align:right;
font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .45rem;border-radius:.7rem;font-size:.8rem;
font-weight:700;border:1px solid;white-space:nowrap}
.badge.drift{background:#ffebe9;color:#86181d;border-color:#cf222e}
.badge.warning{background:#fff8c5;color:#633c01;border-color:#9a6700}
.badge.ok{background:#dafbe1;color:#0f5323;border-color:#1a7f37}
.badge.error{background:#fbefff;color:#512a97;border-color:#8250df}
.badge.insufficient_data,.badge.unknown{background:#eaeef2;color:#32383f;
border-color:#6e7781}
.summary{display:flex;flex-wrap:wrap;gap:.4rem 1.6rem;margin:.4rem 0 1rem}
.summary div{min-width:8rem}.summary dt{font-size:.8rem;color:#57606a}
.summary dd{margin:0;font-weight:600;word-break:break-all}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .8rem;border-radius:6px}
.feature{content-visibility:auto;contain-intrinsic-size:auto 330px;
border:1px solid #d0d7de;border-left-width:6px;border-radius:6px;
padding:.7rem .9rem;margin:.8rem 0;background:#fff}
.feature.verdict-drift{border-left-color:#cf222e}
.feature.verdict-warning{border-left-color:#9a6700;border-left-style:dashed}
.feature.verdict-error{border-left-color:#8250df;border-left-style:dotted}
.feature-body{display:flex;flex-wrap:wrap;gap:1rem}
.figures{flex:1 1 300px;min-width:280px}.figures table{font-size:.86rem;width:100%}
.kind{font-size:.78rem;color:#57606a;font-weight:400}
.reasons{margin:.4rem 0 0;padding-left:1.2rem;font-size:.86rem}
.no-chart{color:#57606a;font-style:italic;width:560px}
svg.chart{max-width:100%;height:auto;display:block}
details{margin:.4rem 0}summary{cursor:pointer;color:#0550ae}
footer{color:#57606a;font-size:.8rem;padding:1rem 1.2rem}
.sr{position:absolute;left:-9999px}
"""

_STATISTICS = (("psi", "PSI"), ("ks_statistic", "KS statistic"), ("ks_pvalue", "KS p-value"),
               ("js", "JS distance"), ("kl", "KL divergence"),
               ("wasserstein", "Wasserstein (normalised)"), ("chi2", "χ²"),
               ("chi2_pvalue", "χ² p-value"))


@dataclass(frozen=True)
class Links:
    """Where the pages live (relative URLs, workers/pages/urls.py); the report file has no
    links (``None`` instead)."""

    def model(self, name: str) -> str:
        return urls.model_path(name)

    def run(self, run_id: str) -> str:
        return urls.run_path(run_id)

    def report(self, run_id: str) -> str:
        return urls.report_path(run_id)


def moment(value: datetime | str | None) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def badge(verdict: str) -> str:
    cls = verdict if verdict in ("drift", "warning", "ok", "error",
                                 "insufficient_data") else "unknown"
    return f'<span class="badge {cls}">{esc(verdict.replace("_", " ") or "unknown")}</span>'


def link(links: Links | None, href: str, text: str) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>' if links else esc(text)


def page(title: str, body: str, *, standalone: bool = False, generated: str = "") -> str:
    """A whole HTML document. ``standalone``: the report file, with no link to anything
    outside itself and a policy that lets it load nothing."""
    policy = ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
              'style-src \'unsafe-inline\'">' if standalone else "")
    nav = ('<header class="top"><span class="brand">pg_stat_guard</span>'
           + ('<span>drift report</span>' if standalone
              else '<a href="/">all models</a>') + '</header>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">{policy}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)}</title><style>{CSS}{charts.CSS}</style></head><body>'
            f'{charts.PATTERN}{nav}'
            f'<main>{body}</main><footer>pg_stat_guard{" · " + esc(generated) if generated else ""}'
            f'</footer></body></html>')


# ---- the overview ----------------------------------------------------------------------


def overview(records: Sequence[ResultRecord], links: Links) -> str:
    rows = []
    for r in records:
        counts = _verdict_counts(f.verdict for f in r.features.values())
        rows.append(
            f'<tr class="model-row" data-model="{esc(r.model)}" data-source="{esc(r.source)}" '
            f'data-verdict="{esc(r.verdict)}"><td>{link(links, links.model(r.model), r.model)}'
            f'</td><td>{badge(r.verdict)}</td><td class="num">{number(r.drift_score)}</td>'
            f'<td>{moment(r.finished_at)}</td><td>{esc(TRIGGERS.get(r.trigger, r.trigger))}'
            f'</td><td>{esc(counts or "–")}</td>'
            f'<td>{link(links, links.run(r.run_id), r.run_id)}</td></tr>')
    drifting = sum(1 for r in records if r.verdict == "drift")
    intro = (f'<p>{len({r.model for r in records})} models, {drifting} in drift; the newest '
             f'result of each model and path, worst first.</p>')
    if not rows:
        return page("pg_stat_guard: drift", '<h1>Drift of every model</h1><p>No results in '
                    'Redis yet: the scheduled runs and on-demand analyses publish them.</p>')
    table = ('<table class="overview"><caption class="sr">Latest result per model</caption>'
             '<thead><tr><th scope="col">model</th><th scope="col">verdict</th>'
             '<th scope="col">drift score</th><th scope="col">finished (UTC)</th>'
             '<th scope="col">path</th><th scope="col">features</th><th scope="col">run</th>'
             f'</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return page("pg_stat_guard: drift", f"<h1>Drift of every model</h1>{intro}{table}")


def _verdict_counts(verdicts: Iterable[str]) -> str:
    tally: dict[str, int] = {}
    for verdict in verdicts:
        tally[verdict or "unknown"] = tally.get(verdict or "unknown", 0) + 1
    return ", ".join(f"{n} {v.replace('_', ' ')}"
                     for v, n in sorted(tally.items(), key=lambda kv: verdict_rank(kv[0])))


# ---- one result ------------------------------------------------------------------------


def features_of(result: Result) -> list[FeatureDisplay]:
    """The result's features, most severe first: from its display summaries, else its
    record's figures alone."""
    if result.display is not None:
        features = list(result.display.features)
    else:
        record = result.record
        features = [FeatureDisplay(
            name=name, kind="", verdict=f.verdict or "unknown",
            error=f.error, reasons=(),
            statistics={"psi": f.psi, "ks_statistic": f.ks_statistic,
                        "ks_pvalue": f.ks_pvalue, "kl": f.kl, "js": f.js,
                        "wasserstein": f.wasserstein},
            missing_baseline=f.missing_rate_baseline, missing_current=f.missing_rate_current)
            for name, f in (record.features.items() if record else ())]
    return sorted(features, key=lambda f: (f.severity, f.name))


def result_body(result: Result, history: Sequence[ResultRecord], thresholds: Thresholds,
                links: Links | None, heading: str) -> str:
    """The model page's, the run page's and the report's content for one result."""
    record, display = result.record, result.display
    model, run_id = result.model, result.run_id
    verdict, score, source = result.verdict, result.drift_score, result.source
    finished = moment(result.finished_at)
    trigger = result.trigger or source
    features = features_of(result)
    facts = [("model", link(links, links.model(model), model) if links else esc(model)),
             ("verdict", badge(verdict)), ("drift score", number(score)),
             ("finished (UTC)", finished), ("path", esc(TRIGGERS.get(trigger, trigger))),
             ("source", esc(SOURCES.get(source, source))),
             ("run", link(links, links.run(run_id), run_id) if links else esc(run_id)),
             ("features", esc(_verdict_counts(f.verdict for f in features
                                              if f.name != PREDICTION_NAME) or "none"))]
    predictions = [f for f in features if f.name == PREDICTION_NAME]
    if predictions:
        facts.append(("predictions", badge(predictions[0].verdict)))
    if record is not None and record.details is not None:
        details = record.details
        if hasattr(details, "table"):
            facts.append(("table", esc(details.table or "–")))
            facts.append(("rows", number(details.rows)))
        elif details.historical_rows or details.current_rows:
            facts.append(("rows (baseline / current)",
                          f"{details.historical_rows:,} / {details.current_rows:,}"))
    parts = [f'<h1>{heading}</h1><dl class="summary">'
             + "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts) + "</dl>"]
    if links:
        parts.append(f'<p><a class="report-link" href="{esc(links.report(run_id))}" '
                     f'download>Download this result as a report file</a></p>')
    if record is not None and record.error:
        parts.append(f'<p class="note error-text">Why nothing could be scored: '
                     f'{esc(record.error)}</p>')
    if result.display_note:
        parts.append(f'<p class="note display-note">{esc(result.display_note)}</p>')
    if record is not None and record.features_truncated and display is None:
        parts.append('<p class="note">The stream record was cut down to fit: features '
                     'judged ok kept only their verdict.</p>')
    if history:
        parts.append(history_section(model, history, thresholds, links))
    parts.append(f'<h2>Features, most severe first ({len(features)})</h2>')
    if not features:
        parts.append("<p>No feature was reported.</p>")
    parts += [feature_section(feature, i) for i, feature in enumerate(features)]
    return "".join(parts)


def feature_section(feature: FeatureDisplay, index: int) -> str:
    verdict = feature.verdict or "unknown"
    if feature.kind == NUMERIC and feature.edges:
        chart = histogram(feature)
    elif feature.kind == CATEGORICAL and (feature.categories or feature.other_count):
        chart = category_bars(feature)
    elif feature.kind:
        chart = '<p class="no-chart">No distribution to draw (no values in a window).</p>'
    else:
        chart = '<p class="no-chart">Distribution not available for this result.</p>'
    kind = {"numeric": "numeric", "categorical": "categorical"}.get(feature.kind, "")
    if feature.name == PREDICTION_NAME:
        kind += " · the model's predictions"
    figures = [_statistics_table(feature)]
    if feature.kind == NUMERIC and feature.quantiles:
        figures.append(_quantile_table(feature))
    if feature.kind == CATEGORICAL and feature.categories:
        figures.append(_category_table(feature))
    if feature.error:
        figures.append(f'<p class="error-text">error: {esc(feature.error)}</p>')
    if feature.reasons:
        figures.append('<ul class="reasons">' + "".join(f"<li>{esc(r)}</li>"
                                                       for r in feature.reasons) + "</ul>")
    return (f'<section class="feature verdict-{esc(verdict)}" id="feature-{index}" '
            f'data-feature="{esc(feature.name)}" data-verdict="{esc(verdict)}">'
            f'<h3>{badge(verdict)} <span class="name">{esc(feature.name)}</span> '
            f'<span class="kind">{kind}</span></h3><div class="feature-body">'
            f'<div class="chart-box">{chart}</div>'
            f'<div class="figures">{"".join(figures)}</div></div></section>')


def _statistics_table(feature: FeatureDisplay) -> str:
    rows = [(key, label, number(feature.statistics.get(key))) for key, label in _STATISTICS
            if feature.statistics.get(key) is not None]
    rows.append(("missing", "missing (baseline → current)",
                 f"{share(feature.missing_baseline)} → {share(feature.missing_current)}"))
    if feature.n_baseline or feature.n_current:
        rows.append(("n", "values (baseline / current)",
                     f"{feature.n_baseline:,} / {feature.n_current:,}"))
    body = "".join(f'<tr><th scope="row">{label}</th><td class="num" data-stat="{key}">'
                   f'{value}</td></tr>' for key, label, value in rows)
    return f'<table class="stats"><tbody>{body}</tbody></table>'


def _quantile_table(feature: FeatureDisplay) -> str:
    head = "".join(f'<th scope="col">{100 * q:g} %</th>' for q in QUANTILE_LEVELS)
    body = "".join(
        f'<tr><th scope="row">{side}</th>'
        + "".join(f'<td class="num">{number(v)}</td>' for v in feature.quantiles[side])
        + "</tr>" for side in ("baseline", "current") if side in feature.quantiles)
    return (f'<table class="quantiles"><caption>quantiles</caption><thead><tr><th></th>'
            f'{head}</tr></thead><tbody>{body}</tbody></table>')


def _category_table(feature: FeatureDisplay) -> str:
    rows = "".join(
        f'<tr{" class=" + chr(34) + "unseen" + chr(34) if c.unseen else ""}>'
        f'<th scope="row">{esc(c.name)}{" <strong>(new)</strong>" if c.unseen else ""}</th>'
        f'<td class="num">{share(c.baseline)}</td><td class="num">{share(c.current)}</td></tr>'
        for c in feature.categories)
    if feature.other_count:
        rows += (f'<tr><th scope="row"><em>other ({feature.other_count})</em></th>'
                 f'<td class="num">{share(feature.other_baseline)}</td>'
                 f'<td class="num">{share(feature.other_current)}</td></tr>')
    return (f'<details><summary>shares per category ({len(feature.categories)})</summary>'
            f'<table class="category-shares"><thead><tr><th scope="col">category</th>'
            f'<th scope="col">baseline</th><th scope="col">current</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></details>')


def history_section(model: str, history: Sequence[ResultRecord], thresholds: Thresholds,
                    links: Links | None) -> str:
    points = [Point(at=r.finished_at.timestamp(), score=r.drift_score, verdict=r.verdict,
                    source=r.source, run_id=r.run_id, when=moment(r.finished_at))
              for r in history if r.finished_at is not None]
    chart = score_line(points, thresholds.psi_warning, thresholds.psi_drift)
    rows = "".join(
        f'<tr><td>{moment(r.finished_at)}</td><td>{badge(r.verdict)}</td>'
        f'<td class="num">{number(r.drift_score)}</td>'
        f'<td>{esc(TRIGGERS.get(r.trigger, r.trigger))}</td>'
        f'<td>{link(links, links.run(r.run_id), r.run_id) if links else esc(r.run_id)}</td>'
        f'</tr>' for r in history)
    return (f'<h2>Recent results of {esc(model)} ({len(history)})</h2>{chart}'
            f'<details><summary>the same results as a table</summary>'
            f'<table class="history"><thead><tr><th scope="col">finished (UTC)</th>'
            f'<th scope="col">verdict</th><th scope="col">drift score</th>'
            f'<th scope="col">path</th><th scope="col">run</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></details>')


def model_page(model: str, result: Result, history: Sequence[ResultRecord],
               others: Sequence[ResultRecord], thresholds: Thresholds, links: Links) -> str:
    body = result_body(result, history, thresholds, links,
                       heading=f"Drift of {esc(model)}")
    if others:
        also = ", ".join(f'{link(links, links.run(r.run_id), r.run_id)} '
                         f'({esc(SOURCES.get(r.source, r.source))}, {badge(r.verdict)})'
                         for r in others)
        body += f"<p>Latest result of the other path: {also}</p>"
    return page(f"{model}: drift", body)


def run_page(result: Result, history: Sequence[ResultRecord], thresholds: Thresholds,
             links: Links) -> str:
    body = result_body(result, history, thresholds, links,
                       heading=f"Result {esc(result.run_id)}")
    return page(f"{result.run_id}: drift", body)


def report(result: Result, history: Sequence[ResultRecord], thresholds: Thresholds) -> str:
    """The report file: one self-contained HTML document (inline CSS and SVG, no link or
    resource outside itself)."""
    generated = moment(datetime.now(UTC))
    body = result_body(result, history, thresholds, None,
                       heading=f"Drift of {esc(result.model)}")
    return page(f"{result.model}: drift report ({result.run_id})", body, standalone=True,
                generated=f"report generated {generated} from Redis")
