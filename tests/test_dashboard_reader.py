"""AppTest for the Reader study page against tests/reader_fixture.py: blinding, order and resume,
timing on the server, the rows written, training, login and invite codes, and readers on the other pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cache import reader_study as rs
from cache.metrics import compare_models, confusion_matrix, group_metrics
from cache.schema import canonical_json, response_key
from cache.store import Store
from tests.reader_fixture import BASELINE, CLOUD, build_reader_store, forbidden_texts

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture
def fx(tmp_path, monkeypatch):
    fx = build_reader_store(tmp_path / "store")
    monkeypatch.setenv("MEDLENS_STORE", str(fx.root))
    return fx


class Clock:
    """The server clock of cache.reader_study, moved by the test."""

    def __init__(self, monkeypatch, start: float = 1_000_000.0):
        self.now = start
        monkeypatch.setattr(rs, "clock_ms", lambda: self.now)


def open_reader(**params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.switch_page("tabs/reader.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_text(at: AppTest) -> str:
    """Every element's message (labels, bodies, options, values) of the whole page, sidebar included;
    the case image's bytes (a data: URL) are replaced by a placeholder."""
    parts: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    text = re.sub(r"(?m)^\s*(set_value|raw_value|id): .*\n", "", "\n".join(parts))  # widget bookkeeping
    return re.sub(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/=]+", "data:IMAGE", text)


def create_study(at: AppTest, size: int = 8, training: int = 0, invites: int = 0) -> rs.Study:
    at.number_input(key="reader_size").set_value(size)
    at.number_input(key="reader_training").set_value(training)
    at.number_input(key="reader_invites").set_value(invites)
    ok(at.button(key="reader_create").click().run())
    study = rs.studies(Store(Path(at.session_state["_medlens_context"].root)))[0]
    return study


def sign_in(at: AppTest, name: str = "Alice") -> AppTest:
    return ok(at.text_input(key="reader_name_input").input(name).run())


def rating(at: AppTest):
    """The case's rating control (its key changes with the case, so each case starts blank)."""
    return next(s for s in at.segmented_control if s.key.startswith("reader_rating_"))


def cue(at: AppTest):
    return next(t for t in at.text_input if t.key.startswith("reader_cue_"))


def answer(at: AppTest, label: str, stars: int, text: str = "") -> AppTest:
    rating(at).set_value(stars)
    if text:
        cue(at).input(text)
    return ok(at.button(key=f"reader_{label}").click().run())


def session_of(fx, study: rs.Study, name: str = "Alice") -> rs.Session:
    return rs.start_session(Store(fx.root), study, name)


def reader_rows(fx, model: str = "reader:Alice") -> list[dict]:
    con = Store(fx.root).connect()
    cur = con.execute("SELECT * FROM responses WHERE model = ? ORDER BY created_at", [model])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_a_study_is_balanced_over_prepared_images_only(fx):
    at = open_reader()
    assert any("12 images with their prepared bytes" in c.value for c in at.caption)
    study = create_study(at, size=8, training=2)
    prepared = {i["image_sha256"]: i for i in fx.images if i["prepared"]}
    assert set(study.cases) <= set(prepared) and set(study.training) <= set(prepared)
    assert not set(study.cases) & set(study.training)
    cells = [(prepared[s]["modality"], prepared[s]["truth"]) for s in study.cases]
    assert sorted(cells.count(c) for c in set(cells)) == [2, 2, 2, 2]  # 8 cases, 4 cells: 2 each
    assert rs.DEFAULT_SIZE == 20 and at.number_input(key="reader_size").value == 8


