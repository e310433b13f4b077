"""The campaign supervisor: start, watch and restart engine workers.

It collects their findings; triage and the report come after.

Workers are child processes (``python -m hakfuzz.campaign.worker``).  Their
stdout carries JSON events; atheris workers' stderr carries libFuzzer's own
status lines (``#N ... cov: C``), parsed for execs and coverage.  A worker
that dies before the deadline is a crash: the input in its journal becomes a
``signal`` finding and a new worker takes its place, unless it was killed from
outside (see :mod:`ledger`: a suspect, re-run before it counts).  Every
finding is saved the moment it is met (:class:`~hakfuzz.campaign.ledger.Ledger`).

Workers run in sessions of their own, so a Ctrl-C at the terminal reaches
the supervisor only; the supervisor polls ``should_stop`` and, when asked,
ends every worker's process group and returns what it has.  An engine whose
workers never ran an input, or keep dying outside any input, has failed:
the result says why, and the campaign is not green.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from hakfuzz.campaign.ledger import EXTERNAL_SIGNALS, Ledger
from hakfuzz.campaign.reproduce import child_env, crash_finding
from hakfuzz.campaign.shared import SharedCampaign
from hakfuzz.campaign.store import FindingStore
from hakfuzz.campaign.worker import journal_path
from hakfuzz.diagnostics import first_diagnostic
from hakfuzz.engines import ENGINES
from hakfuzz.engines.atheris_engine import quarantine
from hakfuzz.engines.foreign_run import spec_of, stamp
from hakfuzz.engines.journal import recover, recover_bytes
from hakfuzz.engines.preload_engine import can_preload
from hakfuzz.findings import Finding
from hakfuzz.program import loads_program
from hakfuzz.targets import PRELOAD_VARIANTS, Target
from hakfuzz.variants import flags_of, in_process


def engine_variants(
    engine: str, variants: tuple[str, ...], *, foreign: bool = False
) -> tuple[str, ...]:
    """The builds of ``variants`` that ``engine`` runs.

    The C driver runs every one; the in-process engines every one a Python
    process can load; the preload engine those a real program can preload.
    Against a ``foreign`` target every engine runs under its ``LD_PRELOAD``,
    so only builds without a sanitizer runtime (which must come first).
    """
    if foreign:
        return tuple(v for v in variants if flags_of(v) in PRELOAD_VARIANTS)
    if engine == "parallel":
        return variants
    if engine == "preload":
        return tuple(v for v in variants if can_preload(v))
    return tuple(v for v in variants if in_process(v))
_LIBFUZZER = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+)")


@dataclass(frozen=True, slots=True)
class CampaignOptions:
    """What a campaign runs."""

    engines: tuple[str, ...] = ENGINES
    seconds: float = 60.0
    jobs: int = 2
    variants: tuple[str, ...] = ("release",)  # every engine spreads its time over its builds
    seed: int = 1
    workdir: Path = Path(".hakfuzz")
    corpus_dir: Path | None = None  # atheris working corpus
    db: str | None = None  # shared Hypothesis example database (dir or redis://)
    seeds: tuple[Path, ...] = ()  # JSON programs for atheris seeds
    libfuzzer_args: tuple[str, ...] = ()
    findings_dir: Path | None = None  # findings are saved here the moment they are met
    target: Target | None = None  # a foreign allocator; None: the built-in hakmem
    foreign_frees: bool = True  # foreign target: glibc's blocks freed by the target
    target_config: tuple[tuple[str, str], ...] = ()  # foreign target: hakfuzz_configure pairs

    @property
    def variant(self) -> str:
        """The builds, as given on the command line (``release,asan``)."""
        return ",".join(self.variants)


@dataclass(slots=True)
class EngineTally:
    """One engine's figures, summed over its workers."""

    workers: int = 0  # job slots, not processes: a restart is counted in ``restarts``
    restarts: int = 0
    execs: int = 0
    ops: int = 0
    coverage: int = 0
    native_edges: int = 0  # atheris: allocator edges ever hit (coverage variant), else 0
    findings: int = 0
    seconds: float = 0.0
    history: list[tuple[float, int, int]] = field(default_factory=list)  # (t, coverage, findings)
    notices: list[str] = field(default_factory=list)
    deaths_outside_input: int = 0
    failure: str | None = None  # why this engine did not really run, if it did not
    by_variant: dict[str, int] = field(default_factory=dict)  # execs on each build
    reached: dict[str, int] = field(default_factory=dict)  # programs per milestone/boundary

    def as_json(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "restarts": self.restarts,
            "execs": self.execs,
            "ops": self.ops,
            "coverage": self.coverage,
            "native_edges": self.native_edges,
            "findings": self.findings,
            "seconds": round(self.seconds, 2),
            "execs_per_sec": round(self.execs / self.seconds, 1) if self.seconds else 0.0,
            "notices": self.notices[:5],
            "failure": self.failure,
            "by_variant": dict(self.by_variant),
            "reached": dict(self.reached),
        }


