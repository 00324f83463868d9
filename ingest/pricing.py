"""Cost of calls: a price table users can edit (``data/prices.csv``) and token estimates.

``PriceTable.cost`` prices a finished call from the tokens the API reported; ``estimate`` prices
a call still to make (``--dry-run``, ``--budget``) from the prompt length and the image size. The
table's header comment documents the columns and the image-token rules; the prices in it are as
published on the date in each row and must be checked before use.

Batch calls (``ingest run --batch``) are priced from a row's ``batch_input_per_mtok`` /
``batch_output_per_mtok``; a row that leaves them empty gets the provider's batch factor (its
registry entry's ``PriceRule.batch_factor``, 0.5 for OpenAI and Gemini) times the online price.
``BatchPrices`` is the table seen by a batch run: the same interface, batch prices.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.providers.base import ModelSpec, SpecError
from ingest.providers.registry import PriceRule, get

DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "prices.csv"
ENV_PATH = "MEDLENS_PRICES"
REQUIRED = ("model", "input_per_mtok", "output_per_mtok")
BATCH_COLUMNS = ("batch_input_per_mtok", "batch_output_per_mtok")  # optional, both or neither
#: Message framing around the prompt text (role markers etc.), in tokens.
PROMPT_OVERHEAD_TOKENS = 10


def price_rule(spec: ModelSpec) -> PriceRule:
    """The provider's price rule (its registry entry): default image rule, free unless priced,
    batch factor. A spec of no registered provider (``import:``) gets the default rule."""
    try:
        return get(spec.provider).price
    except SpecError:
        return PriceRule()


@dataclass(frozen=True)
class Price:
    """One row: USD per million input / output tokens and how to count an image's tokens."""

    model: str
    input_per_mtok: float
    output_per_mtok: float
    image_tokens: str = ""
    updated: str = ""
    notes: str = ""
    batch_input_per_mtok: float | None = None  # None: the provider's batch factor x the online price
    batch_output_per_mtok: float | None = None


def image_tokens(rule: str, width: int, height: int, detail: str = "high") -> int:
    """Tokens of one ``width`` x ``height`` image under ``rule`` (see the header of prices.csv)."""
    kind, _, args = rule.partition(":")
    numbers = [float(a) for a in args.split(":")] if args else []
    if kind == "flat":
        return int(numbers[0])
    if kind == "tiles":
        base, tile = numbers
        if detail == "low":
            return int(base)
        w, h = _fit(width, height, 2048)
        if min(w, h) > 768:  # scale so the shortest side is 768 (never upscale)
            scale = 768 / min(w, h)
            w, h = w * scale, h * scale
        return int(base + tile * math.ceil(w / 512) * math.ceil(h / 512))
    if kind == "patches":
        (multiplier,) = numbers
        patches = math.ceil(width / 32) * math.ceil(height / 32)
        if patches > 1536:  # shrink to ~1536 patches, then so the width is a whole number of patches
            scale = math.sqrt(32 * 32 * 1536 / (width * height))
            across = width * scale / 32
            down = height * scale / 32 * (math.floor(across) / across)
            patches = min(1536, math.floor(across) * math.ceil(down))
        return math.ceil(patches * multiplier)
    if kind == "gemini_tiles":
        (per_tile,) = numbers
        if width <= 384 and height <= 384:
            return int(per_tile)
        return int(per_tile * math.ceil(width / 768) * math.ceil(height / 768))
    raise ValueError(f"unknown image_tokens rule {rule!r}")


def _fit(width: int, height: int, side: int) -> tuple[float, float]:
    scale = min(1.0, side / max(width, height))
    return width * scale, height * scale


def _check_rule(rule: str) -> None:
    if rule:
        image_tokens(rule, 1024, 1024)