def test_the_page_never_shows_truth_source_file_names_or_model_answers(fx, monkeypatch):
    Clock(monkeypatch)
    at = open_reader(source="SrcAlphaRetina", model=CLOUD)  # filters in the URL must not leak either
    study = create_study(at, size=8)
    sign_in(at)
    forbidden = forbidden_texts(fx)
    seen_by_truth: dict[str, str] = {}
    order = session_of(fx, study).order["scored"]
    for index, sha in enumerate(order):
        text = page_text(at)
        assert f"Case {index + 1} of 8" in text
        leaks = [t for t in forbidden if t in text]
        assert leaks == [], (index, leaks)
        assert not re.search(r"(?i)\b(truth|correct|accuracy|score)\b", text)
        # apart from the case number, a real case and a synthetic case are the same page
        blank = text.replace(f"Case {index + 1} of 8", "Case N of 8").replace(
            f"_scored_{index + 1}", "_scored_N"
        )
        seen_by_truth.setdefault(fx.truth(sha), blank)
        answer(at, "real" if index % 2 else "synthetic", 3)
    assert set(seen_by_truth) == {"real", "synthetic"}
    assert seen_by_truth["real"] == seen_by_truth["synthetic"]
    assert "you have read all 8 cases" in at.success[0].value and not re.search(
        r"\d+ ?%|\d+ of 8 right", page_text(at)
    )
    assert not at.sidebar.multiselect  # no filters (their options name sources) on this page


def test_order_is_per_reader_stored_and_resumes_after_a_reload(fx, monkeypatch):
    Clock(monkeypatch)
    at = open_reader()
    study = create_study(at, size=8)
    sign_in(at)
    for _ in range(3):
        answer(at, "real", 1)
    stored = json.loads(
        (fx.root / "reader_sessions" / study.study_id / f"{rs.reader_id('Alice')}.json").read_text()
    )
    assert stored["answered"]["scored"] == stored["order"]["scored"][:3]
    again = sign_in(open_reader())  # a reload: a new browser session, the same reader
    assert again.get("subheader")[0].value == "Case 4 of 8"
    assert rs.next_case(session_of(fx, study))[1] == stored["order"]["scored"][3]
    bob = session_of(fx, study, "Bob").order["scored"]
    assert sorted(bob) == sorted(stored["order"]["scored"]) and bob != stored["order"]["scored"]
    # two tabs on the same case: the second answer is not a second row, and both move on
    first, second = again, sign_in(open_reader())
    answer(first, "synthetic", 5)
    answer(second, "real", 2)
    keys = [r["key"] for r in reader_rows(fx)]
    assert len(keys) == len(set(keys)) == 4
    assert second.get("subheader")[0].value == "Case 5 of 8"


def test_time_per_case_is_measured_on_the_server_from_first_shown(fx, monkeypatch):
    clock = Clock(monkeypatch)
    at = open_reader()
    create_study(at, size=4)
    clock.now = 2_000_000.0
    sign_in(at)  # case 1 is drawn now
    clock.now += 4321
    answer(at, "real", 2)  # case 2 is drawn at the same instant
    clock.now += 1000
    sign_in(open_reader())  # a reload does not restart the clock of case 2
    clock.now += 2500
    answer(sign_in(open_reader()), "synthetic", 4)
    assert [r["latency_ms"] for r in reader_rows(fx)] == [4321.0, 3500.0]


