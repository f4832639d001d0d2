// The stock AI SDK (`ai`, pinned in tests/package.json) and the official Durable Streams
// client against a pts app (tests/support/ai_app.py), unchanged: DefaultChatTransport
// (sendMessages, reconnectToStream), readUIMessageStream, and AbstractChat's resume path.
//
//   node client.mjs BASE_URL [SCENARIO ...]
//
// prints one JSON line per scenario ({"scenario": name, ...}); tests/acceptance/test_ai_sdk.py
// asserts on them. A scenario that throws prints {"scenario", "failed"} and the others run on.
// Every wait is on a condition, bounded by GUARD_MS (a hang guard, not a timing).

import { AbstractChat, DefaultChatTransport, readUIMessageStream } from "ai";
import { stream as durableStream } from "@durable-streams/client";

const GUARD_MS = 20_000;
const base = process.argv[2];
const api = `${base}/api/chat`;
let chats = 0;

const newChatId = (name) => `${name}-${process.pid}-${++chats}`;
const userMessage = (text) => ({ id: `user-${++chats}`, role: "user", parts: [{ type: "text", text }] });

async function until(what, condition) {
  const deadline = Date.now() + GUARD_MS;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10)); // polling the condition
  }
}

async function getJson(path) {
  const response = await fetch(`${base}${path}`);
  if (!response.ok) throw new Error(`GET ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

async function post(path) {
  const response = await fetch(`${base}${path}`, { method: "POST" });
  if (!response.ok) throw new Error(`POST ${path}: ${response.status} ${await response.text()}`);
  return response.status;
}

const chatInfo = (chatId) => getJson(`/test/chats/${encodeURIComponent(chatId)}`);
const streamView = (streamId) => getJson(`/streams/${streamId}`);

async function finished(streamId) {
  return until(`stream ${streamId} to finish`, async () => {
    const view = await streamView(streamId);
    return view.done ? view : null;
  });
}

// What a test compares of an assembled UIMessage.
function summary(message) {
  if (message == null) return null;
  const parts = message.parts;
  return {
    id: message.id,
    role: message.role,
    text: parts.filter((p) => p.type === "text").map((p) => p.text).join(""),
    text_parts: parts.filter((p) => p.type === "text").length,
    reasoning: parts.filter((p) => p.type === "reasoning").map((p) => p.text).join(""),
    data: parts.filter((p) => p.type.startsWith("data-")).map(({ type, id, data }) => ({ type, id, data })),
    tools: parts
      .filter((p) => p.type.startsWith("tool-"))
      .map(({ type, toolCallId, state, input, output }) => ({ type, toolCallId, state, input, output })),
    part_types: parts.map((p) => p.type),
    metadata: message.metadata ?? null,
    sources: parts.filter((p) => p.type === "source-url" || p.type === "file"),
  };
}

// Reads a stream of UI chunks with readUIMessageStream; `seen` has the chunks' types in
// order and `latest` the message so far, while it runs. `done` resolves once the stream
// ends (or errors: then `error` says how).
function assemble(chunks) {
  const read = { types: [], latest: null, error: null };
  const recorded = chunks.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        read.types.push(chunk.type);
        controller.enqueue(chunk);
      },
    }),
  );
  read.done = (async () => {
    try {
      for await (const message of readUIMessageStream({ stream: recorded, terminateOnError: true })) {
        read.latest = message;
      }
    } catch (error) {
      read.error = error.name === "AbortError" ? "AbortError" : String(error);
    }
    return read;
  })();
  return read;
}

const textOf = (read) => summary(read.latest)?.text ?? "";

function report(read) {
  return {
    message: summary(read.latest),
    types: read.types,
    error: read.error,
    starts: read.types.filter((t) => t === "start").length,
    finishes: read.types.filter((t) => t === "finish").length,
    last: read.types.at(-1) ?? null,
    tool_order: read.types.filter((t) => t === "tool-input-available" || t === "tool-output-available"),
  };
}

function send(chatId, body, abortSignal) {
  const transport = new DefaultChatTransport({ api, body });
  return transport.sendMessages({
    chatId,
    messages: [userMessage("What is the weather?")],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal,
  });
}

const reconnect = (chatId) => new DefaultChatTransport({ api }).reconnectToStream({ chatId });

// (a) a sent message assembles to the exact text, reasoning, tool call and data part.
async function sendScenario() {
  const chatId = newChatId("send");
  const read = await assemble(await send(chatId, {})).done;
  const info = await chatInfo(chatId);
  const view = await finished(info.stream_id);
  return { ...report(read), expected: info.expected, generations: info.generations, status: view.status };
}

// (b) a read aborted mid-answer, reconnected through reconnectToStream while the answer is
// held (at the end of its third sentence: all stored), then released: the resumed read
// replays from `start` and goes on live.
async function reconnectScenario() {
  const chatId = newChatId("reconnect");
  const abort = new AbortController();
  const driving = assemble(await send(chatId, { hold_after: 3 * 8 }, abort.signal));
  const { expected } = await chatInfo(chatId);
  await until("the held text on the driving read", () => textOf(driving) === expected.partial_text);
  abort.abort();
  const cut = await driving.done;
  const resumed = assemble(await reconnect(chatId));
  await until("the replay to reach the held text", () => textOf(resumed) === expected.partial_text);
  await post(`/test/chats/${encodeURIComponent(chatId)}/release`);
  await resumed.done;
  const info = await chatInfo(chatId);
  const view = await finished(info.stream_id);
  return {
    ...report(resumed),
    cut: { error: cut.error, text: textOf(cut), message_id: cut.latest?.id ?? null },
    expected,
    generations: info.generations,
    status: view.status,
  };
}

// A Chat with the least state AbstractChat needs (what @ai-sdk/react's Chat adds, minus React).
class State {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (message) => {
    this.messages = [...this.messages, message];
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (index, message) => {
    this.messages = this.messages.map((m, i) => (i === index ? message : m));
  };
  snapshot = (thing) => structuredClone(thing);
}

class Chat extends AbstractChat {
  constructor(options) {
    super({ ...options, state: new State() });
  }
}

// (b) through Chat: stop() (a disconnect) mid-answer (mid-sentence: its tail not stored
// yet), then resumeStream() as useChat({ resume: true }) does on mount; the replayed
// `start` resets the message, and the rest arrives live.
async function chatResumeScenario() {
  const chatId = newChatId("chat");
  const transport = new DefaultChatTransport({ api, body: { hold_after: 8 + 5 } });
  const chat = new Chat({ id: chatId, transport });
  const sending = chat.sendMessage({ text: "What is the weather?" });
  const { expected } = await until("the chat's stream", async () => {
    const info = await chatInfo(chatId);
    return info.stream_id ? info : null;
  });
  const assistantText = () => (chat.lastMessage?.role === "assistant" ? summary(chat.lastMessage).text : "");
  await until("the held text in the chat", () => assistantText() === expected.partial_text);
  const stoppedId = chat.lastMessage.id;
  await chat.stop();
  await sending;
  const afterStop = { status: chat.status, messages: chat.messages.length, text: assistantText() };
  const resuming = chat.resumeStream();
  await until("the resume to connect", () => chat.status === "submitted" || chat.status === "streaming");
  await post(`/test/chats/${encodeURIComponent(chatId)}/release`);
  await resuming;
  const info = await chatInfo(chatId);
  const view = await finished(info.stream_id);
  return {
    after_stop: afterStop,
    status_after: chat.status,
    error: chat.error ? String(chat.error) : null,
    roles: chat.messages.map((m) => m.role),
    message: summary(chat.lastMessage),
    stopped_message_id: stoppedId,
    expected,
    generations: info.generations,
    status: view.status,
  };
}

// (c) reconnect with no active stream, and after the end: null (204).
async function nothingToResumeScenario() {
  const never = await reconnect(newChatId("never"));
  const chatId = newChatId("ended");
  const read = await assemble(await send(chatId, { sentences: 2 })).done;
  // At once after the driving read's end the stream may not be marked done yet: then a
  // resume replays the whole answer, which must assemble to the same message.
  const atOnce = await reconnect(chatId);
  const replayed = atOnce === null ? null : await assemble(atOnce).done;
  const view = await finished((await chatInfo(chatId)).stream_id);
  const ended = await reconnect(chatId);
  return {
    never: never === null,
    ended: ended === null,
    status: view.status,
    last: read.types.at(-1),
    message: summary(read.latest),
    at_once: replayed === null ? null : report(replayed),
  };
}

// (d) stop: the app's stop route ends the driving read and a follower, with the same
// partial text and an `abort`; the stream is `aborted`. The answer holds mid-sentence, so
// the follower has only the stored sentences until the stop writes the rest.
async function stopScenario() {
  const chatId = newChatId("stop");
  const driving = assemble(await send(chatId, { hold_after: 2 * 8 + 3 }));
  const { expected, stream_id: streamId } = await chatInfo(chatId);
  await until("the held text on the driving read", () => textOf(driving) === expected.partial_text);
  const follower = assemble(await reconnect(chatId));
  await until("the stored text on the follower", () => textOf(follower) !== "");
  const stopStatus = await post(`/api/chat/${encodeURIComponent(chatId)}/stop`);
  const [drove, followed] = await Promise.all([driving.done, follower.done]);
  const view = await finished(streamId);
  const info = await chatInfo(chatId);
  return {
    stop_status: stopStatus,
    driving: report(drove),
    follower: report(followed),
    expected,
    status: view.status,
    abort_reason: view.abort_reason,
    generations: info.generations,
  };
}

// The stream's stored JSON messages, read with @durable-streams/client (catch-up only).
async function persisted(streamId) {
  const response = await durableStream({ url: `${base}/v1/stream/pts/${streamId}`, live: false });
  return response.json();
}

// Stored chunks as the transport reads a response: checked against the AI SDK's chunk
// schema (processResponseStream throws on a chunk that fails it).
function validated(items) {
  const sse = items.map((item) => `data: ${JSON.stringify(item)}\n\n`).join("") + "data: [DONE]\n\n";
  const body = new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(sse));
      controller.close();
    },
  });
  return new DefaultChatTransport({ api }).processResponseStream(body);
}

// A chunk that is not one, written mid-answer: the answer ends `error` for the driving read,
// the stream is `error`, nothing of the bad chunk was stored, and what was stays readable.
async function badChunkScenario() {
  const chatId = newChatId("bad");
  const read = await assemble(await send(chatId, { bad_chunk_after: 8 + 4 })).done;
  const info = await chatInfo(chatId);
  const view = await finished(info.stream_id);
  const afterEnd = await reconnect(chatId);
  const replayTransport = new DefaultChatTransport({
    api,
    prepareReconnectToStreamRequest: ({ id }) => ({ api: `${api}/${encodeURIComponent(id)}/stream?replay=true` }),
  });
  const replayed = await assemble(await replayTransport.reconnectToStream({ chatId })).done;
  const items = await persisted(info.stream_id);
  const stored = await assemble(validated(items)).done;
  return {
    driving: report(read),
    replayed: report(replayed),
    stored: report(stored),
    stored_types: [...new Set(items.map((item) => item.type))],
    after_end_null: afterEnd === null,
    expected: info.expected,
    status: view.status,
    stream_error: view.error,
    generations: info.generations,
  };
}

// Another process of the app (PEER_URL: its own pts, the same database) resumes and
// stops an answer this one drives: the live read and the cancel go through Postgres.
async function otherProcessScenario() {
  const peerApi = `${process.env.PEER_URL}/api/chat`;
  const peerReconnect = (chatId) => new DefaultChatTransport({ api: peerApi }).reconnectToStream({ chatId });
  const peerPost = async (path) => (await fetch(`${process.env.PEER_URL}${path}`, { method: "POST" })).status;

  const resumedId = newChatId("peer-resume");
  const driving = assemble(await send(resumedId, { hold_after: 8 + 3 }));
  const { expected } = await chatInfo(resumedId);
  await until("the held text on the driving read", () => textOf(driving) === expected.partial_text);
  const follower = assemble(await peerReconnect(resumedId));
  await until("the stored text on the peer's follower", () => textOf(follower) !== "");
  await post(`/test/chats/${encodeURIComponent(resumedId)}/release`);
  const [drove, followed] = await Promise.all([driving.done, follower.done]);

  const stoppedId = newChatId("peer-stop");
  const held = assemble(await send(stoppedId, { hold_after: 8 + 3 }));
  const stopInfo = await chatInfo(stoppedId);
  await until("the held text on the driving read", () => textOf(held) === stopInfo.expected.partial_text);
  const stopFollower = assemble(await peerReconnect(stoppedId));
  await until("the stored text on the peer's follower", () => textOf(stopFollower) !== "");
  const stopStatus = await peerPost(`/api/chat/${encodeURIComponent(stoppedId)}/stop`);
  const [stopped, stopFollowed] = await Promise.all([held.done, stopFollower.done]);
  const view = await finished(stopInfo.stream_id);
  return {
    resumed: { driving: report(drove), follower: report(followed), expected },
    stopped: {
      driving: report(stopped),
      follower: report(stopFollowed),
      expected: stopInfo.expected,
      stop_status: stopStatus,
      status: view.status,
    },
    generations: (await chatInfo(stoppedId)).all_generations,
  };
}

// The app writes its own start (with metadata), steps, a streamed tool input, a source,
// a file and its own finish: sent once each, on the driving read, a resume and the store.
async function ownChunksScenario() {
  const chatId = newChatId("own");
  const read = await assemble(await send(chatId, { own_chunks: true })).done;
  const info = await chatInfo(chatId);
  await finished(info.stream_id);
  const stored = await assemble(validated(await persisted(info.stream_id))).done;

  const heldId = newChatId("own-held");
  const abort = new AbortController();
  const driving = assemble(await send(heldId, { own_chunks: true, hold_after: 8 + 3 }, abort.signal));
  const { expected } = await chatInfo(heldId);
  await until("the held text on the driving read", () => textOf(driving) === expected.partial_text);
  abort.abort();
  await driving.done;
  const resumed = assemble(await reconnect(heldId));
  await until("the replay's text", () => textOf(resumed) !== "");
  await post(`/test/chats/${encodeURIComponent(heldId)}/release`);
  await resumed.done;
  return { driving: report(read), stored: report(stored), resumed: report(resumed), expected: info.expected };
}

// (f) the same stream through /v1/stream/pts/{id} with @durable-streams/client: the
// persisted chunks rebuild the message; and how many text deltas were written.
async function durableScenario() {
  const chatId = newChatId("durable");
  const read = await assemble(await send(chatId, { sentences: 12, words: 25, pace_ms: 4 })).done;
  const info = await chatInfo(chatId);
  await finished(info.stream_id);
  const items = await persisted(info.stream_id);
  const rebuilt = await assemble(validated(items)).done;
  const textTokens = read.types.filter((t) => t === "text-delta").length;
  return {
    driving: summary(read.latest),
    rebuilt: report(rebuilt),
    expected: info.expected,
    persisted_items: items.length,
    persisted_text_deltas: items.filter((item) => item.type === "text-delta").length,
    driving_text_deltas: textTokens,
    sentences: 12,
    tokens: 12 * 25,
  };
}

const scenarios = {
  send: sendScenario,
  reconnect: reconnectScenario,
  chat_resume: chatResumeScenario,
  nothing_to_resume: nothingToResumeScenario,
  stop: stopScenario,
  durable: durableScenario,
  bad_chunk: badChunkScenario,
  other_process: otherProcessScenario,
  own_chunks: ownChunksScenario,
};

const chosen = process.argv.length > 3 ? process.argv.slice(3) : Object.keys(scenarios);
for (const name of chosen) {
  let result;
  try {
    result = await scenarios[name]();
  } catch (error) {
    result = { failed: String(error?.stack ?? error) };
  }
  console.log(JSON.stringify({ scenario: name, ...result }));
}
// A failed scenario may leave a read open (a held answer): do not wait for it.
process.exit(0);
