"""Who is writing a store right now: owners with a heartbeat, key claims, and the layout lease.

- An **owner** is one process writing the store (an ``ingest run``, a ``cache compact``...). It
  registers ``leases/<owner_id>.json`` (pid, host, start time, heartbeat) and renews it from a
  thread every ``ttl / 4`` seconds. It is **dead** when the record is gone, when its pid no longer
  runs on this machine (same hostname, boot and pid namespace: checked at once, start time
  included, so a reused pid is not mistaken for it), or, seen from another machine, when its
  heartbeat is older than ``ttl`` (``MEDLENS_LEASE_TTL``, default 60 s).
- A **claim** ``claims/<name>`` (a response key, or ``layout``) is created if absent
  (``Storage.put_if_absent``), naming its owner. A claim of a dead owner is taken over by exactly
  one process: the one that creates the marker ``claims/<name>.x-<dead owner>`` and then finds the
  claim still naming that owner. The marker goes when the claim is released.
- The **layout lease** is the claim ``layout``: held by operations that rewrite the layout
  (``cache compact``, ``cache import``, folding a dead run's journal). Readers never need it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cache.storage import Storage, check_name

LEASES, CLAIMS = "leases", "claims"
LAYOUT = "layout"
_OWNER_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6,32}$")


def lease_ttl() -> float:
    """Seconds after its last heartbeat that another machine takes an owner for dead."""
    try:
        return max(0.5, float(os.environ.get("MEDLENS_LEASE_TTL", "60")))
    except ValueError:
        return 60.0


def new_owner_id() -> str:
    """``<UTC stamp>-<random hex>``: sorts by start time; used as run id and journal folder."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def check_owner_id(owner_id: str) -> str:
    if not _OWNER_ID.match(owner_id):
        raise ValueError(f"not an owner id: {owner_id!r}")
    return owner_id


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def machine_token() -> str:
    """Hostname, boot and pid namespace: two processes with the same token can check each other's pid."""
    parts = [socket.gethostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            parts.append(fh.read().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        pass
    return "/".join(parts)


def pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    return start is None or _proc_start(pid) in (None, start)


@dataclass
class Holder:
    """Who holds a claim or lease (for messages): owner id and its record, when readable."""

    owner_id: str
    record: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        r = self.record
        what = f"`{r['command']}` " if r.get("command") else ""
        return (
            f"{what}pid {r.get('pid', '?')} on {r.get('host', '?')}, started {r.get('started_at', '?')} "
            f"(run {self.owner_id})"
        )


class Owner:
    """This process's lease on a store; a context manager that starts and stops the heartbeat."""

    def __init__(self, storage: Storage, command: str, owner_id: str | None = None, ttl: float | None = None):
        self.storage, self.command = storage, command
        self.owner_id = check_owner_id(owner_id or new_owner_id())
        self.ttl = ttl or lease_ttl()
        self.name = f"{LEASES}/{self.owner_id}.json"
        self.lost = False  # set when another process took this owner for dead
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_renewal = 0.0
        pid = os.getpid()
        self.record = {
            "owner_id": self.owner_id,
            "pid": pid,
            "proc_start": _proc_start(pid),
            "host": socket.gethostname(),
            "machine": machine_token(),
            "command": command,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "ttl_s": self.ttl,
        }

    def _write(self) -> None:
        record = self.record | {"heartbeat_at": time.time()}
        self.storage.put(self.name, json.dumps(record).encode(), durable=False)
        self._last_renewal = time.monotonic()

    def start(self) -> Owner:
        self._write()
        self._thread = threading.Thread(target=self._beat, name="medlens-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                if json.loads(self.storage.read(self.name)).get("owner_id") != self.owner_id:
                    self.lost = True
            except FileNotFoundError:
                self.lost = True  # folded and removed by another process that took us for dead
            except (OSError, ValueError):
                pass
            if self.lost:
                return
            with contextlib.suppress(OSError):  # a full disk: again next beat; valid() says when too late
                self._write()

    def valid(self) -> bool:
        """False once others may take this owner for dead: stop starting paid calls."""
        return not self.lost and time.monotonic() - self._last_renewal < self.ttl * 0.75

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self.lost:
            self.storage.delete(self.name)

    def __enter__(self) -> Owner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Liveness:
    """Is an owner alive? Dead answers are kept (a dead owner never comes back); live ones for 1 s."""

    def __init__(self, storage: Storage, ttl: float | None = None):
        self.storage, self.ttl = storage, ttl or lease_ttl()
        self.machine = machine_token()
        self._dead: set[str] = set()
        self._alive: dict[str, tuple[float, dict[str, Any]]] = {}

    def record(self, owner_id: str) -> dict[str, Any] | None:
        if not _OWNER_ID.match(owner_id):
            return {}  # not ours to judge: taken as alive
        try:
            return json.loads(self.storage.read(f"{LEASES}/{owner_id}.json"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: unknown, so taken as alive

    def alive(self, owner_id: str) -> bool:
        if owner_id in self._dead:
            return False
        seen = self._alive.get(owner_id)
        if seen and time.monotonic() - seen[0] < 1.0:
            return True
        record = self.record(owner_id)
        if record is None:
            alive = False
        elif record.get("machine") == self.machine and isinstance(record.get("pid"), int):
            alive = pid_alive(record["pid"], record.get("proc_start"))
        else:
            alive = time.time() - float(record.get("heartbeat_at") or time.time()) < self.ttl
        if alive:
            self._alive[owner_id] = (time.monotonic(), record or {})
        else:
            self._dead.add(owner_id)
        return alive

    def holder(self, owner_id: str) -> Holder:
        return Holder(owner_id, (self._alive.get(owner_id) or (0, self.record(owner_id) or {}))[1])


@dataclass
class ClaimResult:
    won: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # name -> live owner id
    dead: dict[str, str] = field(default_factory=dict)  # name -> dead owner id (not taken over yet)


class Claims:
    """Create-if-absent claims on names (response keys, ``layout``) for one owner."""

    def __init__(self, storage: Storage, owner: Owner, liveness: Liveness | None = None):
        self.storage, self.owner = storage, owner
        self.liveness = liveness or Liveness(storage, owner.ttl)
        self._body = json.dumps({"owner": owner.owner_id}).encode()
        self.taken_from: dict[str, str] = {}  # name -> dead owner whose claim we took over

    def _owner_of(self, name: str) -> str | None:
        try:
            return json.loads(self.storage.read(f"{CLAIMS}/{name}"))["owner"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return "?"

    def _each(self, fn: Callable[[str], Any], names: Iterable[str]) -> list[Any]:
        """``fn`` over ``names`` in order; on an object store several at once (each is a request
        of some 10 ms: one at a time, claiming and releasing would bound a run to ~50 keys/s)."""
        names = list(names)
        if len(names) < 2 or self.storage.local_path(CLAIMS) is not None:
            return [fn(name) for name in names]
        with ThreadPoolExecutor(min(16, len(names)), thread_name_prefix="medlens-claims") as pool:
            return list(pool.map(fn, names))

    def _claim(self, name: str) -> tuple[str, str | None]:
        """('won' | 'dead' | 'held', holder) for one name."""
        for _ in range(3):  # a claim released between our create and our read: try again
            if self.storage.put_if_absent(f"{CLAIMS}/{name}", self._body, durable=False):
                return "won", None
            holder = self._owner_of(name)
            if holder is None:
                continue
            if holder == self.owner.owner_id:
                return "won", None
            if holder != "?" and not self.liveness.alive(holder):
                return "dead", holder
            return "held", holder
        return "held", "?"  # created and released three times in a row: someone is busy with it

    def try_many(self, names: Iterable[str]) -> ClaimResult:
        """Claim each name; those held by others are sorted into live and dead holders."""
        result = ClaimResult()
        names = list(names)
        for name, (kind, holder) in zip(names, self._each(self._claim, names), strict=True):
            if kind == "won":
                result.won.append(name)
            elif kind == "dead":
                result.dead[name] = holder  # type: ignore[assignment]
            else:
                result.held[name] = holder  # type: ignore[assignment]
        return result

    def take_over(self, name: str, dead_owner: str) -> bool:
        """Take the claim of a dead owner; True for exactly one caller (see the module docstring)."""
        marker = f"{CLAIMS}/{name}.x-{check_owner_id(dead_owner)}"
        if not self.storage.put_if_absent(marker, self._body, durable=False):
            return False
        current = self._owner_of(name)
        if current != dead_owner:
            self.storage.delete(marker)
            return current is None and bool(self.try_many([name]).won)
        self.storage.put(f"{CLAIMS}/{name}", self._body, durable=False)
        self.taken_from[name] = dead_owner
        return True

    def release(self, names: Iterable[str]) -> None:
        """Give up claims we hold (a claim since taken over by another process is left alone)."""
        names = list(names)
        markers = {name: self.taken_from.pop(name, None) for name in names}
        folder = self.storage.local_path(CLAIMS)

        def release_one(name: str) -> None:
            if self._holds(name, folder):
                self.storage.delete(f"{CLAIMS}/{name}")
            if markers[name]:
                self.storage.delete(f"{CLAIMS}/{name}.x-{markers[name]}")

        self._each(release_one, names)

    def _holds(self, name: str, folder: Path | None) -> bool:
        """The claim on ``name`` is this owner's. In a local claims ``folder`` the file's bytes are
        compared with our own claim first (os calls, no JSON: a run releases every key it answered,
        on the writer's thread); a FIFO planted there is not waited on."""
        if folder is None:
            return self._owner_of(name) == self.owner.owner_id
        try:
            fd = os.open(os.path.join(folder, check_name(name)), os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return False
        try:
            body = os.read(fd, len(self._body) + 1)
        except OSError:  # not a readable claim file: not ours to remove
            body = b""
        finally:
            os.close(fd)
        return body == self._body or (bool(body) and self._owner_of(name) == self.owner.owner_id)

    def acquire(self, name: str) -> Holder | None:
        """Claim one name, taking it over from a dead holder; None when held, else the live holder."""
        result = self.try_many([name])
        if result.won:
            return None
        if name in result.dead and self.take_over(name, result.dead[name]):
            return None
        return self.liveness.holder(result.held.get(name) or result.dead.get(name, "?"))


class StoreBusy(RuntimeError):
    """Another live process holds the layout lease; the message names it."""


@contextmanager
def layout_lease(storage: Storage, owner: Owner, what: str, root: object) -> Iterator[None]:
    """Hold the store's exclusive layout lease for ``what``; raise StoreBusy naming the holder."""
    claims = Claims(storage, owner)
    holder = claims.acquire(LAYOUT)
    if holder is not None:
        raise StoreBusy(
            f"store {root} is busy: {holder.describe()} holds its layout lease, so {what} "
            "cannot run now; run it again when that finishes (a holder that died is taken "
            f"over at once on its own machine, {owner.ttl:.0f} s after its last heartbeat elsewhere)"
        )
    try:
        yield
    finally:
        claims.release([LAYOUT])