def test_an_answer_is_a_row_like_a_models(fx, monkeypatch):
    Clock(monkeypatch)
    at = open_reader()
    study = create_study(at, size=4)
    sign_in(at)
    sha = rs.next_case(session_of(fx, study))[1]
    answer(at, "synthetic", 4, text="too   smooth\nvessels")
    row = reader_rows(fx)[0]
    image = next(i for i in fx.images if i["image_sha256"] == sha)
    assert row["key"] == response_key(
        provider="reader",
        model="reader:Alice",
        params={"block": "scored"},
        prompt_text=rs.INSTRUCTIONS,
        image_sha256=sha,
        repeat=0,
    )
    assert {
        k: row[k]
        for k in (
            "provider",
            "model",
            "label",
            "label_rule",
            "status",
            "rating",
            "task",
            "prompt_id",
            "interpretation",
            "params_json",
            "repeat",
        )
    } == {
        "provider": "reader",
        "model": "reader:Alice",
        "label": "synthetic",
        "label_rule": "reader",
        "status": "ok",
        "rating": 4,
        "task": "detect",
        "prompt_id": "reader",
        "interpretation": "too smooth vessels",
        "params_json": canonical_json({"block": "scored"}),
        "repeat": 0,
    }
    assert {k: row[k] for k in ("modality", "truth", "source", "image_path")} == {
        k: image[k] for k in ("modality", "truth", "source", "image_path")
    }
    assert row["raw_text"] == "Synthetic; confidence 4 of 5 (probably synthetic)"
    before = len(reader_rows(fx))
    assert rating(at).value is None and cue(at).value == ""  # the next case starts blank
    ok(at.button(key="reader_real").click().run())  # no rating picked: not saved
    assert "pick how sure you are" in at.error[0].value and len(reader_rows(fx)) == before
    rating(at).set_value(5)
    ok(at.button(key="reader_real").click().run())  # 'definitely synthetic' does not fit Real: not saved
    assert "does not fit the answer real" in at.error[0].value and len(reader_rows(fx)) == before


