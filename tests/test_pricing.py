"""Price table: loading, matching, cost per row, token estimates, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pricing import DEFAULT_PATH, BatchPrices, PriceTable, image_tokens
from ingest.providers.base import parse_spec

HEADER = "model,input_per_mtok,output_per_mtok,image_tokens,updated,notes\n"


def write(tmp_path: Path, body: str, header: str = HEADER) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_shipped_table_prices_current_vision_models() -> None:
    table = PriceTable.load()
    assert table.path == DEFAULT_PATH
    for model in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-5",
        "gemini-2.5-pro",
        "gemini-2.5-flash",
        "gemini-2.0-flash",
    ):
        price = table.prices[model]
        assert price.input_per_mtok > 0 and price.output_per_mtok > price.input_per_mtok
        assert price.updated and "check before use" in price.notes
        assert price.image_tokens
    assert table.prices["gpt-4o"].input_per_mtok == 2.50 and table.prices["gpt-4o"].output_per_mtok == 10.00
    assert len(table.describe()) == len(table.prices)
    assert "check before use" in table.describe()[0]


def test_cost_is_tokens_times_price_per_million() -> None:
    table = PriceTable.load()
    assert table.cost(parse_spec("openai:gpt-4o"), 1_000_000, 0) == pytest.approx(2.50)
    assert table.cost(parse_spec("openai:gpt-4o"), 1234, 56) == pytest.approx(
        (1234 * 2.50 + 56 * 10.00) / 1e6
    )
    assert table.cost(parse_spec("gemini:gemini-2.5-flash"), 1000, 100) == pytest.approx(0.00055)
    assert table.cost(parse_spec("gemini:gemini-2.5-flash"), 1000, None) == pytest.approx(0.0003)
    assert table.cost(parse_spec("openai:gpt-4o"), None, None) is None  # no usage reported: unknown


def test_matching_exact_then_longest_prefix() -> None:
    table = PriceTable.load()
    assert table.lookup(parse_spec("openai:gpt-4o-2024-08-06")).model == "gpt-4o"
    assert table.lookup(parse_spec("openai:gpt-4o-mini-2024-07-18")).model == "gpt-4o-mini"
    assert (
        table.lookup(parse_spec("gemini:gemini-2.5-flash-lite-preview-06-17")).model
        == "gemini-2.5-flash-lite"
    )
    assert table.lookup(parse_spec("gemini:gemini-2.5-flash")).model == "gemini-2.5-flash"
    assert table.lookup(parse_spec("openai:gpt-4")) is None  # a prefix of a row, not the other way round
    assert table.lookup(parse_spec("openai:gpt-4o2")) is None  # a prefix must end at a "-"


def test_unpriced_is_none_local_and_compat_are_free_unless_priced(tmp_path: Path) -> None:
    table = PriceTable.load()
    assert table.cost(parse_spec("openai:some-new-model"), 100, 100) is None
    assert table.estimate(parse_spec("openai:some-new-model"), "prompt", 512, 512) is None
    assert table.cost(parse_spec("baseline:forensic"), None, None) == 0.0
    compat = parse_spec("compat:gpt-4o@http://127.0.0.1:8000/v1")
    assert table.cost(compat, 1000, 1000) == 0.0  # a bare gpt-4o row does not price a local server
    priced = PriceTable.load(write(tmp_path, "compat:llava,1.0,2.0,flat:100,2026-01-01,my GPU hour\n"))
    llava = parse_spec("compat:llava:13b@http://127.0.0.1:11434/v1")
    assert priced.lookup(llava) is None  # "llava:13b" does not start with "llava-"
    exact = parse_spec("compat:llava@http://127.0.0.1:11434/v1")
    assert priced.cost(exact, 1_000_000, 1_000_000) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("rule", "size", "detail", "tokens"),
    [
        ("tiles:85:170", (1024, 1024), "high", 765),  # OpenAI's documented examples
        ("tiles:85:170", (2048, 4096), "high", 1105),
        ("tiles:85:170", (4096, 8192), "low", 85),
        ("tiles:85:170", (512, 512), "high", 255),  # small images are not upscaled
        ("tiles:2833:5667", (512, 512), "high", 8500),
        ("patches:1", (1024, 1024), "high", 1024),
        ("patches:1", (1800, 2400), "high", 1452),
        ("patches:1.62", (1024, 1024), "low", 1659),  # detail does not apply to patch models
        ("gemini_tiles:258", (384, 384), "high", 258),
        ("gemini_tiles:258", (1024, 1024), "high", 1032),
        ("flat:258", (4000, 3000), "high", 258),
    ],
)
def test_image_token_rules(rule: str, size: tuple[int, int], detail: str, tokens: int) -> None:
    assert image_tokens(rule, *size, detail=detail) == tokens


def test_estimate_counts_prompt_image_and_expected_output() -> None:
    table = PriceTable.load()
    prompt = "x" * 400  # ~100 tokens + 10 framing
    estimate = table.estimate(parse_spec("openai:gpt-4o"), prompt, 1024, 1024, detail="high")
    assert estimate == pytest.approx(((100 + 10 + 765) * 2.50 + 300 * 10.00) / 1e6)
    low = table.estimate(
        parse_spec("openai:gpt-4o"), prompt, 1024, 1024, detail="low", expected_output_tokens=0
    )
    assert low == pytest.approx((100 + 10 + 85) * 2.50 / 1e6)
    gemini = table.estimate(parse_spec("gemini:gemini-2.5-flash"), prompt, 300, 300)
    assert gemini == pytest.approx(((110 + 258) * 0.30 + 300 * 2.50) / 1e6)
    assert table.estimate(parse_spec("baseline:forensic"), prompt, 1024, 1024) == 0.0


def test_env_var_overrides_default_path(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, "gpt-4o,1,2,,2030-01-01,\n")
    monkeypatch.setenv("MEDLENS_PRICES", str(path))
    table = PriceTable.load()
    assert table.path == path and table.prices["gpt-4o"].input_per_mtok == 1.0
    # an explicit path still wins over the env var
    assert PriceTable.load(DEFAULT_PATH).prices["gpt-4o"].input_per_mtok == 2.50


def test_comments_and_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path, "# a note, with a comma\n\ngpt-4o,1,2,,,\ngpt-x,1,lots,,,\n", header="# top\n" + HEADER
    )
    with pytest.raises(ValueError) as excinfo:
        PriceTable.load(path)
    assert str(excinfo.value).startswith(f"{path}: line 6, column 'output_per_mtok': 'lots' is not a price")


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        ("gpt-4o,2.5,abc,,,\n", HEADER, "line 2, column 'output_per_mtok': 'abc' is not a price"),
        ("gpt-4o,-1,2,,,\n", HEADER, "line 2, column 'input_per_mtok': '-1' is not a price"),
        ("gpt-4o,1,2,,,\ngpt-4o,1,2,,,\n", HEADER, "line 3, column 'model': 'gpt-4o' is listed twice"),
        (",1,2,,,\n", HEADER, "line 2, column 'model': empty model name"),
        ("gpt-4o,1,2,tiles:85,,\n", HEADER, "line 2, column 'image_tokens': 'tiles:85' is not a rule"),
        ("gpt-4o,1,2,squares,,\n", HEADER, "line 2, column 'image_tokens': 'squares' is not a rule"),
        ("gpt-4o,1,2,,,,extra\n", HEADER, "line 2: 7 fields but the header has 6 columns"),
        ("gpt-4o,1\n", "model,input_per_mtok\n", "line 1: missing column(s) output_per_mtok"),
        ("", "", "empty price table"),
    ],
)
def test_malformed_file_names_file_line_and_column(
    tmp_path: Path, body: str, header: str, message: str
) -> None:
    path = write(tmp_path, body, header)
    with pytest.raises(ValueError) as excinfo:
        PriceTable.load(path)
    assert str(excinfo.value).startswith(str(path))
    assert message in str(excinfo.value)


def test_missing_file_is_a_value_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the price table"):
        PriceTable.load(tmp_path / "nope.csv")


def test_batch_calls_cost_the_batch_price() -> None:
    table = PriceTable.load()
    gpt4o, flash = parse_spec("openai:gpt-4o"), parse_spec("gemini:gemini-2.5-flash")
    for model in table.prices.values():  # the shipped rows carry the published batch prices: half
        assert model.batch_input_per_mtok == pytest.approx(model.input_per_mtok / 2)
        assert model.batch_output_per_mtok == pytest.approx(model.output_per_mtok / 2)
    assert table.cost(gpt4o, 1_000_000, 1_000_000, batch=True) == pytest.approx(1.25 + 5.00)
    assert table.cost(flash, 1000, 100, batch=True) == pytest.approx(0.00055 / 2)
    batch = BatchPrices(table)
    assert batch.cost(gpt4o, 1234, 56) == pytest.approx(table.cost(gpt4o, 1234, 56) / 2)
    assert batch.estimate(gpt4o, "prompt", 1024, 1024) == pytest.approx(
        table.estimate(gpt4o, "prompt", 1024, 1024) / 2
    )
    assert "batch in $1.25 out $5" in table.describe()[0]


def test_a_row_without_batch_prices_takes_the_providers_batch_factor(tmp_path: Path) -> None:
    header = "model,input_per_mtok,output_per_mtok,batch_input_per_mtok,batch_output_per_mtok\n"
    path = write(tmp_path, "gpt-9,4.0,8.0,,\ncompat:llava,1.0,2.0,,\ngemini-9,1.0,1.0,0.3,0.3\n", header)
    table = PriceTable.load(path)
    assert table.rates(parse_spec("openai:gpt-9"), batch=True) == (2.0, 4.0)  # OpenAI's entry: 0.5
    assert table.rates(parse_spec("gemini:gemini-9"), batch=True) == (0.3, 0.3)  # the row's own price
    llava = parse_spec("compat:llava@http://127.0.0.1:11434/v1")
    assert table.cost(llava, 10, 10) == pytest.approx(30 / 1e6)
    assert table.cost(llava, 10, 10, batch=True) is None  # compat has no batch API, so no batch price
    assert table.cost(parse_spec("baseline:forensic"), 1, 1, batch=True) == 0.0  # free unless priced


def test_one_batch_price_without_the_other_is_refused(tmp_path: Path) -> None:
    header = "model,input_per_mtok,output_per_mtok,batch_input_per_mtok,batch_output_per_mtok\n"
    path = write(tmp_path, "gpt-9,4.0,8.0,2.0,\n", header)
    with pytest.raises(ValueError, match="line 2, columns batch_input_per_mtok, batch_output_per_mtok: give both"):
        PriceTable.load(path)
    with pytest.raises(ValueError, match="column 'batch_output_per_mtok': '-1' is not a price"):
        PriceTable.load(write(tmp_path, "gpt-9,4.0,8.0,2.0,-1\n", header))