@dataclass(slots=True)
class _Worker:
    engine: str
    job: int
    seed: int
    variant: str
    proc: subprocess.Popen[bytes]
    started: float
    buffers: dict[int, bytes] = field(default_factory=dict)
    stderr_tail: list[str] = field(default_factory=list)
    # cumulative figures of this worker, added to the engine's on exit
    execs: int = 0
    ops: int = 0
    coverage: int = 0
    native_edges: int = 0
    done: bool = False
    stopping: bool = False  # ended by the supervisor: its death is not a finding
    reached: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class CampaignResult:
    """Figures, findings and events of a campaign."""

    options: CampaignOptions
    tallies: dict[str, EngineTally]
    ledger: Ledger
    seconds: float
    interrupted: str | None = None  # the signal that stopped it early
    started: float = 0.0  # unix time the workers started

    @property
    def findings(self) -> list[Finding]:
        """One finding per signature: the smallest program met."""
        return [seen.finding for seen in self.ledger.seen.values()]

    @property
    def failures(self) -> dict[str, str]:
        """Engines that did not really run, and why."""
        return {name: t.failure for name, t in self.tallies.items() if t.failure}


Listener = Callable[[dict[str, EngineTally], float], None]


class Supervisor:
    """Runs one campaign."""

    def __init__(
        self,
        opts: CampaignOptions,
        *,
        on_update: Listener | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        should_stop: Callable[[], str | None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        shared: SharedCampaign | None = None,
    ) -> None:
        self.opts = opts
        self.on_update = on_update
        self.on_finding = on_finding
        self.should_stop = should_stop
        self.shared = shared  # other machines of this campaign, through Redis
        self.tallies = {e: EngineTally() for e in opts.engines}
        store = FindingStore(opts.findings_dir) if opts.findings_dir is not None else None
        self.ledger = Ledger(store, opts.workdir, on_notice or (lambda message: None))
        self.stopped: str | None = None
        self.stop_sent = 0.0
        self.selector = selectors.DefaultSelector()
        self.workers: list[_Worker] = []
        self.finished: dict[str, tuple[int, int, int]] = dict.fromkeys(opts.engines, (0, 0, 0))
        self.finished_by_variant: dict[tuple[str, str], int] = {}
        self.finished_reached: dict[str, dict[str, int]] = {}
        self.deadline = 0.0
        self.started = 0.0
        self.quick_deaths: dict[tuple[str, str], int] = {}
        # job slots of each engine, in order: a slot's place decides its builds
        self.slots: dict[str, list[int]] = {e: [] for e in opts.engines}

    # ---- which build a job runs when ----------------------------------------
    def _schedule(self, engine: str, job: int, now: float) -> tuple[str, float]:
        """(variant, end of its time slice) for ``job`` at ``now``.

        An engine's builds are spread over its job slots; when there are
        more builds than slots, the campaign is cut into equal rounds and
        each slot moves to its next build at the start of each round.
        """
        builds = engine_variants(engine, self.opts.variants, foreign=self.opts.target is not None)
        slots = self.slots[engine]
        place, width = slots.index(job), len(slots)
        rounds = -(-len(builds) // width)
        length = self.opts.seconds / rounds
        current = min(int((now - self.started) / length), rounds - 1)
        end = self.deadline if current == rounds - 1 else self.started + (current + 1) * length
        return builds[(place + current * width) % len(builds)], end

    # ---- workers --------------------------------------------------------------
    def _command(
        self, engine: str, job: int, seed: int, variant: str = "release", deadline: float = 0.0
    ) -> list[str]:
        o = self.opts
        cmd = [
            sys.executable,
            "-m",
            "hakfuzz.campaign.worker",
            "--engine",
            engine,
            "--job",
            str(job),
            "--seed",
            str(seed),
            "--deadline",
            str(deadline or self.deadline),
            "--variant",
            variant,
            "--workdir",
            str(o.workdir),
            "--parent",
            str(os.getpid()),
        ]
        if o.db is not None:
            cmd += ["--db", o.db]
        if o.target is not None:  # the worker resolves it again and hands it to its engine

            cmd += ["--allocator", spec_of(o.target),
                    "--foreign-frees", "on" if o.foreign_frees else "off"]
            for key, value in o.target_config:
                cmd += ["--configure", f"{key}={value}"]
        if engine == "atheris":
            cmd += ["--corpus-dir", str(o.corpus_dir or o.workdir / "atheris-corpus")]
            for s in o.seeds:
                cmd += ["--seeds", str(s)]
            if o.libfuzzer_args:
                cmd += ["--", *o.libfuzzer_args]
        return cmd

    def _start(self, engine: str, job: int, seed: int, *, restart: bool = False) -> None:
        if job not in self.slots[engine]:
            self.slots[engine].append(job)
        now = time.time()
        variant, end = self._schedule(engine, job, now)
        proc = subprocess.Popen(
            self._command(engine, job, seed, variant, end),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=self._env(variant),
            start_new_session=True,  # a terminal's Ctrl-C is the supervisor's to handle
        )
        worker = _Worker(engine, job, seed, variant, proc, now)
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            self.selector.register(stream, selectors.EVENT_READ, worker)
            worker.buffers[stream.fileno()] = b""
        self.workers.append(worker)
        if not restart:
            self.tallies[engine].workers += 1

    def _env(self, variant: str) -> dict[str, str]:
        """A worker's environment: a foreign target reaches it by ``--allocator`` only.

        Its own Python must not run under an inherited ``LD_PRELOAD``: the
        engines preload the target into the children that are meant to have it.
        """
        env = child_env(variant)
        if self.opts.target is not None:
            env.pop("LD_PRELOAD", None)
        return env

    def _signal(self, worker: _Worker, sig: int) -> None:
        """Send ``sig`` to a worker and everything it started (its process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.proc.pid, sig)

    def stop(self, reason: str) -> None:
        """End every worker now; their deaths are not findings.  No restarts after this."""
        if self.stopped is None:
            self.stopped = reason
            self.stop_sent = time.time()
            for w in self.workers:
                w.stopping = True
                self._signal(w, signal.SIGTERM)

    def run(self) -> CampaignResult:
        o = self.opts
        o.workdir.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.deadline = self.started + o.seconds
        jobs = max(o.jobs, len(o.engines))
        for job in range(jobs):
            self.slots[o.engines[job % len(o.engines)]].append(job)
        for job in range(jobs):
            self._start(o.engines[job % len(o.engines)], job, o.seed * 1000 + job)
        last_update = 0.0
        while self.workers:
            if self.should_stop is not None and self.stopped is None:
                reason = self.should_stop()
                if reason is not None:
                    self.stop(reason)
            for key, _ in self.selector.select(timeout=0.2):
                self._read(key.data, key.fileobj)  # type: ignore[arg-type]
            for worker in [w for w in self.workers if w.proc.poll() is not None]:
                self._reap(worker)
            now = time.time()
            if now - last_update > 0.25:
                last_update = now
                self._refresh(now)
                if self.shared is not None:
                    self.shared.tick(self.tallies, now - self.started)
            if self.stopped is not None and now > self.stop_sent + 5:
                for w in self.workers:  # ignored SIGTERM: no more waiting
                    self._signal(w, signal.SIGKILL)
            if now > self.deadline + 30:  # a stuck worker: stop it (and say so)
                for w in self.workers:
                    if not w.stopping:
                        self.tallies[w.engine].notices.append(f"job {w.job} did not stop; killed")
                    w.stopping = True
                    self._signal(w, signal.SIGKILL)
        self._refresh(time.time())
        if self.shared is not None:
            self.shared.tick(self.tallies, time.time() - self.started, force=True)
        if self.stopped is None:
            self._judge_engines()
        return CampaignResult(
            o, self.tallies, self.ledger, time.time() - self.started, self.stopped, self.started
        )

    def _judge_engines(self) -> None:
        """An engine that never ran an input, or kept dying outside one, has failed."""
        for tally in self.tallies.values():
            if tally.failure is not None:
                continue
            if tally.execs == 0:
                why = next(iter(tally.notices[::-1]), "")
                tally.failure = "no worker ran a single input" + (f" ({why})" if why else "")
            elif tally.deaths_outside_input >= 3:
                tally.failure = f"workers died {tally.deaths_outside_input} times outside any input"

    def _read(self, worker: _Worker, stream: IO[bytes]) -> None:
        fd = stream.fileno()
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.selector.unregister(stream)
            return
        data = worker.buffers[fd] + chunk
        *lines, worker.buffers[fd] = data.split(b"\n")
        assert worker.proc.stdout is not None
        is_stdout = fd == worker.proc.stdout.fileno()
        for raw in lines:
            line = raw.decode(errors="replace")
            if is_stdout:
                self._event(worker, line)
            else:
                worker.stderr_tail = ([*worker.stderr_tail, line])[-200:]
                match = _LIBFUZZER.match(line)
                if match and worker.engine == "atheris":
                    worker.execs = max(worker.execs, int(match.group(1)))
                    worker.coverage = max(worker.coverage, int(match.group(2)))

    def _event(self, worker: _Worker, line: str) -> None:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        kind = event.get("event")
        if kind == "stats":
            if worker.engine != "atheris":
                worker.execs, worker.coverage = int(event["execs"]), int(event["coverage"])
            else:  # coverage: is libFuzzer's (Python + native); the event's is native only
                worker.execs = max(worker.execs, int(event["execs"]))
                worker.native_edges = max(worker.native_edges, int(event["coverage"]))
            worker.ops = int(event["ops"])
            worker.reached = {str(k): int(v) for k, v in event.get("reached", {}).items()}
        elif kind == "finding":
            program = loads_program(event["program"], source=f"<{worker.engine} job {worker.job}>")
            self._add(
                worker.engine,
                Finding(
                    event["engine"],
                    event["kind"],
                    event["detail"],
                    event["message"],
                    program,
                    event.get("op_index"),
                    event.get("variant", "release"),
                    event.get("seed"),
                    {"job": event["job"]} if event.get("job") else {},
                ),
            )
        elif kind == "notice":
            notes = self.tallies[worker.engine].notices
            if event["message"] not in notes:
                notes.append(event["message"])
        elif kind == "done":
            worker.done = True

    def _on_target(self, finding: Finding) -> Finding:
        """On a foreign target the program records it, and the finding how frees ran.

        So triage, ``replay`` and ``minimize`` run it there again.
        """
        if self.opts.target is None:
            return finding

        frees = "on" if self.opts.foreign_frees else "off"
        return replace(finding, program=stamp(finding.program, self.opts.target),
                       extra={**finding.extra, "foreign_frees": frees})

    def _add(self, engine: str, finding: Finding) -> None:
        """Record a finding met by a worker of ``engine`` (the engine credited with it)."""
        finding = self._on_target(finding)
        if self.ledger.add(finding, engine):
            self.tallies[engine].findings += 1
            if self.on_finding is not None:
                self.on_finding(finding)
            if self.shared is not None:
                self.shared.publish(finding, engine)

    def _reap(self, worker: _Worker) -> None:
        for stream in (worker.proc.stdout, worker.proc.stderr):
            assert stream is not None
            while True:
                try:
                    chunk = os.read(stream.fileno(), 65536)
                except (BlockingIOError, ValueError, OSError):
                    break
                if not chunk:
                    break
                worker.buffers[stream.fileno()] += chunk
            for raw in worker.buffers[stream.fileno()].split(b"\n"):
                if raw and stream is worker.proc.stdout:
                    self._event(worker, raw.decode(errors="replace"))
                elif raw:
                    worker.stderr_tail.append(raw.decode(errors="replace"))
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(stream)
            stream.close()
        self.workers.remove(worker)
        tally = self.tallies[worker.engine]
        e, o, c = self.finished[worker.engine]
        self.finished[worker.engine] = (e + worker.execs, o + worker.ops, max(c, worker.coverage))
        key = (worker.engine, worker.variant)
        self.finished_by_variant[key] = self.finished_by_variant.get(key, 0) + worker.execs
        done = self.finished_reached.setdefault(worker.engine, {})
        for name, count in worker.reached.items():
            done[name] = done.get(name, 0) + count
        code = worker.proc.returncode
        if worker.stopping:
            return  # ended by us: whatever was in flight did not fail
        crashed = code != 0 and not worker.done
        if crashed:
            self._crashed(worker, code, tally)
        key = (worker.engine, worker.variant)
        quick = time.time() - worker.started < 5.0 and not worker.execs
        self.quick_deaths[key] = self.quick_deaths.get(key, 0) + 1 if quick else 0
        if self.quick_deaths[key] >= 3:
            tally.failure = f"workers on {worker.variant} die at start-up" + (
                f": {tally.notices[-1]}" if tally.notices else ""
            )
        elif time.time() < self.deadline - 2 and self.stopped is None:
            # a crash restarts the slot on its build; the end of a time slice moves it on
            tally.restarts += 1 if crashed else 0
            self._start(worker.engine, worker.job, worker.seed + 7919, restart=True)

    def _crashed(self, worker: _Worker, code: int, tally: EngineTally) -> None:
        """A worker died on its own: a finding, a suspect, or an infrastructure event."""
        journal = journal_path(self.opts.workdir, worker.job)
        program = recover(journal)
        data = recover_bytes(journal)
        external = code < 0 and signal.Signals(-code) in EXTERNAL_SIGNALS
        if worker.engine == "atheris" and data is not None and not external:
            # an input killed from outside is a suspect, not a crash: it stays in the corpus

            quarantine(self.opts.workdir, self.opts.corpus_dir or self.opts.workdir, data)
        stderr = "\n".join(worker.stderr_tail)
        how = signal.Signals(-code).name if code < 0 else f"status {code}"
        if program is None or not program.ops:
            tally.deaths_outside_input += 0 if external else 1
            said = first_diagnostic(stderr)
            message = f"{worker.engine} job {worker.job} ended by {how} outside any input"
            self.ledger.event(message + (f": {said}" if said else ""))
            if not external:
                tally.notices.append(f"job {worker.job} exited {code} outside any input: {said}")
            return
        finding = crash_finding(
            worker.engine, code, stderr, program, variant=worker.variant, seed=worker.seed
        )
        if external:
            self.ledger.suspect(self._on_target(finding), worker.job, how)
        else:
            self._add(worker.engine, finding)

    def _refresh(self, now: float) -> None:
        elapsed = min(now, self.deadline) - self.started
        for engine, tally in self.tallies.items():
            e, o, c = self.finished[engine]
            live = [w for w in self.workers if w.engine == engine]
            tally.execs = e + sum(w.execs for w in live)
            tally.ops = o + sum(w.ops for w in live)
            tally.coverage = max([c, *(w.coverage for w in live)])
            tally.native_edges = max([tally.native_edges, *(w.native_edges for w in live)])
            reached = dict(self.finished_reached.get(engine, {}))
            for w in live:
                for name, count in w.reached.items():
                    reached[name] = reached.get(name, 0) + count
            tally.reached = reached
            tally.by_variant = {
                v: self.finished_by_variant.get((engine, v), 0)
                + sum(w.execs for w in live if w.variant == v)
                for v in engine_variants(
                    engine, self.opts.variants, foreign=self.opts.target is not None
                )
            }
            tally.seconds = max(elapsed, 0.0)
            if not tally.history or now - self.started - tally.history[-1][0] >= 1.0:
                tally.history.append((round(now - self.started, 2), tally.coverage, tally.findings))
        if self.on_update is not None:
            self.on_update(self.tallies, elapsed)
