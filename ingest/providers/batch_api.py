"""The interface of a provider's batch API client (providers with the ``batch`` capability).

A client turns one call into one JSONL line of the provider's batch input format (``line``), says
how many lines and bytes one batch may hold, uploads a payload, creates a batch tagged with the
ledger id, finds a batch it tagged (adoption after a crash), reports its status, reads its
results as ``Reply`` or ``ProviderError`` per key, and cancels. ``ingest.batch`` drives it and
records every step in the ledger; a client keeps no state between calls (a later process, with
only the ledger, must be able to continue).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ingest.providers.base import CallRequest, Provider, ProviderError, Reply

if TYPE_CHECKING:
    from ingest.batch_ledger import LedgerEntry

#: How a finished batch ended; ``None`` while it runs.
OUTCOMES = ("completed", "failed", "expired", "cancelled")
#: The prefix of the tag that marks a provider-side batch as made from a MedLens ledger entry.
TAG_PREFIX = "medlens-"
#: A batch created this long before its ledger entry cannot be its own (clock skew allowance).
ADOPT_SKEW_S = 600.0


@dataclass(frozen=True)
class BatchStatus:
    """What the provider says about one batch."""

    provider_state: str  # the provider's own word: in_progress, JOB_STATE_SUCCEEDED, ...
    outcome: str | None  # one of OUTCOMES once it is over, else None
    counts: dict[str, int] = field(default_factory=dict)  # total, completed, failed (as reported)
    message: str | None = None  # why it failed, if it did
    output: dict[str, str] = field(default_factory=dict)  # where the results are (file ids / names)
    finished_at: float | None = None  # epoch seconds the provider reports for the end, if any


Result = tuple[str, "Reply | ProviderError"]


class BatchClient(ABC):
    """One provider's batch API, for one model (the provider instance holds spec, key, options)."""

    max_requests: ClassVar[int]  # lines per batch
    max_bytes: ClassVar[int]  # payload bytes per batch

    def __init__(self, provider: Provider):
        self.provider = provider

    @staticmethod
    def tag(entry: LedgerEntry) -> str:
        return TAG_PREFIX + entry.ledger_id

    @abstractmethod
    def line(self, key: str, request: CallRequest) -> bytes:
        """One line (ending in a newline) of the batch input for ``request``, with ``key`` as its id."""

    def mode(self, payload_bytes: int) -> str:
        """``file`` (upload the payload) or ``inline`` (send it in the create call)."""
        return "file"

    @abstractmethod
    def upload(self, entry: LedgerEntry, payload: Path) -> str:
        """Upload the payload; returns the provider's file id (adopts one uploaded before a crash)."""

    @abstractmethod
    def find(self, entry: LedgerEntry) -> str | None:
        """The id of a provider-side batch tagged with this entry's ledger id, if one exists."""

    @abstractmethod
    def create(self, entry: LedgerEntry, payload: Path) -> str:
        """Create the batch (tagged with the ledger id); returns its id. Not idempotent."""

    @abstractmethod
    def status(self, batch_id: str) -> BatchStatus:
        """The batch's state, counts and result references."""

    @abstractmethod
    def results(self, status: BatchStatus, keys: list[str]) -> Iterator[Result]:
        """(key, Reply or ProviderError) for each request the batch answered; ``keys`` are the
        batch's keys in input order (for results that come back by position)."""

    @abstractmethod
    def cancel(self, batch_id: str) -> None:
        """Ask the provider to cancel the batch."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""


def batch_client(provider: Provider) -> BatchClient:
    """The batch client named by the provider's registry entry (imported on use)."""
    target = provider.entry.batch
    if not target:
        raise ProviderError(
            "bad_request", f"{provider.spec.raw}: this provider has no batch API; run it without --batch",
            retryable=False,
        )  # fmt: skip
    module, _, name = target.partition(":")
    cls: Any = getattr(importlib.import_module(module), name)
    return cls(provider)
