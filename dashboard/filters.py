"""The sidebar filters <-> the URL query string (pure; no Streamlit).

A copied link reproduces the view, so every filter is a repeated query parameter:
``?model=openai:gpt-4o&model=gemini:gemini-2.5-pro&modality=fundus&outcome=wrong``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlencode

from cache.filters import OUTCOMES, Filters  # noqa: F401 (OUTCOMES: re-exported for the sidebar)
from cache.schema import TRUTHS  # noqa: F401 (re-exported)

#: Filters field -> query parameter name (order = sidebar order).
PARAMS: dict[str, str] = {
    "model": "model",
    "modality": "modality",
    "prompt_id": "prompt",
    "source": "source",
    "truth": "truth",
    "outcome": "outcome",
}


def _values(raw: str | Iterable[str] | None) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw else []
    return [v for v in raw if v]


def filters_from_params(params: Mapping[str, str | Sequence[str]]) -> Filters:
    """Filters from query parameters (each a string or a list of strings); unknown values of the
    closed vocabularies (truth, outcome) are dropped, duplicates removed, order kept."""
    fields: dict[str, tuple[str, ...]] = {}
    for field, name in PARAMS.items():
        values = list(dict.fromkeys(_values(params.get(name))))
        if field == "outcome":
            values = [v for v in values if v in OUTCOMES]
        elif field == "truth":
            values = [v for v in values if v in TRUTHS]
        fields[field] = tuple(values)
    return Filters(**fields)


def params_from_filters(filters: Filters) -> dict[str, list[str]]:
    """Query parameters for ``filters``; an empty selection ('all') is omitted."""
    return {name: list(getattr(filters, field)) for field, name in PARAMS.items() if getattr(filters, field)}


def normalise(filters: Filters) -> Filters:
    """The same filters (a Filters holds tuples already: hashable, usable as a cache key)."""
    return Filters(**{field: getattr(filters, field) for field in PARAMS})


def without(filters: Filters, *fields: str) -> Filters:
    """``filters`` with the given fields cleared (e.g. the model filter on the Compare page)."""
    return filters.without(*fields)


def query_string(params: Mapping[str, str | Sequence[str]]) -> str:
    """``a=1&b=x&b=y`` for a mapping of single or repeated values (stable order)."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        pairs.extend((name, v) for v in _values(value))
    return urlencode(pairs)


def page_link(page: str, filters: Filters, **extra: str) -> str:
    """A relative link to ``page`` (its url path) carrying the filters and page parameters.

    Relative, so it works behind any base URL: from ``/compare`` the browser resolves
    ``gallery?image=...`` to ``/gallery?image=...``.
    """
    params: dict[str, str | Sequence[str]] = dict(params_from_filters(filters))
    params.update({k: v for k, v in extra.items() if v})
    qs = query_string(params)
    return f"{page}?{qs}" if qs else page


def describe(filters: Filters) -> str:
    """One line for captions and exported file names: 'model=a,b; modality=fundus' or 'all rows'."""
    parts = [f"{name}={','.join(getattr(filters, field))}" for field, name in PARAMS.items()
             if getattr(filters, field)]
    return "; ".join(parts) if parts else "all rows"
