"""The Durable Streams reference server (``@durable-streams/server``, Node.js) on a free port.

    npm ci --prefix tests                      # once: the server, pinned in tests/package.json
    python -m tests.reference_server           # in memory (its default store)
    python -m tests.reference_server --data-dir DIR   # its file store (fdatasync per append)

Prints one JSON line once the server listens, ``{"url", "version", "node",
"store"}``, then serves until SIGTERM or SIGINT. It becomes the Node process
(``node tests/reference_server.mjs``, started as the package's authors start it
in their tests), so stopping this process stops the server.

``pts bench protocol`` compares pts with any Durable Streams server by URL
(``--reference-url``); without one, in a checkout, it runs this launcher.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from pts.testing.process import free_port

TESTS = Path(__file__).resolve().parent
"""Where ``npm ci --prefix tests`` installs the reference server in a checkout."""
REFERENCE_PACKAGE = "@durable-streams/server"
SCRIPT = TESTS / "reference_server.mjs"


class NotInstalled(Exception):
    """Node.js or the reference package is missing; the message says how to install it."""


def find_reference_dir(given: str | None = None) -> Path:
    """The directory whose ``node_modules`` holds the reference server; NotInstalled if none.

    ``given``, else the checkout's ``tests/`` (``npm ci --prefix tests``), else
    ``./tests``, else the working directory. Also checks that ``node`` is on PATH.
    """
    if shutil.which("node") is None:
        raise NotInstalled(
            "the reference server needs Node.js, and `node` is not on PATH: install Node.js "
            "(>= 18), or pass --servers pts to measure pts alone"
        )
    candidates = [Path(given)] if given else [TESTS, Path.cwd() / "tests", Path.cwd()]
    for directory in candidates:
        if (directory / "node_modules" / REFERENCE_PACKAGE / "package.json").is_file():
            return directory.resolve()
    looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
    raise NotInstalled(
        f"{REFERENCE_PACKAGE} is not installed in {looked}: run `npm ci --prefix tests` in "
        "the pts checkout (tests/package.json pins it), or pass --reference-dir DIR (a "
        f"directory with node_modules/{REFERENCE_PACKAGE}), or --servers pts to measure "
        "pts alone"
    )


def installed() -> bool:
    """Node.js and the reference package are both here."""
    try:
        find_reference_dir()
    except NotInstalled:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Become the reference server's Node process (exit status 2 if it cannot start)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--packages-dir", help=f"a directory with node_modules/{REFERENCE_PACKAGE}")
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    parser.add_argument("--data-dir", help="use the file store, in this directory")
    args = parser.parse_args(argv)
    try:
        packages = find_reference_dir(args.packages_dir)
    except NotInstalled as exc:
        print(exc, file=sys.stderr)
        return 2
    node = shutil.which("node")
    assert node is not None  # checked by find_reference_dir
    command = [node, str(SCRIPT), str(packages), str(args.port or free_port())]
    if args.data_dir:
        command.append(args.data_dir)
    sys.stdout.flush()
    os.execv(node, command)


if __name__ == "__main__":
    sys.exit(main())
