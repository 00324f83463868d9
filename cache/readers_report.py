"""The reader and MRMC tables of ``python -m cache readers [--json]``: one dict, and its text."""

from __future__ import annotations

from typing import Any

import duckdb

from cache.metrics import Filters
from cache.readers import SCORE_COLUMNS, load_results, reader_agreement, reader_metrics, roc_table
from cache.readers_mrmc import mrmc_model_vs_panel, mrmc_readers

FOMS = ("auc", "accuracy")


def readers_report(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> dict[str, Any]:
    """Keys: readers (per-reader metrics), agreement (inter-reader), roc (every rater with graded
    scores), model_vs_panel and readers_across_conditions (MRMC rows for both figures of merit).
    ``results`` is read once, for every table."""
    frame = load_results(con, filters, SCORE_COLUMNS)
    return {
        "readers": reader_metrics(frame),
        "agreement": reader_agreement(frame),
        "roc": roc_table(frame),
        "model_vs_panel": [row for fom in FOMS for row in mrmc_model_vs_panel(frame, fom=fom)],
        "readers_across_conditions": [row for fom in FOMS for row in mrmc_readers(frame, fom=fom)],
    }


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _table(title: str, header: str, lines: list[str], empty: str) -> list[str]:
    return [title, header, "-" * len(header), *(lines or [empty]), ""]


def format_readers_report(report: dict[str, Any]) -> str:
    """Plain-text tables of ``readers_report``."""
    out = _table(
        "Readers (accuracy counts abstentions as wrong; 95% Wilson intervals)",
        f"{'reader':<28} {'modality':<12} {'prompt':<10} {'n':>5} {'accuracy [95% CI]':>24} {'sens':>6} {'spec':>6}",
        [
            f"{r['model']:<28} {r['modality']:<12} {r['prompt_id']:<10} {r['n']:>5} "
            f"{_pct(r['accuracy']) + ' [' + _pct(r['accuracy_ci_low']) + ', ' + _pct(r['accuracy_ci_high']) + ']':>24} "
            f"{_pct(r['sensitivity']):>6} {_pct(r['specificity']):>6}"
            for r in report["readers"]
        ],
        "(no reader answers)",
    )
    out += _table(
        "Inter-reader agreement (Fleiss: images every reader answered; alpha: any two)",
        f"{'modality':<12} {'prompt':<10} {'readers':>7} {'images':>7} {'common':>7} {'Fleiss k':>9} "
        f"{'alpha lab':>9} {'alpha rat':>9}",
        [
            f"{r['modality']:<12} {r['prompt_id']:<10} {r['n_readers']:>7} {r['n_images']:>7} {r['n_images_common']:>7} "
            f"{_num(r['fleiss_kappa']):>9} {_num(r['alpha_nominal']):>9} {_num(r['alpha_ordinal_rating']):>9}"
            for r in report["agreement"]
        ],
        "(fewer than two readers)",
    )
    out += _table(
        "ROC (readers: 5-point rating; models: stated confidence; AUC with 95% DeLong interval)",
        f"{'rater':<28} {'modality':<12} {'prompt':<10} {'n':>5} {'scored':>6} {'AUC [95% CI]':>22}",
        [
            f"{r['model']:<28} {r['modality']:<12} {r['prompt_id']:<10} {r['n']:>5} {r['n_scored']:>6} "
            f"{_num(r['auc']) + ' [' + _num(r['ci_low']) + ', ' + _num(r['ci_high']) + ']':>22}"
            for r in report["roc"]
        ],
        "(no rater with graded scores and both classes)",
    )
    out += _table(
        "Model vs reader panel (ORH single reader vs panel, Hillis 2007 sec. 5.3; RRRC; diff = model - panel)",
        f"{'model (prompt)':<28} {'modality':<12} {'panel':<10} {'fom':<8} {'cases':>5} {'model':>6} {'panel':>6} "
        f"{'diff [95% CI]':>24} {'t':>7} {'ddf':>7} {'p':>7}",
        [_panel_line(r) for r in report["model_vs_panel"]],
        "(needs a model and >= 2 readers on the same images, both classes)",
    )
    out += _table(
        "Readers across conditions (ORH, random readers and random cases)",
        f"{'modality':<12} {'fom':<8} {'conditions':<24} {'readers':>7} {'cases':>5} {'F':>7} {'ddf':>7} {'p':>7}",
        [
            f"{r['modality']:<12} {r['fom']:<8} {', '.join(r['conditions'])[:24]:<24} {len(r['readers']):>7} "
            f"{r['n_cases']:>5} {_num(r['tests']['RRRC']['statistic']):>7} {_num(r['tests']['RRRC']['ddf'], 2):>7} "
            f"{_num(r['tests']['RRRC']['p'], 4):>7}"
            for r in report["readers_across_conditions"]
        ],
        "(needs >= 2 conditions read by >= 2 readers on the same images)",
    )
    return "\n".join(out).rstrip() + "\n"


def _panel_line(r: dict[str, Any]) -> str:
    test = r["tests"]["RRRC"]
    diff = f"{r['difference']:+.3f} [{test['ci_low']:+.3f}, {test['ci_high']:+.3f}]"
    return (
        f"{r['model'] + ' (' + r['prompt_id'] + ')':<28} {r['modality']:<12} {r['panel_prompt_id']:<10} "
        f"{r['fom']:<8} {r['n_cases']:>5} "
        f"{_num(r['model_fom']):>6} {_num(r['panel_mean']):>6} {diff:>24} {_num(test['statistic'], 2):>7} "
        f"{_num(test['df'], 1):>7} {_num(test['p'], 4):>7}"
    )
