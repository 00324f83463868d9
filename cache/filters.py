"""The one definition of a selection of rows, rendering its own SQL for every surface.

The CLI (``--model/--modality/--prompt``), the dashboard's sidebar (and its URL), the report, the
bundle export and the paired comparison all select rows with a :class:`Filters`; each asks it for
its WHERE (or AND) clause, optionally for a table alias (``a.model``) and with some fields left
out (the Compare page pairs two models, so the model filter does not apply there). No caller edits
SQL text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

#: Fields that select rows of the views (in sidebar order). ``outcome`` exists only on row views.
COLUMNS = ("model", "modality", "prompt_id", "source", "truth")
OUTCOMES = ("correct", "wrong", "abstained", "error")


@dataclass(frozen=True)
class Filters:
    """Selections shared by every surface. An empty selection means 'all'."""

    model: Sequence[str] = ()
    modality: Sequence[str] = ()
    prompt_id: Sequence[str] = ()
    source: Sequence[str] = ()  # '' selects rows without a source
    truth: Sequence[str] = ()
    outcome: Sequence[str] = field(default=())  # correct | wrong | abstained | error (row views only)

    def __post_init__(self) -> None:  # tuples: hashable (a cache key) and never shared mutable lists
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, (value,) if isinstance(value, str) else tuple(value))

    def conditions(self, alias: str | None = None, *, with_outcome: bool = False,
                   exclude: Iterable[str] = ()) -> tuple[list[str], list[Any]]:
        """SQL conditions (to be AND-ed) and their parameters, for the columns of ``alias``."""
        skip = set(exclude)
        prefix = f"{alias}." if alias else ""
        clauses, params = [], []
        for column in COLUMNS + (("outcome",) if with_outcome else ()):
            values = list(getattr(self, column))
            if values and column not in skip:
                clauses.append(f"coalesce({prefix}{column}, '') IN ({', '.join('?' * len(values))})")
                params.extend(values)
        return clauses, params

    def where(self, alias: str | None = None, *, with_outcome: bool = False,
              exclude: Iterable[str] = ()) -> tuple[str, list[Any]]:
        """``WHERE ...`` (or an empty string) and its parameters."""
        clauses, params = self.conditions(alias, with_outcome=with_outcome, exclude=exclude)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params

    def clause(self, alias: str | None = None, *, with_outcome: bool = False,
               exclude: Iterable[str] = ()) -> tuple[str, list[Any]]:
        """``AND ...`` (or an empty string), to continue a WHERE the caller wrote, and its parameters."""
        clauses, params = self.conditions(alias, with_outcome=with_outcome, exclude=exclude)
        return "".join(f" AND {c}" for c in clauses), params

    def without(self, *names: str) -> Filters:
        """The same selection with the named fields cleared."""
        return replace(self, **dict.fromkeys(names, ()))

    def narrowed(self, **values: Sequence[str]) -> Filters:
        """The same selection with the given fields replaced (e.g. one prompt of a report)."""
        return replace(self, **values)

    def as_dict(self) -> dict[str, list[str]]:
        """The non-empty fields, for provenance records and file names."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name)}
