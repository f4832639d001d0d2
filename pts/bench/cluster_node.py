"""One node of ``pts bench cluster``: the fan-out bench app, served as ``pts serve`` serves.

``python -m pts.bench.cluster_node PORT STALE_AFTER`` serves
:func:`~pts.bench.fanout_app.create_fanout_app` on 127.0.0.1:PORT through
:func:`pts.http.shutdown.run` (SIGTERM drains, as a deployed ``pts serve``
does), with a short ``stale_after`` and a one-second sweep, so that the
answers of a killed node are timed out within the run.
"""

from __future__ import annotations

import sys

from pts.bench.fanout_app import create_fanout_app
from pts.http.shutdown import run
from pts.testing.process import HOST

SWEEP_INTERVAL = 1.0
"""Seconds between two sweeps of each node (the default is 5)."""


def main(port: int, stale_after: float) -> None:
    app = create_fanout_app(stale_after=stale_after, sweep_interval=SWEEP_INTERVAL)
    run(app, host=HOST, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
