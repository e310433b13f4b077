"""One name per failure: every path that names a dead child agrees with the finding it files.

A failure met by a forked replay child (``Death``), by a re-run in a child
process (``run_in_child``) or by a campaign worker (``crash_finding``) is
deduplicated by its signature, so each must name it the same way.
"""

from __future__ import annotations

import pytest
from test_diagnostics import ASAN_IN_DRIVER, TSAN

from hakfuzz.campaign.forked import Death
from hakfuzz.campaign.reproduce import crash_finding
from hakfuzz.findings import TIMEOUT_SIGNATURE, Finding, signature
from hakfuzz.program import Op, Program

_PROGRAM = Program(ops=(Op.alloc(0, 8),))


@pytest.mark.parametrize(
    ("returncode", "stderr"),
    [
        (-6, "free(): invalid pointer\n"),
        (1, ASAN_IN_DRIVER),  # ASan exits 1: the report, not the exit, names it
        (-6, TSAN),
        (3, "hakmem: check failed\n"),
        (-9, ""),
    ],
    ids=["glibc-abort", "asan", "tsan", "exit", "sigkill"],
)
def test_a_dead_child_is_named_as_its_finding(returncode: int, stderr: str) -> None:
    death = Death(returncode, stderr, 0.1, 5.0)
    found = crash_finding("hypothesis", returncode, stderr, _PROGRAM, variant="asan", seed=1)
    assert death.signature == found.signature
    assert death.detail == found.detail


def test_a_timeout_has_one_name() -> None:
    assert Death(None, "", 5.0, 5.0).signature == TIMEOUT_SIGNATURE == "timeout-child-timed-out"


def test_a_finding_signature_is_the_function() -> None:
    finding = Finding("parallel", "oracle", "model-invariant C3 leaks 2 blocks", "", _PROGRAM)
    assert finding.signature == signature("oracle", "model-invariant C3 leaks 2 blocks")
