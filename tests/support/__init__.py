"""The tests' one harness: every test starts servers, databases and SSE readers from here.

- :mod:`tests.support.postgres`: the session's Postgres (``PTS_TEST_DATABASE_URL``,
  testcontainers or the embedded ``pgserver``) and the per-test throwaway databases
  cloned from a migrated template (:class:`~tests.support.postgres.DatabaseFactory`);
- :mod:`tests.support.servers`: one way per kind of server: an app in-process
  (``serve_app``), and subprocesses built on :mod:`pts.testing.process` (free port,
  spawn, wait until healthy, stop): ``run_pts_serve``, ``run_pts_demo``, ``start_app``
  (``uvicorn module:app`` as a user runs it), ``run_module`` (a test program);
- :mod:`tests.support.sse`: the one SSE parser (the WHATWG event-stream rules) and
  the HTTP readers built on it;
- :mod:`tests.support.waiting`: waits on conditions (``until``, ``until_stats``),
  never on the clock;
- :mod:`tests.support.demo`, :mod:`tests.support.demo_browser`: the demo chat's model,
  app and browser;
- :mod:`tests.support.fuzz`: the fuzzers' servers, checking client and strategies;
- :mod:`tests.support.driver_process`, :mod:`tests.support.shutdown_app`: programs the
  tests run with ``python -m``.
"""
