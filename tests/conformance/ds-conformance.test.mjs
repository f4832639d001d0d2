// The Durable Streams conformance suite (@durable-streams/server-conformance-tests),
// run by tests/conformance/run.py against a server at CONFORMANCE_TEST_URL.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_TEST_URL
if (!baseUrl) {
  throw new Error("set CONFORMANCE_TEST_URL to the server's origin, e.g. http://127.0.0.1:8000")
}

runConformanceTests({
  baseUrl,
  // Only the vitest timeout (this + 1 s) of the 5 tests that wait for a long-poll to
  // time out; it must be at least the server's long-poll timeout.
  longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_TIMEOUT_MS ?? 20000),
})