def test_readers_appear_beside_the_models_on_every_page(fx, monkeypatch):
    Clock(monkeypatch)
    at = open_reader()
    study = create_study(at, size=12)
    sign_in(at)
    for sha in session_of(fx, study).order["scored"]:  # a perfect reader, sure of every answer
        truth = fx.truth(sha)
        answer(at, truth, 1 if truth == "real" else 5)
    con = Store(fx.root).connect()
    me = next(g for g in group_metrics(con, by=("model",)) if g["model"] == "reader:Alice")
    assert (me["n"], me["accuracy"]) == (12, 1.0)
    assert confusion_matrix(con)[("reader:Alice", "fundus")]["real"]["real"] == 3
    at.switch_page("tabs/overview.py").run()
    table = next(d.value for d in at.dataframe if "Accuracy [95% CI]" in d.value.columns)
    mine = table[table["Model"] == "reader:Alice"]
    assert list(mine["Prompt"]) == ["reader", "reader"] and list(mine["n"]) == [6, 6]
    assert set(mine["Accuracy [95% CI]"].str.split().str[0]) == {"1.000"}
    # 16 images (12 with prepared bytes) answered by the baseline and the cloud model, 12 by the reader
    assert (
        "12 of 44 labels given by a human reader, 16 decided by a local detector, the other 16 read from the "
        "answer by the parser."
    ) in [c.value for c in at.caption]
    at.switch_page("tabs/confusion.py").run()
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "reader:Alice · fundus" in titles and "reader:Alice · chest_xray" in titles
    at.switch_page("tabs/compare.py")
    at.query_params.update({"a": "reader:Alice", "b": BASELINE})
    ok(at.run())
    pairs = compare_models(con, "reader:Alice", BASELINE, prompts=("reader", "paper"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Paired images"] == "12" == str(pairs["n_pairs"])
    assert pairs["a_only_correct"] == 4 and pairs["b_only_correct"] == 0  # the baseline is wrong on 4 of 12
    assert any("answered different prompts" in c.value for c in at.caption)
    at.switch_page("tabs/gallery.py")
    at.query_params.clear()
    ok(at.run())
    assert any(t.value.startswith("✓ reader:Alice [reader]: ") for t in at.text), [t.value for t in at.text]


def test_training_block_shows_the_truth_and_is_kept_apart(fx, monkeypatch):
    Clock(monkeypatch)
    at = open_reader()
    study = create_study(at, size=2, training=2)
    sign_in(at)
    assert at.get("subheader")[0].value == "Training case 1 of 2"
    first = session_of(fx, study).order["training"][0]
    answer(at, "real", 1)
    assert at.info[0].value.startswith(f"This training image is {fx.truth(first)}. You answered real")
    ok(at.button(key="reader_continue").click().run())
    answer(at, "synthetic", 5)
    ok(at.button(key="reader_continue").click().run())
    assert at.get("subheader")[0].value == "Case 1 of 2" and not at.info
    answer(at, "real", 3)
    rows = reader_rows(fx)
    assert [r["task"] for r in rows] == ["reader_training", "reader_training", "detect"]
    assert [json.loads(r["params_json"])["block"] for r in rows] == ["training", "training", "scored"]
    con = Store(fx.root).connect()
    assert sum(g["n"] for g in group_metrics(con) if g["model"] == "reader:Alice") == 1  # training: no metric


def test_invite_codes_and_oidc_login(fx, monkeypatch):
    Clock(monkeypatch)
    at = open_reader()
    study = create_study(at, size=4, invites=2)
    codes = list(study.invites)
    assert any(all(code in s.value for code in codes) for s in at.success)
    sign_in(at, "Alice")
    assert "takes invite codes only" in at.error[0].value
    sign_in(at, codes[1])
    answer(at, "real", 2)
    pseudonym = study.invites[codes[1]]  # R01 or R02: the reader is stored under the code's pseudonym
    assert [r["model"] for r in reader_rows(fx, f"reader:{pseudonym}")] == [f"reader:{pseudonym}"]
    assert reader_rows(fx, f"reader:{codes[1]}") == []
    # a shared deployment: OIDC login and an allow-list (secrets.toml [medlens_reader] allowed_emails)
    for user, expected in (
        ({"is_logged_in": False}, "login"),
        ({"is_logged_in": True, "email": "eve@x.org"}, "refused"),
        ({"is_logged_in": True, "email": "Ann@Example.org"}, "reads"),
    ):
        at = AppTest.from_file(APP, default_timeout=60)
        at.secrets["medlens_reader"] = {"allowed_emails": ["ann@example.org"]}
        at.user = user
        at.switch_page("tabs/reader.py")
        ok(at.run())
        assert not any(b.key == "reader_create" for b in at.button)  # readers never make studies
        if expected == "login":
            assert [b.label for b in at.button] == ["Log in to read"]
        elif expected == "refused":
            assert "is not on this study's list of readers" in at.error[0].value and not at.get("subheader")
        else:
            assert at.get("subheader")[0].value == "Case 1 of 4" and not cue(at).value
            assert any("ann@example.org" in c.value for c in at.caption)


def test_without_prepared_images_or_from_a_bundle_nothing_is_read(fx, tmp_path, monkeypatch):
    from cache.bundle import export_bundle
    from tests.dashboard_fixture import build_fixture_store

    other = build_fixture_store(tmp_path / "thumbs-only")  # thumbnails only: not what the models saw
    monkeypatch.setenv("MEDLENS_STORE", str(other.root))
    at = open_reader()
    assert any("keeps no prepared images" in w.value and "prep_memo.parquet" in w.value for w in at.warning)
    assert not any(b.key == "reader_create" for b in at.button)
    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "bundles"))
    export_bundle(Store(fx.root), tmp_path / "study.zip")
    monkeypatch.setenv("MEDLENS_STORE", str(tmp_path / "study.zip"))
    at = open_reader()
    assert any("read-only" in w.value for w in at.warning) and not at.get("subheader")


def test_reader_only_deployment_serves_the_reader_page_alone(fx, monkeypatch):
    Clock(monkeypatch)
    (fx.root / "demo.json").write_text(json.dumps({"demo": True, "contents": "images from SrcAlphaRetina"}))
    at = open_reader()  # the demo notice names sources: not on the reader page
    assert not any("Demo store" in i.value or "SrcAlphaRetina" in i.value for i in at.info)
    monkeypatch.setenv("MEDLENS_READER_ONLY", "1")
    at = AppTest.from_file(APP, default_timeout=60).run()  # the default page
    ok(at)
    assert [t.value for t in at.title] == ["Reader study"] and not at.sidebar.multiselect
    assert not any(b.key == "reader_create" for b in at.button)  # studies are made elsewhere
    assert any("Ask the study's organiser" in i.value for i in at.info)
