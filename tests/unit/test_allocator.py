"""``pts serve``'s allocator tuning: megabyte buffers reuse memory instead of faulting it in again.

Each figure comes from a fresh interpreter (the tuning is process-wide), which
allocates and frees ten 1 MiB blocks twenty times, as a catch-up read does
with a compacted stream's rows, and counts its minor page faults.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pts.http.allocator import tune_allocator

GLIBC = hasattr(os, "confstr") and bool(os.confstr("CS_GNU_LIBC_VERSION"))

_FAULTS = """
import resource, sys
if sys.argv[1] == "tuned":
    from pts.http.allocator import tune_allocator
    print(tune_allocator(), file=sys.stderr)

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

rows = [b"x" * (1 << 20) for _ in range(10)]
del rows
before = faults()
for _ in range(20):
    rows = [b"x" * (1 << 20) for _ in range(10)]
    del rows
print(faults() - before)
"""


def _page_faults(mode: str, environ: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS, mode],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


def _environment_without_tuning() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}


@pytest.mark.skipif(not GLIBC, reason="the tuning is glibc's mallopt")
def test_tuned_megabyte_buffers_reuse_their_memory() -> None:
    environ = _environment_without_tuning()
    plain = _page_faults("plain", environ)
    tuned = _page_faults("tuned", environ)
    # 200 MiB allocated in all: untuned, thousands of pages are faulted in
    # again (17,727 here); tuned, almost none (0 here).
    assert plain > 2_000
    assert tuned < plain / 20


@pytest.mark.skipif(not GLIBC, reason="the tuning is glibc's mallopt")
def test_the_workers_inherit_the_tuning_through_the_environment() -> None:
    environ: dict[str, str] = {}
    assert "mmap threshold 16 MiB" in tune_allocator(environ)
    assert environ == {
        "MALLOC_MMAP_THRESHOLD_": str(16 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
    }
    # glibc reads them at start: a process started with them reuses its memory too.
    assert _page_faults("plain", {**_environment_without_tuning(), **environ}) < 2_000


def test_an_operators_own_thresholds_are_kept() -> None:
    environ = {"MALLOC_TRIM_THRESHOLD_": "131072"}
    assert tune_allocator(environ).startswith("left as configured")
    assert environ == {"MALLOC_TRIM_THRESHOLD_": "131072"}
