// The Durable Streams reference server (@durable-streams/server), as `pts bench protocol`
// measures it next to pts: `new DurableStreamTestServer({port, host: "127.0.0.1"}).start()`.
// Started by tests/reference_server.py (`python -m tests.reference_server`):
//
//   node reference_server.mjs PACKAGES_DIR PORT [DATA_DIR]
//
// PACKAGES_DIR holds node_modules/@durable-streams/server (e.g. the pts checkout's tests/,
// after `npm ci --prefix tests`); it is resolved from there, not from this file's
// directory, so any install of the package serves. Without DATA_DIR the
// server keeps streams in memory (its default); with it, in files under DATA_DIR (its
// file-backed store, which fdatasyncs every append). Prints one JSON line once it listens;
// stops on SIGTERM or SIGINT.
import { createRequire } from "node:module"
import path from "node:path"

const [packagesDir, port, dataDir] = process.argv.slice(2)
if (!packagesDir || !port) {
  console.error("usage: node reference_server.mjs PACKAGES_DIR PORT [DATA_DIR]")
  process.exit(2)
}
const require = createRequire(path.join(path.resolve(packagesDir), "package.json"))
const { DurableStreamTestServer } = require("@durable-streams/server")
const { version } = require("@durable-streams/server/package.json")

const options = { port: Number(port), host: "127.0.0.1" }
if (dataDir) options.dataDir = dataDir
const server = new DurableStreamTestServer(options)
const url = await server.start()
console.log(JSON.stringify({ url, version, node: process.version, store: dataDir ? "file" : "memory" }))

async function stop() {
  await server.stop()
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
