"""larson under hakmem, glibc and peers: runs, proof of who served them, the protocol, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hakfuzz import targets
from hakfuzz._errors import HakfuzzError
from hakfuzz._process import parse_all_hakmem_stats, parse_served_by
from hakfuzz.perf.larson import peers
from hakfuzz.perf.larson.peers import Kind, find_library, parse_allocators
from hakfuzz.perf.larson.runner import LarsonConfig, Launch, compare, prepare, run_once
from hakfuzz.perf.larson.stability import protocol, run_stability
from hakfuzz.targets import Target, TargetKind

QUICK = LarsonConfig(0.3, 8, 128, 1024, 100, 12345, 2)


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hakfuzz.cli", *argv], capture_output=True,
                          text=True, check=False)


def test_config_parses_and_names_bad_arguments() -> None:
    config = LarsonConfig.parse(["10", "8", "128", "1024", "1", "12345", "4"])
    assert config == LarsonConfig(10.0, 8, 128, 1024, 1, 12345, 4)
    assert config.label() == "larson 10 8 128 1024 1 12345 4"
    with pytest.raises(ValueError, match="takes 7 arguments"):
        LarsonConfig.parse(["1", "2"])
    with pytest.raises(ValueError, match="chunks is not a number"):
        LarsonConfig.parse(["1", "8", "128", "many", "1", "1", "1"])
    with pytest.raises(ValueError, match="max_size 4 is below min_size 8"):
        LarsonConfig.parse(["1", "8", "4", "10", "1", "1", "1"])


@pytest.mark.parametrize("allocator", ["hakmem", "hakmem-direct", "glibc"])
def test_run_is_served_by_its_allocator(allocator: str) -> None:
    result = run_once(prepare(allocator), QUICK)
    assert result.ok, result.problem
    assert result.throughput is not None
    assert result.throughput > 0
    assert result.threads_started is not None
    assert result.threads_started > QUICK.threads
    assert 0 < result.maxrss_kb < 200_000
    if allocator.startswith("hakmem"):
        assert result.evidence.startswith("ss_created=")
    else:
        assert os.path.basename(result.served_by or "").startswith("libc.so")


@pytest.mark.parametrize("peer", sorted(peers.PEERS))
def test_peer_run_is_served_by_the_peer(peer: str) -> None:
    try:
        launch = prepare(peer)
    except HakfuzzError as exc:
        pytest.skip(str(exc))
    result = run_once(launch, QUICK)
    assert result.ok, result.problem
    assert launch.library is not None
    assert result.served_by == launch.library


def test_a_peer_that_did_not_serve_the_run_fails_it() -> None:
    plain = prepare("glibc")
    fake = Target("jemalloc", TargetKind.PEER, "/usr/lib/libjemalloc-fake.so",
                  "/usr/lib/libjemalloc-fake.so", "0" * 64)
    result = run_once(Launch("jemalloc", Kind.PRELOAD, plain.binary, {}, fake), QUICK)
    assert not result.ok
    assert "not jemalloc's /usr/lib/libjemalloc-fake.so" in (result.problem or "")


def test_hakmem_without_its_library_fails_the_run() -> None:
    real = prepare("hakmem")
    unloaded = Launch("hakmem", Kind.PRELOAD, real.binary, {}, real.target)
    result = run_once(unloaded, QUICK)
    assert not result.ok
    assert "libc.so.6, not hakmem's" in (result.problem or "")


def test_compare_interleaves_and_gives_ratios_to_glibc() -> None:
    order: list[str] = []
    comparison = compare(("hakmem", "glibc"), QUICK.with_seconds(0.2), repeat=2,
                         progress=lambda _d, _t, r: order.append(r.allocator))
    assert order == ["hakmem", "glibc", "hakmem", "glibc"]
    assert comparison.ok
    by_name = {s.allocator: s for s in comparison.summaries}
    assert by_name["glibc"].ratio_to_glibc == pytest.approx(1.0)
    assert by_name["hakmem"].ratio_to_glibc is not None
    assert json.dumps(comparison.as_json())


def test_stability_protocol_quick() -> None:
    tests = protocol(seconds=0.3, runs=2, other_runs=1)
    assert [t.name for t in tests] == ["4T high contention", "1T", "2T", "4T low contention"]
    assert tests[0].config.label() == "larson 0.3 8 128 1024 1 12345 4"
    report = run_stability(tests)
    assert report.passed, [r.problem for o in report.outcomes for r in o.summary.runs]
    assert [len(o.summary.runs) for o in report.outcomes] == [2, 1, 1, 1]


def test_missing_peer_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "_from_dpkg", lambda _peer: None)
    monkeypatch.setattr(targets, "_LIB_DIRS", ())
    with pytest.raises(Exception, match=r"apt-get install libmimalloc2\.0"):
        find_library("mimalloc")
    usable, missing = peers.available(("hakmem", "tcmalloc"))
    assert usable == ("hakmem",)
    assert "libtcmalloc-minimal4" in missing["tcmalloc"]


def test_parse_allocators() -> None:
    assert parse_allocators("hakmem, glibc,hakmem") == ("hakmem", "glibc")
    with pytest.raises(ValueError, match="unknown allocator 'ptmalloc'"):
        parse_allocators("glibc,ptmalloc")
    assert parse_allocators("glibc,./libmy.so,/opt/x.so") == ("glibc", "./libmy.so", "/opt/x.so")


def test_evidence_parsers() -> None:
    stderr = ("larson: malloc from /x/libhakmem.so\n"
              "hakmem stats: ss_mapped=1 os_maps=1 os_unmaps=0\n"
              "hakmem class 0 (8 B): ss_created=0 ss_live=0 active=0 fallback=0 remote_pending=0\n"
              "hakmem class 3 (64 B): ss_created=2 ss_live=1 active=5 fallback=0 "
              "remote_pending=-1\n")
    assert parse_served_by(stderr) == "/x/libhakmem.so"
    (stats,) = parse_all_hakmem_stats(stderr)
    assert stats.ss_created == 2
    assert stats.classes[3]["remote_pending"] == -1
    assert stats.summary() == "ss_created=2 (C3=2)"


def test_cli_compare_json() -> None:
    done = _cli("larson", "0.2", "8", "128", "256", "100", "1", "2", "--allocator",
                "hakmem,glibc", "--repeat", "1", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [a["allocator"] for a in doc["allocators"]] == ["hakmem", "glibc"]
    assert doc["ok"] is True


@pytest.mark.parametrize(("argv", "message"), [
    (["larson", "1", "2"], "takes 7 arguments"),
    (["larson", "1", "8", "128", "64", "1", "1", "2", "--allocator", "ptmalloc"],
     "unknown allocator 'ptmalloc'"),
    (["larson", "--stability", "1", "2"], "takes no larson arguments"),
    (["larson", "--stability", "--allocator", "hakmem,glibc"], "one allocator"),
    (["larson", "1", "8", "128", "64", "1", "1", "2", "--variant", "fast"], "unknown variant"),
    (["larson", "1", "8", "128", "64", "1", "1", "2", "--repeat", "0"], "--repeat"),
])
def test_cli_usage_errors_are_one_line(argv: list[str], message: str) -> None:
    done = _cli(*argv)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_stability_protocol_asan() -> None:
    tests = protocol(seconds=1.0, runs=3, other_runs=1)
    report = run_stability(tests, variant="asan")
    assert report.passed, [r.problem for o in report.outcomes for r in o.summary.runs]
