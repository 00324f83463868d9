"""The reader-study adapter (cache/readers.py) on a hand-made study (tests/readers_fixture.py)."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

from cache.metrics import Filters, wilson
from cache.mrmc import or_analysis, single_vs_panel
from cache.readers import (
    SCORE_COLUMNS,
    calibration_table,
    genericness_table,
    load_results,
    reader_agreement,
    reader_metrics,
    retest_agreement,
    roc_table,
)
from cache.readers_mrmc import mrmc_model_vs_panel, mrmc_readers
from cache.readers_report import FOMS, format_readers_report, readers_report
from tests.readers_fixture import (
    BASELINE,
    GPT_REPEAT0,
    GPT_REPEAT1,
    GPT_SCORES,
    HAND,
    IMAGES,
    TRUTH,
    UNAIDED,
    aided,
    study_frame,
)


def connect(frame: pd.DataFrame) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register("results", frame)
    return con


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    return connect(study_frame())


def by(rows: list[dict], **keys) -> dict:
    (match,) = [r for r in rows if all(r[k] == v for k, v in keys.items())]
    return match


def test_reader_metrics_hand_counts(con) -> None:
    rows = reader_metrics(con)
    assert {(r["model"], r["prompt_id"]) for r in rows} == {
        (reader, prompt) for reader in UNAIDED for prompt in ("aided", "unaided")
    }
    for reader, (correct, tp, tn) in HAND.items():
        row = by(rows, model=reader, prompt_id="unaided")
        assert (row["n"], row["correct"], row["tp"], row["tn"]) == (12, correct, tp, tn)
        assert row["accuracy"] == pytest.approx(correct / 12)
        assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == pytest.approx(wilson(correct, 12))
        assert row["sensitivity"] == pytest.approx(tp / 6)
        assert (row["specificity_ci_low"], row["specificity_ci_high"]) == pytest.approx(wilson(tn, 6))


def test_reader_agreement_matches_statsmodels(con) -> None:
    row = by(reader_agreement(con), prompt_id="unaided")
    assert (row["n_readers"], row["n_images"], row["n_images_common"]) == (3, 12, 12)
    labels = np.array([[r >= 3 for r in UNAIDED[reader]] for reader in sorted(UNAIDED)]).T.astype(int)
    kappa = fleiss_kappa(aggregate_raters(labels)[0])
    assert row["fleiss_kappa"] == pytest.approx(kappa)
    # complete nominal data: 1 - alpha = (1 - kappa_Fleiss) (nN - 1) / (nN), n = 3 readers, N = 12
    assert row["alpha_nominal"] == pytest.approx(1 - (1 - kappa) * 35 / 36)
    assert -1 < row["alpha_ordinal_rating"] < 1


def test_roc_rows_match_sklearn(con) -> None:
    rows = roc_table(con, with_points=True)
    assert {r["model"] for r in rows} == {*UNAIDED, "openai:gpt-4o"}  # baseline: no confidence at all
    truth = [TRUTH[img] == "synthetic" for img in IMAGES]
    ann = by(rows, model="reader:ann", prompt_id="unaided")
    assert ann["auc"] == pytest.approx(roc_auc_score(truth, UNAIDED["reader:ann"]))
    assert (ann["kind"], ann["score"], ann["n"], ann["n_scored"]) == ("reader", "rating", 12, 12)
    assert ann["points"]["fpr"][0] == 0.0 and ann["points"]["tpr"][-1] == 1.0
    gpt = by(rows, model="openai:gpt-4o")
    images = list(GPT_SCORES)
    assert gpt["auc"] == pytest.approx(
        roc_auc_score([TRUTH[i] == "synthetic" for i in images], list(GPT_SCORES.values()))
    )
    assert (gpt["n"], gpt["n_scored"], gpt["n_synthetic"], gpt["n_real"]) == (11, 10, 6, 5)
    assert gpt["ci_low"] < gpt["auc"] < gpt["ci_high"]


def test_calibration_by_hand(con) -> None:
    (row,) = calibration_table(con)
    assert (row["model"], row["n"], row["n_excluded"]) == ("openai:gpt-4o", 10, 1)
    # bins .5: (.55 right) gap .45; .6: (.6 wrong, .6 right) gap .1; .7: (.7 right, .7 wrong) gap .2;
    # .8: two right, gap .2; .9: (.9, .95, .9 all right) gap 1/12. ECE = (.45 + .2 + .4 + .4 + .25) / 10
    assert row["ece"] == pytest.approx(0.17)
    assert [b["count"] for b in row["bins"]][5:] == [1, 2, 2, 2, 3]


def test_retest_agreement(con) -> None:
    (row,) = retest_agreement(con)  # readers and the baseline answered once
    assert (row["model"], row["repeats"], row["n_images"]) == ("openai:gpt-4o", 2, 11)
    first = [GPT_REPEAT0[i][0] for i in sorted(GPT_REPEAT0)]
    second = [GPT_REPEAT1[i][0] for i in sorted(GPT_REPEAT0)]
    assert row["share_identical"] == pytest.approx(9 / 11)
    assert row["cohen_kappa_first_two"] == pytest.approx(cohen_kappa_score(first, second))
    table = aggregate_raters(np.array([first, second]).T)[0]
    assert row["fleiss_kappa"] == pytest.approx(fleiss_kappa(table))


def test_genericness_rows(con) -> None:
    rows = genericness_table(con)
    gpt = by(rows, model="openai:gpt-4o")
    # 22 texts of 11 images: 231 pairs minus the 11 pairs of an image with itself
    assert (gpt["n_texts"], gpt["n_images"], gpt["n_pairs"]) == (22, 11, 220)
    assert (gpt["median_similarity"], gpt["near_duplicate_share"]) == (pytest.approx(1.0), 1.0)
    baseline = by(rows, model="baseline:px")
    assert (baseline["n_empty"], baseline["median_similarity"]) == (12, None)


def test_model_vs_panel_auc_and_accuracy(con) -> None:
    rows = mrmc_model_vs_panel(con)
    assert {(r["model"], r["panel_prompt_id"]) for r in rows} == {
        ("openai:gpt-4o", "aided"),
        ("openai:gpt-4o", "unaided"),
    }
    row = by(rows, panel_prompt_id="unaided")
    images = sorted(GPT_SCORES)  # r6 not answered by the model: 11 cases
    truth = np.array([TRUTH[i] == "synthetic" for i in images])
    panel = np.array([[UNAIDED[r][IMAGES.index(i)] for i in images] for r in sorted(UNAIDED)], dtype=float)
    expected = single_vs_panel(truth, np.array([GPT_SCORES[i] for i in images]), panel)
    assert (row["n_cases"], row["readers"]) == (11, sorted(UNAIDED))
    assert row["model_fom"] == pytest.approx(roc_auc_score(truth, [GPT_SCORES[i] for i in images]))
    assert row["difference"] == pytest.approx(expected.difference)
    assert row["tests"]["RRRC"] == pytest.approx(expected.tests["RRRC"])
    accuracy = mrmc_model_vs_panel(con, fom="accuracy")
    base = by(accuracy, model="baseline:px", panel_prompt_id="unaided")
    assert sum(BASELINE[i] == TRUTH[i] for i in IMAGES) == 8
    assert (base["n_cases"], base["model_fom"], base["panel_mean"]) == (
        12,
        pytest.approx(8 / 12),
        pytest.approx(27 / 36),
    )
    assert base["difference"] == pytest.approx(8 / 12 - 0.75)


def test_readers_across_conditions(con) -> None:
    (row,) = mrmc_readers(con)
    assert (row["conditions"], row["readers"], row["n_cases"]) == (["aided", "unaided"], sorted(UNAIDED), 12)
    truth = np.array([TRUTH[i] == "synthetic" for i in sorted(IMAGES)])
    ratings = np.array(
        [
            [
                [
                    UNAIDED[r][IMAGES.index(i)]
                    if c == "unaided"
                    else aided(UNAIDED[r][IMAGES.index(i)], TRUTH[i])
                    for i in sorted(IMAGES)
                ]
                for r in sorted(UNAIDED)
            ]
            for c in ("aided", "unaided")
        ],
        dtype=float,
    )
    expected = or_analysis(truth, ratings)
    assert row["treatment_means"] == pytest.approx(expected.treatment_means.tolist())
    assert row["foms"][1][0] == pytest.approx(roc_auc_score(truth, ratings[1, 0]))
    assert row["tests"]["RRRC"]["statistic"] == pytest.approx(expected.tests["RRRC"].statistic)
    assert row["tests"]["RRRC"]["ddf"] == pytest.approx(expected.tests["RRRC"].ddf)
    assert row["tests"]["FRRC"]["ddf"] is None  # chi-square: JSON-ready, no infinity
    with pytest.raises(ValueError, match="condition"):
        mrmc_readers(con, condition="truth")


def test_store_before_ratings_and_other_tasks() -> None:
    frame = study_frame().drop(columns=["rating"])
    rows = roc_table(connect(frame))
    ann = by(rows, model="reader:ann", prompt_id="unaided")
    # no rating column: a reader's score is its button, Real 1 / Synthetic 5
    buttons = [5 if r >= 3 else 1 for r in UNAIDED["reader:ann"]]
    assert ann["auc"] == pytest.approx(roc_auc_score([TRUTH[i] == "synthetic" for i in IMAGES], buttons))
    v2 = study_frame().assign(task=None)
    training = v2.iloc[[0]].assign(task="reader_training", image_sha256="t1", truth="real", label="synthetic")
    loaded = load_results(connect(pd.concat([v2, training])))
    assert "t1" not in set(loaded["image_sha256"]) and len(loaded) == len(v2)


def test_filters_and_report(con) -> None:
    assert reader_metrics(con, Filters(modality=["chest_xray"])) == []
    report = readers_report(con)
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN or Infinity
    assert [r["fom"] for r in report["model_vs_panel"]].count("accuracy") == 4
    text = format_readers_report(report)
    ann = wilson(10, 12)
    assert f"83.3% [{100 * ann[0]:.1f}%, {100 * ann[1]:.1f}%]" in text
    assert "openai:gpt-4o (json)" in text and "aided, unaided" in text


def write_store(root) -> None:
    """The fixture study as a real store (Store.append); ratings only if the schema has them."""
    import hashlib
    from datetime import UTC, datetime

    from cache.schema import COLUMNS
    from cache.store import Store

    rows = []
    for i, row in enumerate(study_frame().to_dict("records")):
        rating = None if pd.isna(row["rating"]) else int(row["rating"])
        row = {
            k: (None if k != "rating" and not isinstance(v, str) and pd.isna(v) else v)
            for k, v in row.items()
        }
        row |= {
            "key": hashlib.sha256(f"row{i}".encode()).hexdigest(),
            "run_id": "test",
            "status": "ok",
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            "image_path": f"{row['image_sha256']}.png",
            "rating": rating,
        }
        rows.append({k: v for k, v in row.items() if k in COLUMNS})
    Store(root).append(rows)


def with_ratings(monkeypatch) -> None:
    """Until schema v2 stores `rating`, add it to `results` through the connection (by key)."""
    from cache.schema import COLUMNS
    from cache.store import Store

    if "rating" in COLUMNS:
        return
    import hashlib

    ratings = pd.DataFrame(
        {
            "key": [hashlib.sha256(f"row{i}".encode()).hexdigest() for i in range(len(study_frame()))],
            "rating": study_frame()["rating"].astype("Int32"),
        }
    )
    connect_v1 = Store.connect

    def connect_with_ratings(self):
        con = connect_v1(self)
        con.register("_ratings", ratings)
        con.execute("ALTER VIEW results RENAME TO _results_v1")
        con.execute("CREATE VIEW results AS SELECT * FROM _results_v1 LEFT JOIN _ratings USING (key)")
        return con

    monkeypatch.setattr(Store, "connect", connect_with_ratings)


def test_cli_readers_on_a_store(tmp_path, monkeypatch, capsys) -> None:
    from cache.cli import main

    store = tmp_path / "store"
    write_store(store)
    with_ratings(monkeypatch)
    assert main(["readers", "--store", str(store), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in report["readers"]} == set(UNAIDED)
    ann = by(report["readers"], model="reader:ann", prompt_id="unaided")
    assert (ann["n"], ann["correct"]) == (12, 10)
    panel = by(report["model_vs_panel"], model="openai:gpt-4o", panel_prompt_id="unaided", fom="auc")
    assert (panel["n_cases"], panel["readers"]) == (11, sorted(UNAIDED))
    images = sorted(GPT_SCORES)
    assert panel["model_fom"] == pytest.approx(
        roc_auc_score([TRUTH[i] == "synthetic" for i in images], [GPT_SCORES[i] for i in images])
    )
    (auc_row,) = [r for r in report["readers_across_conditions"] if r["fom"] == "auc"]
    assert auc_row["n_cases"] == 12 and auc_row["tests"]["RRRC"]["p"] == pytest.approx(
        readers_report(connect(study_frame()))["readers_across_conditions"][0]["tests"]["RRRC"]["p"]
    )
    assert main(["readers", "--store", str(store), "--modality", "fundus"]) == 0
    text = capsys.readouterr().out
    assert "reader:ann                   fundus       unaided       12     83.3% [55.2%, 95.3%]" in text
    assert "Model vs reader panel" in text and "openai:gpt-4o (json)" in text
    assert main(["readers", "--store", str(store), "--modality", "chest_xray"]) == 0
    assert "(no reader answers)" in capsys.readouterr().out


@pytest.mark.parametrize("filters", [None, Filters(prompt_id=("unaided", "json"))])
def test_tables_from_one_loaded_frame_equal_the_tables_read_from_the_connection(con, filters) -> None:
    """The dashboard and `cache readers` read `results` once and pass the frame to every table."""
    frame = load_results(con, filters, SCORE_COLUMNS)
    for table in (reader_metrics, reader_agreement, roc_table, calibration_table, retest_agreement):
        assert table(frame) == table(con, filters) != [], table.__name__
    for fom in FOMS:
        assert mrmc_model_vs_panel(frame, fom=fom) == mrmc_model_vs_panel(con, filters, fom=fom) != []
        assert mrmc_readers(frame, fom=fom) == mrmc_readers(con, filters, fom=fom)
    assert readers_report(con, filters)["roc"] == roc_table(con, filters)


def test_no_reader_no_panel_rows(con) -> None:
    models_only = load_results(con)
    models_only = models_only[~models_only["is_reader"]]
    assert [mrmc_model_vs_panel(models_only, fom=fom) for fom in FOMS] == [[], []]
    assert roc_table(models_only) != []  # the models' own curves are still drawn