class PriceTable:
    """Prices by model name: exact match first, then the longest prefix."""

    def __init__(self, prices: dict[str, Price], path: Path | None = None):
        self.prices = prices
        self.path = path

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """Read ``path``, else ``$MEDLENS_PRICES``, else ``data/prices.csv``.

        A malformed file raises ValueError naming the file, the line and the column.
        """
        path = Path(path or os.environ.get(ENV_PATH) or DEFAULT_PATH)
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                return cls(dict(_read_rows(handle, path)), path)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the price table ({exc.strerror})") from None

    def lookup(self, spec: ModelSpec) -> Price | None:
        """The row for ``spec``, or None. Names tried: ``provider:model`` and ``model``; a bare
        name never prices a provider that is free unless priced (a local llava is not OpenAI's)."""
        names = [f"{spec.provider}:{spec.model}"]
        if not price_rule(spec).free_unless_priced:
            names.append(spec.model)
        for name in names:
            if name in self.prices:
                return self.prices[name]
        # A prefix must end where the name has a "-" next (gpt-4o-2024-08-06 -> gpt-4o, not gpt-4 -> gpt-4o).
        matches = [key for key in self.prices for name in names if name.startswith(key + "-")]
        return self.prices[max(matches, key=len)] if matches else None

    def rates(self, spec: ModelSpec, *, batch: bool = False) -> tuple[float, float] | None:
        """USD per million (input, output) tokens for ``spec``, online or in a batch; None when
        unpriced (a batch price is unknown when the row has none and the provider no batch factor)."""
        price = self.lookup(spec)
        if price is None:
            return None
        if not batch:
            return price.input_per_mtok, price.output_per_mtok
        if price.batch_input_per_mtok is not None and price.batch_output_per_mtok is not None:
            return price.batch_input_per_mtok, price.batch_output_per_mtok
        factor = price_rule(spec).batch_factor
        return None if factor is None else (price.input_per_mtok * factor, price.output_per_mtok * factor)

    def cost(
        self, spec: ModelSpec, input_tokens: int | None, output_tokens: int | None, *, batch: bool = False
    ) -> float | None:
        """USD for one call (``batch``: answered through a provider batch API); None when the model
        is unpriced or no usage was reported; 0.0 for models of a provider that is free unless
        priced, without a row of their own."""
        rates = self.rates(spec, batch=batch)
        if rates is None:
            return 0.0 if self.lookup(spec) is None and price_rule(spec).free_unless_priced else None
        if input_tokens is None and output_tokens is None:
            return None
        return ((input_tokens or 0) * rates[0] + (output_tokens or 0) * rates[1]) / 1e6

    def estimate(
        self,
        spec: ModelSpec,
        prompt_text: str,
        width: int,
        height: int,
        detail: str = "high",
        expected_output_tokens: int = 300,
        *,
        batch: bool = False,
    ) -> float | None:
        """Estimated USD of one call still to make: prompt ~ len/4 tokens + framing, the image by
        its rule, ``expected_output_tokens`` of answer. None when unpriced."""
        price = self.lookup(spec)
        rule = price_rule(spec)
        if price is None:
            return 0.0 if rule.free_unless_priced else None
        image_rule = price.image_tokens or rule.image_tokens
        tokens_in = math.ceil(len(prompt_text) / 4) + PROMPT_OVERHEAD_TOKENS
        tokens_in += image_tokens(image_rule, width, height, detail)
        return self.cost(spec, tokens_in, expected_output_tokens, batch=batch)

    def describe(self) -> list[str]:
        """One line per priced model, for ``python -m ingest models``."""
        return [
            f"{p.model:<24} in ${p.input_per_mtok:>7.3f}  out ${p.output_per_mtok:>7.3f}"
            + (
                f"  batch in ${p.batch_input_per_mtok:.4g} out ${p.batch_output_per_mtok:.4g}"
                if p.batch_input_per_mtok is not None and p.batch_output_per_mtok is not None
                else ""
            )
            + (f"  (as published {p.updated}; check before use)" if p.updated else "")
            for p in self.prices.values()
        ]


class BatchPrices:
    """A price table that prices every call at its batch price (what a ``--batch`` run pays)."""

    def __init__(self, table: PriceTable):
        self.table = table

    def lookup(self, spec: ModelSpec) -> Price | None:
        return self.table.lookup(spec)

    def cost(self, spec: ModelSpec, input_tokens: int | None, output_tokens: int | None) -> float | None:
        return self.table.cost(spec, input_tokens, output_tokens, batch=True)

    def estimate(self, spec: ModelSpec, prompt_text: str, width: int, height: int, **kw: object) -> float | None:
        return self.table.estimate(spec, prompt_text, width, height, batch=True, **kw)  # type: ignore[arg-type]


def _read_rows(handle: Iterator[str], path: Path) -> Iterator[tuple[str, Price]]:
    # Comment lines become blank lines, which csv yields as [], so line numbers stay true.
    reader = csv.reader("\n" if line.lstrip().startswith("#") else line for line in handle)
    header: list[str] | None = None
    seen: set[str] = set()
    for fields in reader:
        if not fields:
            continue
        if header is None:
            header = [name.strip() for name in fields]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise ValueError(
                    f"{path}: line {reader.line_num}: missing column(s) {', '.join(missing)}; "
                    f"the header must contain {','.join(REQUIRED)}"
                )
            continue
        where = f"{path}: line {reader.line_num}"
        if len(fields) > len(header):
            raise ValueError(f"{where}: {len(fields)} fields but the header has {len(header)} columns")
        row = {name: value.strip() for name, value in zip(header, fields, strict=False)}
        price = _price(row, where)
        if price.model in seen:
            raise ValueError(f"{where}, column 'model': {price.model!r} is listed twice")
        seen.add(price.model)
        yield price.model, price
    if header is None:
        raise ValueError(f"{path}: empty price table; the header must contain {','.join(REQUIRED)}")


def _price(row: dict[str, str], where: str) -> Price:
    """One validated row; ValueError naming the column on a bad value."""
    model = row.get("model", "")
    if not model:
        raise ValueError(f"{where}, column 'model': empty model name")
    numbers: dict[str, float | None] = {}
    for column in ("input_per_mtok", "output_per_mtok", *BATCH_COLUMNS):
        text = row.get(column, "")
        if column in BATCH_COLUMNS and not text:
            numbers[column] = None
            continue
        try:
            numbers[column] = float(text)
        except ValueError:
            numbers[column] = -1.0
        if not math.isfinite(numbers[column]) or numbers[column] < 0:
            raise ValueError(
                f"{where}, column {column!r}: {text!r} is not a price (USD per million tokens, e.g. 2.50)"
            )
    if (numbers["batch_input_per_mtok"] is None) != (numbers["batch_output_per_mtok"] is None):
        raise ValueError(f"{where}, columns {', '.join(BATCH_COLUMNS)}: give both batch prices or neither")
    rule = row.get("image_tokens", "")
    try:
        _check_rule(rule)
    except (ValueError, IndexError):
        raise ValueError(
            f"{where}, column 'image_tokens': {rule!r} is not a rule "
            "(tiles:BASE:TILE, patches:MULT, gemini_tiles:N or flat:N)"
        ) from None
    return Price(
        model,
        numbers["input_per_mtok"],
        numbers["output_per_mtok"],
        rule,
        updated=row.get("updated", ""),
        notes=row.get("notes", ""),
        batch_input_per_mtok=numbers["batch_input_per_mtok"],
        batch_output_per_mtok=numbers["batch_output_per_mtok"],
    )
