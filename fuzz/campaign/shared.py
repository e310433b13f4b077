"""One campaign on many machines: the state they share, in Redis.

``hakfuzz fuzz --shared redis://host:port/db`` makes every machine's
supervisor publish to, and read from, one Redis database:

- **findings**, deduplicated by signature across machines: the first
  machine to meet a signature stores its program; a later one raises the
  count, joins the set of machines that met it, and replaces the program
  only with a smaller one (``hakfuzz findings pull`` brings them home);
- the **atheris corpus**: inputs that added coverage on one machine are
  appended to a shared log and copied into every other machine's corpus
  directory (libFuzzer reloads its corpus while it runs), a bounded number
  per sync;
- the **quarantine**: inputs that killed a worker anywhere are never seeded
  anywhere;
- each machine's **progress** (engines, execs, coverage, findings), which
  ``hakfuzz status`` shows, expiring when a machine stops reporting.

The Hypothesis example database is shared too, through Hypothesis's own
Redis database (see :mod:`hakfuzz.engines.hypothesis_engine`).

Redis is a convenience, never a dependency of a finding: every finding is
saved locally first.  When the server goes away, the supervisor says so
once, keeps fuzzing and saving locally, retries now and then, and on its
return publishes what it met meanwhile.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hakfuzz._errors import UsageError
from hakfuzz.program.jsonio import dump_program

if TYPE_CHECKING:
    from hakfuzz.campaign.supervisor import EngineTally
    from hakfuzz.findings import Finding

PREFIX = "hakfuzz:"
SHARED_ENV = "HAKFUZZ_SHARED"
"""The environment variable that stands for ``--shared``."""

_PROGRESS_TTL = 30  # seconds a machine stays listed after its last report
_SYNC_EVERY = 2.0  # seconds between two syncs
_RETRY_EVERY = 5.0  # seconds between two attempts while the server is away
_CORPUS_BATCH = 200  # inputs moved each way per sync (a bounded rate)
_JOB_ONLY = 1 << 30  # the size of a finding with no ops: any real program is smaller


def require_redis(url: str, flag: str) -> None:
    """A usage error, before any worker starts, if ``url`` cannot be used."""
    if not url.startswith("redis://"):
        raise UsageError(f"{flag} {url}: not a redis:// URL (redis://host:port/db)")
    if importlib.util.find_spec("redis") is None:
        raise UsageError(
            f"{flag} {url}: the redis package is not installed (pip install 'hakfuzz[redis]')"
        )


def connect(url: str, flag: str = "--shared") -> Any:
    """A Redis client for ``url`` that answers now (a usage error naming ``flag`` if not)."""
    require_redis(url, flag)
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise UsageError(f"{flag} {url}: cannot reach the server ({exc})") from None
    return client


def machine_name() -> str:
    """The name of this machine in the shared state: host, process, a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(slots=True)
class SharedCampaign:
    """The supervisor's side of the shared state: call :meth:`tick` often."""

    client: Any
    machine: str
    corpus_dir: Path | None = None
    quarantine_file: Path | None = None
    on_notice: Callable[[str], None] = lambda message: None
    up: bool = True
    pending: list[tuple[Finding, str]] = field(default_factory=list)  # met while away
    pushed: set[str] = field(default_factory=set)  # corpus files already published
    log_offset: int = 0  # how far this machine has read the shared corpus log
    last_sync: float = 0.0
    pulled: int = 0  # corpus inputs copied in from other machines

    # ---- guarded calls -------------------------------------------------------
    def _guard(self, what: Callable[[], None]) -> bool:
        """Run ``what``; on a Redis error, say so once and mark the server away."""
        import redis

        try:
            what()
        except (redis.RedisError, OSError) as exc:
            if self.up:
                self.on_notice(
                    f"shared state: the Redis server went away ({exc}); fuzzing and saving "
                    "locally, will sync when it returns"
                )
            self.up = False
            return False
        if not self.up:
            self.on_notice("shared state: the Redis server is back; syncing")
            self.up = True
            self.pending, waiting = [], self.pending
            for finding, machine_engine in waiting:
                self.publish(finding, machine_engine)
        return True

    # ---- findings ------------------------------------------------------------
    def publish(self, finding: Finding, engine: str, *, count: bool = True) -> None:
        """Count ``finding`` as met by this machine; keep its program if smaller.

        ``count=False`` only offers a smaller program (the minimised one).
        """
        if not self.up:
            if count:
                self.pending.append((finding, engine))
            return
        if not self._guard(lambda: self._publish(finding, engine, count)) and count:
            self.pending.append((finding, engine))

    def _publish(self, finding: Finding, engine: str, count: bool = True) -> None:

        key = f"{PREFIX}finding:{finding.signature}"
        ops = len(finding.program.ops) or _JOB_ONLY  # a preload job ranks after any program
        meta = {
            "signature": finding.signature,
            "engine": engine,
            "kind": finding.kind,
            "message": finding.message,
            "variant": finding.variant,
            "seed": finding.seed,
            "job": finding.extra.get("job"),
        }
        program = dump_program(finding.program)
        if count:
            with self.client.pipeline() as pipe:
                pipe.sadd(f"{PREFIX}findings", finding.signature)
                pipe.hincrby(key, "count", 1)
                pipe.sadd(f"{key}:machines", self.machine)
                pipe.hsetnx(key, "first_machine", self.machine)
                pipe.execute()
        # Keep the smallest program: a check-and-set loop, safe against other machines.
        import redis

        while True:
            try:
                with self.client.pipeline() as pipe:
                    pipe.watch(key)
                    known = pipe.hget(key, "ops")
                    if known is not None and int(known) <= ops:
                        pipe.unwatch()
                        return
                    pipe.multi()
                    fields = {"ops": ops, "program": program, "meta": json.dumps(meta)}
                    pipe.hset(key, mapping=fields)
                    pipe.execute()
                    return
            except redis.WatchError:
                continue

    def pull_findings(self) -> list[dict[str, Any]]:
        """Every shared finding: signature, count, machines, ops, program text, meta."""
        return pull_findings(self.client)

    # ---- corpus and quarantine ----------------------------------------------------
    def _sync_corpus(self) -> None:
        if self.corpus_dir is None or not self.corpus_dir.is_dir():
            return
        quarantined = {d.decode() for d in self.client.smembers(f"{PREFIX}quarantine")}
        if self.quarantine_file is not None:
            known = self.quarantine_file.is_file()
            mine = set(self.quarantine_file.read_text().split()) if known else set()
            if mine - quarantined:
                self.client.sadd(f"{PREFIX}quarantine", *(mine - quarantined))
            missing = quarantined - mine
            if missing:
                with open(self.quarantine_file, "a") as out:
                    out.write("".join(f"{d}\n" for d in sorted(missing)))
        new = [
            p
            for p in sorted(self.corpus_dir.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.name not in self.pushed
        ][:_CORPUS_BATCH]
        with self.client.pipeline() as pipe:
            for path in new:
                data = path.read_bytes()
                pipe.hsetnx(f"{PREFIX}corpus", path.name, data)
            added = pipe.execute() if new else []
        fresh = [p.name for p, was_added in zip(new, added, strict=True) if was_added]
        if fresh:
            self.client.rpush(f"{PREFIX}corpus:log", *fresh)
        self.pushed.update(p.name for p in new)
        names = [
            n.decode()
            for n in self.client.lrange(
                f"{PREFIX}corpus:log", self.log_offset, self.log_offset + _CORPUS_BATCH - 1
            )
        ]
        self.log_offset += len(names)
        wanted = [n for n in names if n not in self.pushed and n not in quarantined]
        if wanted:
            blobs = self.client.hmget(f"{PREFIX}corpus", wanted)
            for name, data in zip(wanted, blobs, strict=True):
                if data is not None and not (self.corpus_dir / name).exists():
                    tmp = self.corpus_dir / f".{name}.tmp"
                    tmp.write_bytes(data)
                    tmp.replace(self.corpus_dir / name)
                    self.pulled += 1
                self.pushed.add(name)

    # ---- progress ------------------------------------------------------------
    def _report(self, tallies: dict[str, EngineTally], elapsed: float) -> None:
        doc = {
            "machine": self.machine,
            "elapsed": round(elapsed, 1),
            "time": time.time(),
            "corpus_pulled": self.pulled,
            "engines": {
                name: {
                    "execs": t.execs,
                    "coverage": t.coverage,
                    "native_edges": t.native_edges,
                    "findings": t.findings,
                }
                for name, t in tallies.items()
            },
        }
        with self.client.pipeline() as pipe:
            pipe.sadd(f"{PREFIX}machines", self.machine)
            pipe.set(f"{PREFIX}machine:{self.machine}", json.dumps(doc), ex=_PROGRESS_TTL)
            pipe.execute()

    def tick(self, tallies: dict[str, EngineTally], elapsed: float, *, force: bool = False) -> None:
        """Sync now if it is time: progress, corpus, quarantine (and findings met while away)."""
        now = time.monotonic()
        wait = _SYNC_EVERY if self.up else _RETRY_EVERY
        if not force and now - self.last_sync < wait:
            return
        self.last_sync = now

        def sync() -> None:
            self._report(tallies, elapsed)
            self._sync_corpus()

        self._guard(sync)


def pull_findings(client: Any) -> list[dict[str, Any]]:
    """Every shared finding (see :meth:`SharedCampaign.pull_findings`)."""
    out = []
    for raw in sorted(client.smembers(f"{PREFIX}findings")):
        signature = raw.decode()
        key = f"{PREFIX}finding:{signature}"
        fields = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        machines = sorted(m.decode() for m in client.smembers(f"{key}:machines"))
        out.append(
            {
                "signature": signature,
                "count": int(fields.get("count", 0)),
                "machines": machines,
                "first_machine": fields.get("first_machine"),
                "ops": int(fields.get("ops", 0)) % _JOB_ONLY,  # a job-only finding has none
                "program": fields.get("program"),
                "meta": json.loads(fields.get("meta", "{}")),
            }
        )
    return out


def machines(client: Any) -> list[dict[str, Any]]:
    """The progress documents of every machine still reporting."""
    out = []
    for raw in sorted(client.smembers(f"{PREFIX}machines")):
        doc = client.get(f"{PREFIX}machine:{raw.decode()}")
        if doc is None:
            client.srem(f"{PREFIX}machines", raw)  # stopped reporting: its entry expired
            continue
        out.append(json.loads(doc))
    return out


__all__ = [
    "SHARED_ENV",
    "SharedCampaign",
    "connect",
    "machine_name",
    "machines",
    "pull_findings",
    "require_redis",
]
