// Compatibility of the support-chat server with docs/protocol.md, seen from the
// stock socket.io-client 4.x and plain fetch: authentication failures, the
// `connected` greeting, the session lifecycle over REST and Socket.IO
// (create, assign, join, send, deduplication, typing, read positions, close,
// transfer), error reporting, catching up after a reconnect, and the REST
// listing, paging and stats endpoints. Field names and values are checked as
// the contract spells them; extra fields are allowed.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, describe, test } from "node:test";

import {
  closeAllSockets,
  connect,
  connectError,
  emitAck,
  eventsOf,
  mark,
  nextEvent,
  rest,
  routeUrl,
  startServer,
  token,
} from "./server.mjs";

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const EVENT_MS = 3000;
const TYPING_EXPIRY_MS = 8000;
const TEST_MS = 30_000;

const SESSION_FIELDS = [
  "id", "customerId", "customerName", "agentId", "agentName", "pool", "status",
  "subject", "createdAt", "assignedAt", "closedAt", "lastSeq", "lastMessageAt",
];
const MESSAGE_FIELDS = [
  "id", "sessionId", "seq", "senderId", "senderName", "senderRole", "content",
  "clientMsgId", "createdAt",
];
const STATS_FIELDS = [
  "pool", "pendingSessions", "activeSessions", "closedToday", "onlineAgents",
  "avgWaitSeconds", "longestWaitSeconds", "avgFirstResponseSeconds",
  "messagesToday", "updatedAt",
];

let server;
let baseUrl;

before(async () => {
  server = await startServer();
  baseUrl = server.baseUrl;
});

after(async () => {
  closeAllSockets();
  if (server) await server.stop();
});

afterEach(() => closeAllSockets());

// ---------------------------------------------------------------- helpers

const uid = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;

function customer(name = "Carla Customer") {
  const id = uid("cust");
  return { id, name, token: token({ sub: id, name, role: "customer" }) };
}

function agent(name = "Ann Agent", pools = ["default"]) {
  const id = uid("agent");
  return { id, name, token: token({ sub: id, name, role: "agent", pools }) };
}

function assertTimestamp(value, label) {
  assert.equal(typeof value, "string", `${label} should be a string, got ${JSON.stringify(value)}`);
  assert.match(value, TIMESTAMP, `${label} should be RFC 3339 UTC with milliseconds`);
}

function assertKeys(object, keys, label) {
  assert.ok(object && typeof object === "object", `${label} should be an object, got ${JSON.stringify(object)}`);
  for (const key of keys) {
    assert.ok(key in object, `${label} lacks "${key}": ${JSON.stringify(object)}`);
  }
}

/** Each field of `expected` is present in `actual` with that value (nested objects likewise). */
function assertFields(actual, expected, label = "payload") {
  assert.ok(actual && typeof actual === "object", `${label} should be an object, got ${JSON.stringify(actual)}`);
  for (const [key, want] of Object.entries(expected)) {
    assert.ok(key in actual, `${label} lacks "${key}": ${JSON.stringify(actual)}`);
    if (want && typeof want === "object" && !Array.isArray(want)) {
      assertFields(actual[key], want, `${label}.${key}`);
    } else {
      assert.deepEqual(actual[key], want, `${label}.${key}`);
    }
  }
}

function assertSession(session, expected = {}, label = "Session") {
  assertKeys(session, SESSION_FIELDS, label);
  assert.equal(typeof session.id, "string");
  assert.ok(["pending", "active", "closed"].includes(session.status), `status ${session.status}`);
  assert.ok(Number.isInteger(session.lastSeq), "lastSeq should be an integer");
  assertTimestamp(session.createdAt, "Session.createdAt");
  for (const key of ["assignedAt", "closedAt", "lastMessageAt"]) {
    if (session[key] !== null) assertTimestamp(session[key], `${label}.${key}`);
  }
  assertFields(session, expected, label);
}

function assertMessage(message, expected = {}) {
  assertKeys(message, MESSAGE_FIELDS, "Message");
  assert.equal(typeof message.id, "string");
  assert.ok(Number.isInteger(message.seq), "seq should be an integer");
  assertTimestamp(message.createdAt, "Message.createdAt");
  assertFields(message, expected, "Message");
}

function assertError(error, code, label = "error") {
  assertKeys(error, ["code", "message"], label);
  assert.equal(error.code, code, `${label}.code (message: ${error.message})`);
  assert.equal(typeof error.message, "string", `${label}.message should be a string`);
}

function assertRestError(response, status, code) {
  assert.equal(response.status, status, `HTTP status, body ${JSON.stringify(response.body)}`);
  assertKeys(response.body, ["error"], "error body");
  assertError(response.body.error, code, "body.error");
}

function assertOkAck(ack, label = "ack") {
  assert.ok(ack && typeof ack === "object", `${label} should be an object`);
  assert.equal(ack.ok, true, `${label} should be ok: ${JSON.stringify(ack)}`);
}

function assertFailedAck(ack, code) {
  assert.ok(ack && typeof ack === "object", "ack should be an object");
  assert.equal(ack.ok, false, `ack should fail: ${JSON.stringify(ack)}`);
  assertError(ack.error, code, "ack.error");
}

/** Resolves once the clock has moved past the millisecond of the call: a
 * change made after it is stamped later than any made before (the server
 * runs on this machine's clock), for orders decided by time with ties
 * broken otherwise. */
async function nextMillisecond() {
  const now = Date.now();
  while (Date.now() <= now) await new Promise((resolve) => setImmediate(resolve));
}

async function createSession(user, body) {
  const response = await rest(baseUrl, user.token, "POST", "/sessions", body);
  assert.equal(response.status, 201, `POST /sessions: ${JSON.stringify(response.body)}`);
  assertSession(response.body);
  return response.body;
}

async function assign(user, sessionId) {
  const response = await rest(baseUrl, user.token, "POST", `/sessions/${sessionId}/assign`, {});
  assert.equal(response.status, 200, `assign: ${JSON.stringify(response.body)}`);
  assertSession(response.body, { id: sessionId, status: "active", agentId: user.id });
  return response.body;
}

async function join(socket, sessionId, lastSeq) {
  const payload = lastSeq === undefined ? { sessionId } : { sessionId, lastSeq };
  const ack = await emitAck(socket, "join-session", payload, EVENT_MS);
  assertOkAck(ack, "join-session ack");
  return ack;
}

async function send(socket, sessionId, content, clientMsgId = uid("cm")) {
  const ack = await emitAck(socket, "send-message", { sessionId, content, clientMsgId }, EVENT_MS);
  assertOkAck(ack, "send-message ack");
  assertMessage(ack.message, { sessionId, clientMsgId });
  return ack.message;
}

/** A customer and an agent, both connected and joined to a session the agent has taken. */
async function activeSession({ message = "My order has not arrived" } = {}) {
  const c = customer();
  const a = agent();
  const agentSocket = await connect(baseUrl, a.token);
  const created = await createSession(c, { subject: "Order", message });
  const session = await assign(a, created.id);
  const customerSocket = await connect(baseUrl, c.token);
  await join(customerSocket, session.id);
  await join(agentSocket, session.id);
  return { c, a, session, sessionId: session.id, customerSocket, agentSocket };
}

// ------------------------------------------------------------------ tests

describe("authentication", () => {
  test("a socket without a token is refused with missing_token", { timeout: TEST_MS }, async () => {
    const err = await connectError(baseUrl, undefined);
    assert.equal(err.message, "unauthorized");
    assert.equal(err.data?.code, "missing_token");
  });

  test("a malformed token is refused with invalid_token", { timeout: TEST_MS }, async () => {
    const err = await connectError(baseUrl, "not-a-jwt");
    assert.equal(err.message, "unauthorized");
    assert.equal(err.data?.code, "invalid_token");
  });

  test("an expired token is refused with token_expired", { timeout: TEST_MS }, async () => {
    const err = await connectError(baseUrl, token({ sub: uid("cust"), role: "customer", expiresIn: -120 }));
    assert.equal(err.message, "unauthorized");
    assert.equal(err.data?.code, "token_expired");
  });

  test("a token signed with another secret is refused with invalid_token", { timeout: TEST_MS }, async () => {
    const forged = token({ sub: uid("cust"), role: "customer", secret: "some-other-secret-entirely" });
    const err = await connectError(baseUrl, forged);
    assert.equal(err.message, "unauthorized");
    assert.equal(err.data?.code, "invalid_token");
  });

  test("REST without a token answers 401 unauthorized", { timeout: TEST_MS }, async () => {
    assertRestError(await rest(baseUrl, undefined, "GET", "/sessions"), 401, "unauthorized");
    assertRestError(await rest(baseUrl, undefined, "POST", "/sessions", { subject: "x" }), 401, "unauthorized");
  });

  test("REST with an expired token answers 401 unauthorized", { timeout: TEST_MS }, async () => {
    const expired = token({ sub: uid("cust"), role: "customer", expiresIn: -120 });
    assertRestError(await rest(baseUrl, expired, "GET", "/sessions"), 401, "unauthorized");
  });
});

describe("connected", () => {
  test("greets a customer without a name claim with its user id as name", { timeout: TEST_MS }, async () => {
    const sub = uid("cust");
    const socket = await connect(baseUrl, token({ sub, role: "customer" }));
    const hello = socket.hello;
    assertKeys(hello, ["userId", "name", "role", "pools", "socketId", "serverTime"], "connected");
    assert.equal(hello.userId, sub);
    assert.equal(hello.name, sub);
    assert.equal(hello.role, "customer");
    assert.ok(Array.isArray(hello.pools), "pools should be an array");
    assert.equal(typeof hello.socketId, "string");
    assert.ok(hello.socketId.length > 0, "socketId should not be empty");
    assertTimestamp(hello.serverTime, "serverTime");
    assert.ok(Math.abs(Date.parse(hello.serverTime) - Date.now()) < 60_000, "serverTime should be now");
  });

  test("greets an agent with its name and pools", { timeout: TEST_MS }, async () => {
    const a = agent("Ann Agent", ["default", "billing"]);
    const socket = await connect(baseUrl, a.token);
    assertFields(socket.hello, { userId: a.id, name: "Ann Agent", role: "agent", pools: ["default", "billing"] }, "connected");
    assert.equal(typeof socket.hello.socketId, "string");
    assertTimestamp(socket.hello.serverTime, "serverTime");
  });

  test("an agent without a pools claim is in the default pool", { timeout: TEST_MS }, async () => {
    const sub = uid("agent");
    const socket = await connect(baseUrl, token({ sub, role: "agent" }));
    assertFields(socket.hello, { userId: sub, name: sub, role: "agent", pools: ["default"] }, "connected");
  });
});

describe("session lifecycle", () => {
  test("create, assign, join, send, deduplicate", { timeout: TEST_MS }, async () => {
    const c = customer("Carla Customer");
    const a1 = agent("Ann Agent");
    const a2 = agent("Bob Agent");
    const agentSocket = await connect(baseUrl, a1.token);

    // The customer opens a session with a first message.
    const created = await rest(baseUrl, c.token, "POST", "/sessions", { subject: "Where is my parcel?", message: "It is late" });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const session = created.body;
    assertSession(session, {
      status: "pending",
      lastSeq: 1,
      customerId: c.id,
      customerName: "Carla Customer",
      agentId: null,
      agentName: null,
      pool: "default",
      subject: "Where is my parcel?",
      assignedAt: null,
      closedAt: null,
    });
    assertTimestamp(session.lastMessageAt, "lastMessageAt");

    // Agents of the pool hear of it.
    const pending = await nextEvent(agentSocket, "new-pending-session", (p) => p?.session?.id === session.id, EVENT_MS);
    assertSession(pending.session, { id: session.id, status: "pending", customerId: c.id });

    // The agent takes it; a second agent cannot.
    const assigned = await rest(baseUrl, a1.token, "POST", `/sessions/${session.id}/assign`, {});
    assert.equal(assigned.status, 200, JSON.stringify(assigned.body));
    assertSession(assigned.body, { id: session.id, status: "active", agentId: a1.id, agentName: "Ann Agent" });
    assertTimestamp(assigned.body.assignedAt, "assignedAt");
    assertRestError(await rest(baseUrl, a2.token, "POST", `/sessions/${session.id}/assign`, {}), 409, "conflict");

    const fetched = await rest(baseUrl, c.token, "GET", `/sessions/${session.id}`);
    assert.equal(fetched.status, 200);
    assertSession(fetched.body, { id: session.id, status: "active", agentId: a1.id });

    // Both sides join; the ack and the session-joined event carry the same object.
    const customerSocket = await connect(baseUrl, c.token);
    for (const [socket, who] of [[customerSocket, "customer"], [agentSocket, "agent"]]) {
      const since = mark(socket);
      const ack = await emitAck(socket, "join-session", { sessionId: session.id }, EVENT_MS);
      assertOkAck(ack, `${who} join ack`);
      const { ok, ...joined } = ack;
      assertKeys(joined, ["session", "messages", "hasMore", "readPositions"], `${who} join ack`);
      assertSession(joined.session, { id: session.id, status: "active", agentId: a1.id });
      assert.equal(joined.hasMore, false);
      assert.ok(Array.isArray(joined.readPositions), "readPositions should be an array");
      assert.equal(joined.messages.length, 1);
      assertMessage(joined.messages[0], {
        sessionId: session.id, seq: 1, senderId: c.id, senderName: "Carla Customer",
        senderRole: "customer", content: "It is late",
      });
      const event = await nextEvent(socket, "session-joined", (p) => p?.session?.id === session.id, EVENT_MS, { since });
      assert.deepEqual(event, joined, `${who}: session-joined should equal the ack`);
    }

    // The customer sends; the ack comes first, then the sender's own new-message.
    const clientMsgId = uid("cm");
    const sent = await new Promise((resolve, reject) => {
      customerSocket.timeout(EVENT_MS).emit(
        "send-message",
        { sessionId: session.id, content: "  hello  ", clientMsgId },
        (err, ack) => (err ? reject(err) : resolve({ ack, logLength: customerSocket.log.length })),
      );
    });
    assertOkAck(sent.ack, "send-message ack");
    const hello = sent.ack.message;
    assertMessage(hello, {
      sessionId: session.id, seq: 2, senderId: c.id, senderName: "Carla Customer",
      senderRole: "customer", content: "hello", clientMsgId,
    });
    const atAgent = await nextEvent(agentSocket, "new-message", (m) => m?.id === hello.id, EVENT_MS);
    assert.deepEqual(atAgent, hello);
    const own = await nextEvent(customerSocket, "new-message", (m) => m?.id === hello.id, EVENT_MS, { withIndex: true });
    assert.deepEqual(own.payload, hello);
    assert.ok(own.index >= sent.logLength, "the sender's new-message must arrive after its ack");

    // The agent answers.
    const reply = await send(agentSocket, session.id, "Let me check");
    assertMessage(reply, { seq: 3, senderId: a1.id, senderName: "Ann Agent", senderRole: "agent", content: "Let me check" });
    assert.deepEqual(await nextEvent(customerSocket, "new-message", (m) => m?.seq === 3, EVENT_MS), reply);

    // A repeated clientMsgId acks the original and stores nothing new.
    const retry = await emitAck(customerSocket, "send-message", { sessionId: session.id, content: "  hello  ", clientMsgId }, EVENT_MS);
    assertOkAck(retry, "repeated send-message ack");
    assert.deepEqual(retry.message, hello);

    const next = await send(customerSocket, session.id, "still there?");
    assert.equal(next.seq, 4, "the next message follows without a gap");
    await nextEvent(agentSocket, "new-message", (m) => m?.id === next.id, EVENT_MS);
    await nextEvent(customerSocket, "new-message", (m) => m?.id === next.id, EVENT_MS);
    for (const [socket, who] of [[agentSocket, "agent"], [customerSocket, "customer"]]) {
      const seqs = eventsOf(socket, "new-message").filter((m) => m.sessionId === session.id).map((m) => m.seq);
      assert.deepEqual(seqs, [2, 3, 4], `${who} new-message seqs`);
    }
  });
});

describe("typing", () => {
  test("others see typing, and the server ends it after 5 s of silence", { timeout: TEST_MS }, async () => {
    const { c, sessionId, customerSocket, agentSocket } = await activeSession();
    const since = mark(agentSocket);
    const started = Date.now();
    customerSocket.emit("typing", { sessionId, isTyping: true });

    const on = await nextEvent(agentSocket, "user-typing", (p) => p?.isTyping === true, EVENT_MS, { since });
    assertFields(on, { sessionId, userId: c.id, name: c.name, role: "customer", isTyping: true }, "user-typing");

    const off = await nextEvent(agentSocket, "user-typing", (p) => p?.isTyping === false, TYPING_EXPIRY_MS, { since });
    const elapsed = Date.now() - started;
    assertFields(off, { sessionId, userId: c.id, name: c.name, role: "customer", isTyping: false }, "user-typing");
    assert.ok(elapsed >= 4000, `typing ended after ${elapsed} ms, before 5 s of silence`);

    // Anything sent back to the typist would come before its own next message.
    const message = await send(customerSocket, sessionId, "done typing");
    await nextEvent(customerSocket, "new-message", (m) => m?.id === message.id, EVENT_MS);
    assert.deepEqual(eventsOf(customerSocket, "user-typing"), [], "the typist must not get its own user-typing");
  });

  test("sending a message ends typing", { timeout: TEST_MS }, async () => {
    const { c, sessionId, customerSocket, agentSocket } = await activeSession();
    const since = mark(agentSocket);
    const ack = await emitAck(customerSocket, "typing", { sessionId, isTyping: true }, EVENT_MS);
    assertOkAck(ack, "typing ack");
    await nextEvent(agentSocket, "user-typing", (p) => p?.isTyping === true, EVENT_MS, { since });

    const afterOn = mark(agentSocket);
    const message = await send(customerSocket, sessionId, "here is my order number");
    const off = await nextEvent(agentSocket, "user-typing", (p) => p?.isTyping === false, EVENT_MS, { since: afterOn });
    assertFields(off, { sessionId, userId: c.id, role: "customer", isTyping: false }, "user-typing");
    await nextEvent(agentSocket, "new-message", (m) => m?.id === message.id, EVENT_MS);
    await nextEvent(customerSocket, "new-message", (m) => m?.id === message.id, EVENT_MS);
    assert.deepEqual(eventsOf(customerSocket, "user-typing"), [], "the typist must not get its own user-typing");
  });
});

describe("read positions", () => {
  test("mark-read moves forward only, is clamped, and shows on join", { timeout: TEST_MS }, async () => {
    const { c, a, sessionId, customerSocket, agentSocket } = await activeSession();
    await send(customerSocket, sessionId, "second");
    const third = await send(customerSocket, sessionId, "third");
    assert.equal(third.seq, 3);

    const customerSince = mark(customerSocket);
    const agentSince = mark(agentSocket);
    assertOkAck(await emitAck(agentSocket, "mark-read", { sessionId, upToSeq: 2 }, EVENT_MS), "mark-read ack");
    for (const [socket, since, who] of [[agentSocket, agentSince, "agent"], [customerSocket, customerSince, "customer"]]) {
      const read = await nextEvent(socket, "messages-read", (p) => p?.sessionId === sessionId, EVENT_MS, { since });
      assertFields(read, { sessionId, userId: a.id, role: "agent", upToSeq: 2 }, `${who} messages-read`);
      assertTimestamp(read.readAt, "readAt");
    }

    // Backwards: acked, no event. Past lastSeq: clamped to 3, which is the next event.
    const customerBack = mark(customerSocket);
    const agentBack = mark(agentSocket);
    assertOkAck(await emitAck(agentSocket, "mark-read", { sessionId, upToSeq: 1 }, EVENT_MS), "backwards mark-read ack");
    assertOkAck(await emitAck(agentSocket, "mark-read", { sessionId, upToSeq: 99 }, EVENT_MS), "clamped mark-read ack");
    for (const [socket, since, who] of [[agentSocket, agentBack, "agent"], [customerSocket, customerBack, "customer"]]) {
      const clamped = await nextEvent(socket, "messages-read", (p) => p?.sessionId === sessionId, EVENT_MS, { since });
      assertFields(clamped, { sessionId, userId: a.id, role: "agent", upToSeq: 3 }, `${who} messages-read`);
      await nextEvent(socket, "messages-read", (p) => p?.upToSeq === 3, EVENT_MS, { since });
      assert.deepEqual(
        eventsOf(socket, "messages-read", since).map((p) => p.upToSeq),
        [3],
        `${who}: moving the read position backwards must not emit messages-read`,
      );
    }

    const fresh = await connect(baseUrl, c.token);
    const joined = await join(fresh, sessionId);
    const position = joined.readPositions.find((p) => p.userId === a.id);
    assert.ok(position, `readPositions should list the agent: ${JSON.stringify(joined.readPositions)}`);
    assertFields(position, { userId: a.id, role: "agent", upToSeq: 3 }, "readPosition");
  });
});

describe("errors", () => {
  test("bad events fail with the right codes and leave the socket usable", { timeout: TEST_MS }, async () => {
    const c1 = customer("First Customer");
    const c2 = customer("Second Customer");
    const own = await createSession(c1, { subject: "Mine" });
    assertSession(own, { status: "pending", lastSeq: 0, lastMessageAt: null, customerName: "First Customer" });
    const other = await createSession(c2, { subject: "Not yours" });
    const socket = await connect(baseUrl, c1.token);
    await join(socket, own.id);

    assertFailedAck(await emitAck(socket, "send-message", { sessionId: own.id, content: "   ", clientMsgId: uid("cm") }, EVENT_MS), "invalid_payload");
    assertFailedAck(await emitAck(socket, "send-message", { sessionId: own.id, content: "", clientMsgId: uid("cm") }, EVENT_MS), "invalid_payload");
    assertFailedAck(await emitAck(socket, "send-message", { sessionId: own.id, content: "no id" }, EVENT_MS), "invalid_payload");
    assertFailedAck(await emitAck(socket, "send-message", { sessionId: own.id, content: 42, clientMsgId: uid("cm") }, EVENT_MS), "invalid_payload");
    assertFailedAck(await emitAck(socket, "join-session", { sessionId: randomUUID() }, EVENT_MS), "not_found");
    assertFailedAck(await emitAck(socket, "join-session", { sessionId: other.id }, EVENT_MS), "forbidden");

    // Without a callback the failure comes as an `error` event.
    let since = mark(socket);
    socket.emit("send-message", { sessionId: own.id, content: "   ", clientMsgId: uid("cm") });
    assertError(await nextEvent(socket, "error", () => true, EVENT_MS, { since }), "invalid_payload", "error event");
    since = mark(socket);
    socket.emit("join-session", { sessionId: other.id });
    assertError(await nextEvent(socket, "error", () => true, EVENT_MS, { since }), "forbidden", "error event");
    since = mark(socket);
    socket.emit("join-session", { sessionId: randomUUID() });
    assertError(await nextEvent(socket, "error", () => true, EVENT_MS, { since }), "not_found", "error event");

    assert.equal(socket.connected, true, "the socket should still be connected");
    const message = await send(socket, own.id, "after the errors");
    assertMessage(message, { seq: 1, senderId: c1.id, senderRole: "customer", content: "after the errors" });
    await nextEvent(socket, "new-message", (m) => m?.id === message.id, EVENT_MS);
  });
});

describe("closing", () => {
  test("close notifies both sides and refuses new messages", { timeout: TEST_MS }, async () => {
    const { a, sessionId, customerSocket, agentSocket } = await activeSession();
    const earlier = await send(customerSocket, sessionId, "thanks, bye");
    const customerSince = mark(customerSocket);
    const agentSince = mark(agentSocket);

    const closed = await rest(baseUrl, a.token, "POST", `/sessions/${sessionId}/close`, { reason: "resolved" });
    assert.equal(closed.status, 200, JSON.stringify(closed.body));
    assertSession(closed.body, { id: sessionId, status: "closed" });
    assertTimestamp(closed.body.closedAt, "closedAt");

    for (const [socket, since, who] of [[customerSocket, customerSince, "customer"], [agentSocket, agentSince, "agent"]]) {
      const event = await nextEvent(socket, "session-closed", (p) => p?.sessionId === sessionId, EVENT_MS, { since });
      assertFields(event, { sessionId, closedBy: { userId: a.id, role: "agent" }, reason: "resolved" }, `${who} session-closed`);
      assertTimestamp(event.closedAt, "session-closed.closedAt");
    }

    assertFailedAck(await emitAck(customerSocket, "send-message", { sessionId, content: "one more thing", clientMsgId: uid("cm") }, EVENT_MS), "session_closed");
    assertRestError(await rest(baseUrl, a.token, "POST", `/sessions/${sessionId}/close`, { reason: "again" }), 409, "session_closed");

    const retry = await emitAck(customerSocket, "send-message", { sessionId, content: earlier.content, clientMsgId: earlier.clientMsgId }, EVENT_MS);
    assertOkAck(retry, "repeated send-message ack on a closed session");
    assert.deepEqual(retry.message, earlier);
  });
});

describe("reconnecting", () => {
  test("join with lastSeq returns exactly the missed messages, then live ones once", { timeout: TEST_MS }, async () => {
    const { c, sessionId, customerSocket, agentSocket } = await activeSession();
    await send(customerSocket, sessionId, "are you there?");
    const seen = await send(agentSocket, sessionId, "yes");
    await nextEvent(customerSocket, "new-message", (m) => m?.id === seen.id, EVENT_MS);
    const lastSeen = seen.seq;
    assert.equal(lastSeen, 3);

    customerSocket.disconnect();
    const missed = [];
    for (const text of ["one", "two", "three"]) missed.push(await send(agentSocket, sessionId, text));

    const back = await connect(baseUrl, c.token);
    const joined = await join(back, sessionId, lastSeen);
    assert.deepEqual(joined.messages.map((m) => m.seq), [lastSeen + 1, lastSeen + 2, lastSeen + 3]);
    assert.deepEqual(joined.messages, missed);
    assert.equal(joined.hasMore, false);

    const live = await send(agentSocket, sessionId, "welcome back");
    assert.equal(live.seq, lastSeen + 4);
    assert.deepEqual(await nextEvent(back, "new-message", (m) => m?.id === live.id, EVENT_MS), live);
    const later = await send(agentSocket, sessionId, "anything else?");
    await nextEvent(back, "new-message", (m) => m?.id === later.id, EVENT_MS);
    assert.deepEqual(
      eventsOf(back, "new-message").map((m) => m.seq),
      [lastSeen + 4, lastSeen + 5],
      "live messages arrive once each, and none that join-session already returned",
    );
  });
});

describe("REST", () => {
  test("GET /sessions lists the customer's own sessions, newest first", { timeout: TEST_MS }, async () => {
    const c = customer();
    const someoneElse = customer();
    const first = await createSession(c, { subject: "first" });
    const foreign = await createSession(someoneElse, { subject: "foreign" });
    const second = await createSession(c, { subject: "second" });

    const list = await rest(baseUrl, c.token, "GET", "/sessions");
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assertKeys(list.body, ["items", "nextCursor"], "session list");
    assert.ok(list.body.nextCursor === null || typeof list.body.nextCursor === "string", "nextCursor is null or a string");
    for (const item of list.body.items) assertSession(item, { customerId: c.id });
    assert.deepEqual(list.body.items.map((s) => s.id), [second.id, first.id]);
    assert.ok(!list.body.items.some((s) => s.id === foreign.id), "another customer's session must not be listed");

    const page1 = await rest(baseUrl, c.token, "GET", "/sessions?limit=1");
    assert.equal(page1.status, 200, JSON.stringify(page1.body));
    assert.deepEqual(page1.body.items.map((s) => s.id), [second.id]);
    assert.equal(typeof page1.body.nextCursor, "string", "a further page should have a cursor");
    const page2 = await rest(baseUrl, c.token, "GET", `/sessions?limit=1&cursor=${encodeURIComponent(page1.body.nextCursor)}`);
    assert.equal(page2.status, 200, JSON.stringify(page2.body));
    assert.deepEqual(page2.body.items.map((s) => s.id), [first.id]);
    if (page2.body.nextCursor !== null) {
      assert.equal(typeof page2.body.nextCursor, "string");
      const page3 = await rest(baseUrl, c.token, "GET", `/sessions?limit=1&cursor=${encodeURIComponent(page2.body.nextCursor)}`);
      assert.equal(page3.status, 200);
      assert.deepEqual(page3.body.items, []);
    }
  });

  test("POST and GET messages: idempotent posts, afterSeq/beforeSeq/limit paging", { timeout: TEST_MS }, async () => {
    const c = customer();
    const session = await createSession(c, { subject: "paging", message: "m1" });
    const path = `/sessions/${session.id}/messages`;

    const posted = [];
    for (const n of [2, 3, 4, 5]) {
      const clientMsgId = uid("cm");
      const response = await rest(baseUrl, c.token, "POST", path, { content: ` m${n} `, clientMsgId });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      assertMessage(response.body, { sessionId: session.id, seq: n, content: `m${n}`, clientMsgId, senderId: c.id, senderRole: "customer" });
      posted.push(response.body);
    }
    const repeated = await rest(baseUrl, c.token, "POST", path, { content: " m2 ", clientMsgId: posted[0].clientMsgId });
    assert.equal(repeated.status, 200, JSON.stringify(repeated.body));
    assert.deepEqual(repeated.body, posted[0]);
    assertRestError(await rest(baseUrl, c.token, "POST", path, { content: "   ", clientMsgId: uid("cm") }), 400, "invalid_payload");

    const page = async (query) => {
      const response = await rest(baseUrl, c.token, "GET", `${path}${query}`);
      assert.equal(response.status, 200, `${query}: ${JSON.stringify(response.body)}`);
      assertKeys(response.body, ["items", "hasMore"], "message page");
      for (const item of response.body.items) assertMessage(item, { sessionId: session.id });
      return { seqs: response.body.items.map((m) => m.seq), hasMore: response.body.hasMore };
    };
    assert.deepEqual(await page(""), { seqs: [1, 2, 3, 4, 5], hasMore: false });
    assert.deepEqual(await page("?limit=2"), { seqs: [4, 5], hasMore: true });
    assert.deepEqual(await page("?afterSeq=1&limit=2"), { seqs: [2, 3], hasMore: true });
    assert.deepEqual(await page("?afterSeq=3&limit=2"), { seqs: [4, 5], hasMore: false });
    assert.deepEqual(await page("?afterSeq=5"), { seqs: [], hasMore: false });
    assert.deepEqual(await page("?beforeSeq=5&limit=2"), { seqs: [3, 4], hasMore: true });
    assert.deepEqual(await page("?beforeSeq=3&limit=5"), { seqs: [1, 2], hasMore: false });
    assert.deepEqual(await page("?afterSeq=1&beforeSeq=5"), { seqs: [2, 3, 4], hasMore: false });
    assert.deepEqual(await page("?afterSeq=1&beforeSeq=5&limit=2"), { seqs: [2, 3], hasMore: true });
  });

  test("GET /stats answers agents with Stats and refuses customers", { timeout: TEST_MS }, async () => {
    const a = agent();
    await connect(baseUrl, a.token);
    const stats = await rest(baseUrl, a.token, "GET", "/stats");
    assert.equal(stats.status, 200, JSON.stringify(stats.body));
    assertKeys(stats.body, STATS_FIELDS, "Stats");
    const s = stats.body;
    assert.equal(s.pool, "default");
    for (const key of ["pendingSessions", "activeSessions", "closedToday", "onlineAgents", "messagesToday"]) {
      assert.ok(Number.isInteger(s[key]) && s[key] >= 0, `${key} should be a count, got ${s[key]}`);
    }
    assert.ok(s.onlineAgents >= 1, "the connected agent is online");
    assert.ok(typeof s.longestWaitSeconds === "number" && s.longestWaitSeconds >= 0, "longestWaitSeconds");
    for (const key of ["avgWaitSeconds", "avgFirstResponseSeconds"]) {
      assert.ok(s[key] === null || typeof s[key] === "number", `${key} should be a number or null`);
    }
    assertTimestamp(s.updatedAt, "updatedAt");

    assertRestError(await rest(baseUrl, customer().token, "GET", "/stats"), 403, "forbidden");
  });

  test("transfer with an empty body returns the session to its pool's queue", { timeout: TEST_MS }, async () => {
    const c = customer();
    const a1 = agent("Ann Agent");
    const a2 = agent("Bob Agent");
    const a1Socket = await connect(baseUrl, a1.token);
    const a2Socket = await connect(baseUrl, a2.token);
    const session = await createSession(c, { subject: "transfer me", message: "hi" });
    await assign(a1, session.id);

    const since1 = mark(a1Socket);
    const since2 = mark(a2Socket);
    const transferred = await rest(baseUrl, a1.token, "POST", `/sessions/${session.id}/transfer`, {});
    assert.equal(transferred.status, 200, JSON.stringify(transferred.body));
    assertSession(transferred.body, { id: session.id, status: "pending", agentId: null });

    for (const [socket, since, who] of [[a2Socket, since2, "other agent"], [a1Socket, since1, "former agent"]]) {
      const pending = await nextEvent(socket, "new-pending-session", (p) => p?.session?.id === session.id, EVENT_MS, { since });
      assertSession(pending.session, { id: session.id, status: "pending", agentId: null }, `${who} new-pending-session`);
      // The assignment's own session-updated may still be in flight when the
      // REST answer arrives, so wait for the one that reports the transfer.
      const updated = await nextEvent(socket, "session-updated", (p) => p?.session?.id === session.id && p.session.status !== "active", EVENT_MS, { since });
      assertSession(updated.session, { id: session.id, status: "pending", agentId: null }, `${who} session-updated`);
    }

    // The session can be taken again by another agent of the pool.
    await assign(a2, session.id);
  });

  test("transfer with no request body at all also returns the session to the queue", { timeout: TEST_MS }, async () => {
    const c = customer();
    const a = agent();
    const session = await createSession(c, { subject: "no body" });
    await assign(a, session.id);
    const transferred = await rest(baseUrl, a.token, "POST", `/sessions/${session.id}/transfer`);
    assert.equal(transferred.status, 200, JSON.stringify(transferred.body));
    assertSession(transferred.body, { id: session.id, status: "pending", agentId: null });
  });
});

// ------------------------------------------- internal notes and colleagues

describe("internal notes and invited colleagues", () => {
  const SECRET = "COMPAT-STAFF-NOTE";

  async function sendNote(socket, sessionId, content, clientMsgId = uid("note")) {
    const ack = await emitAck(socket, "send-message", { sessionId, content, clientMsgId, internal: true }, EVENT_MS);
    assertOkAck(ack, "internal send-message ack");
    assertMessage(ack.message, { sessionId, clientMsgId, internal: true });
    return ack.message;
  }

  function assertNoNote(value, label) {
    const text = JSON.stringify(value);
    assert.ok(!text.includes(SECRET), `${label} holds a note: ${text}`);
    assert.ok(!text.includes('"internal":true'), `${label} holds an internal message: ${text}`);
  }

  test("new-note reaches staff only; messages, joins and REST never carry notes", { timeout: TEST_MS }, async () => {
    const { c, a, sessionId, customerSocket, agentSocket } = await activeSession();
    const reader = agent("Rita Reader");
    const readerSocket = await connect(baseUrl, reader.token);
    await join(readerSocket, sessionId);

    await send(agentSocket, sessionId, "message 2");
    const note = await sendNote(agentSocket, sessionId, `${SECRET} one`);
    assert.equal(note.seq, 1, "notes are numbered apart");
    assert.equal(note.afterSeq, 2, "placed after message 2");
    const third = await send(customerSocket, sessionId, "message 3");
    assert.equal(third.seq, 3, "message numbers run on without gaps");

    for (const socket of [agentSocket, readerSocket]) {
      const got = await nextEvent(socket, "new-note", (n) => n?.id === note.id, EVENT_MS);
      assertMessage(got, { internal: true, seq: 1, afterSeq: 2 });
    }
    await nextEvent(customerSocket, "new-message", (m) => m?.seq === 3, EVENT_MS);
    assert.deepEqual(eventsOf(customerSocket, "new-note"), []);
    assertNoNote(customerSocket.log, "the customer's events");

    const customerJoin = await join(customerSocket, sessionId);
    assert.ok(!("notes" in customerJoin), "a customer's join has no notes key");
    assert.deepEqual(customerJoin.messages.map((m) => m.seq), [1, 2, 3]);
    assertNoNote(customerJoin, "the customer's join");
    const caughtUp = await join(customerSocket, sessionId, 1);
    assert.deepEqual(caughtUp.messages.map((m) => m.seq), [2, 3]);
    assertNoNote(caughtUp, "the customer's catch-up");

    const staffJoin = await join(agentSocket, sessionId);
    assert.deepEqual(staffJoin.notes.map((n) => [n.seq, n.afterSeq, n.internal]), [[1, 2, true]]);
    assert.ok(staffJoin.messages.every((m) => m.internal === false));

    for (const query of ["", "?afterSeq=0", "?beforeSeq=9", "?afterSeq=1&beforeSeq=3", "?limit=1"]) {
      const page = await rest(baseUrl, c.token, "GET", `/sessions/${sessionId}/messages${query}`);
      assert.equal(page.status, 200);
      assertNoNote(page.body, `GET messages${query}`);
    }
    assertRestError(await rest(baseUrl, c.token, "GET", `/sessions/${sessionId}/notes`), 403, "forbidden");
    const notes = await rest(baseUrl, reader.token, "GET", `/sessions/${sessionId}/notes`);
    assert.equal(notes.status, 200);
    assert.deepEqual(notes.body.items.map((n) => n.id), [note.id]);
    assert.equal(notes.body.hasMore, false);

    const again = await sendNote(agentSocket, sessionId, `${SECRET} one`, note.clientMsgId);
    assert.equal(again.id, note.id, "a resent note is the original");
    assertFailedAck(
      await emitAck(customerSocket, "send-message", { sessionId, content: "x", clientMsgId: uid("c"), internal: true }, EVENT_MS),
      "forbidden",
    );
    assertFailedAck(
      await emitAck(readerSocket, "send-message", { sessionId, content: "x", clientMsgId: uid("r"), internal: true }, EVENT_MS),
      "forbidden",
    );
    const posted = await rest(baseUrl, a.token, "POST", `/sessions/${sessionId}/messages`, {
      content: `${SECRET} two`, clientMsgId: uid("rn"), internal: true,
    });
    assert.equal(posted.status, 201);
    assertMessage(posted.body, { internal: true, seq: 2, afterSeq: 3 });
    await nextEvent(agentSocket, "new-note", (n) => n?.id === posted.body.id, EVENT_MS);
    const later = await send(agentSocket, sessionId, "message 4");
    assert.equal(later.seq, 4);
    await nextEvent(customerSocket, "new-message", (m) => m?.seq === 4, EVENT_MS);
    assertNoNote(customerSocket.log, "the customer's events at the end");
  });

  test("an invited colleague joins, writes, and leaves", { timeout: TEST_MS }, async () => {
    const { c, a, sessionId, customerSocket, agentSocket } = await activeSession();
    const guest = agent("Gus Guest", ["elsewhere"]);
    const guestSocket = await connect(baseUrl, guest.token);
    assertFailedAck(await emitAck(guestSocket, "join-session", { sessionId }, EVENT_MS), "forbidden");

    assertRestError(await rest(baseUrl, c.token, "POST", `/sessions/${sessionId}/participants`, { agentId: guest.id }), 403, "forbidden");
    assertRestError(await rest(baseUrl, a.token, "POST", `/sessions/${sessionId}/participants`, { agentId: uid("ghost") }), 404, "not_found");
    const invited = await rest(baseUrl, a.token, "POST", `/sessions/${sessionId}/participants`, { agentId: guest.id });
    assert.equal(invited.status, 200, JSON.stringify(invited.body));
    assertSession(invited.body, { id: sessionId });
    assert.equal(invited.body.participants.length, 1);
    assertFields(invited.body.participants[0], { userId: guest.id, name: "Gus Guest", role: "agent" });
    assertTimestamp(invited.body.participants[0].joinedAt, "Participant.joinedAt");
    assertRestError(await rest(baseUrl, a.token, "POST", `/sessions/${sessionId}/participants`, { agentId: guest.id }), 409, "conflict");

    const updated = await nextEvent(guestSocket, "session-updated", (p) => p?.session?.id === sessionId, EVENT_MS);
    assert.equal(updated.session.participants[0].userId, guest.id);
    const entry = await nextEvent(agentSocket, "session-event", (e) => e?.kind === "invited", EVENT_MS);
    assertFields(entry, { sessionId, kind: "invited", agentId: guest.id, agentName: "Gus Guest" });

    const joined = await join(guestSocket, sessionId);
    assert.ok(Array.isArray(joined.notes), "a colleague's join carries notes");
    const written = await send(guestSocket, sessionId, "a colleague writes");
    await nextEvent(customerSocket, "new-message", (m) => m?.id === written.id, EVENT_MS);
    const note = await sendNote(guestSocket, sessionId, `${SECRET} from the guest`);
    await nextEvent(agentSocket, "new-note", (n) => n?.id === note.id, EVENT_MS);

    const left = await rest(baseUrl, guest.token, "DELETE", `/sessions/${sessionId}/participants/${guest.id}`);
    assert.equal(left.status, 200, JSON.stringify(left.body));
    assert.deepEqual(left.body.participants, []);
    await nextEvent(agentSocket, "session-event", (e) => e?.kind === "left" && e?.agentId === guest.id, EVENT_MS);
    assertFailedAck(
      await emitAck(guestSocket, "send-message", { sessionId, content: "still here?", clientMsgId: uid("g") }, EVENT_MS),
      "forbidden",
    );
    assertRestError(await rest(baseUrl, a.token, "DELETE", `/sessions/${sessionId}/participants/${guest.id}`), 404, "not_found");
    assertNoNote(customerSocket.log, "the customer's events");
  });
});

// ------------------------------------------- reactions and delivery positions

describe("reactions and delivery positions", () => {
  const face = (n) => String.fromCodePoint(0x1f600 + n);

  test("react: acked with the whole list, seen by the other side, idempotent, in join and REST history", { timeout: TEST_MS }, async () => {
    const { c, a, sessionId, customerSocket, agentSocket } = await activeSession();
    let agentSince = mark(agentSocket);
    const ack = await emitAck(customerSocket, "react", { sessionId, seq: 1, emoji: "👍", on: true }, EVENT_MS);
    assertOkAck(ack, "react ack");
    const thumbs = [{ emoji: "👍", count: 1, userIds: [c.id] }];
    assertFields(ack, { sessionId, seq: 1, reactions: thumbs }, "react ack");
    const live = await nextEvent(agentSocket, "message-reactions", (p) => p?.sessionId === sessionId, EVENT_MS, { since: agentSince });
    assert.deepEqual(live, { sessionId, seq: 1, reactions: thumbs });

    // The agent adds ❤️ and joins 👍: emoji in the order first used, users in the order they reacted
    // (each change in a later millisecond than the one before, so that time alone orders them).
    await nextMillisecond();
    assertOkAck(await emitAck(agentSocket, "react", { sessionId, seq: 1, emoji: "❤️", on: true }, EVENT_MS));
    await nextMillisecond();
    const both = await emitAck(agentSocket, "react", { sessionId, seq: 1, emoji: "👍", on: true }, EVENT_MS);
    const expected = [
      { emoji: "👍", count: 2, userIds: [c.id, a.id] },
      { emoji: "❤️", count: 1, userIds: [a.id] },
    ];
    assert.deepEqual(both.reactions, expected);
    await nextEvent(customerSocket, "message-reactions", (p) => p?.reactions?.[0]?.count === 2, EVENT_MS);

    // Reacting twice and taking back what was never given: same list, no event.
    const customerSince = mark(customerSocket);
    agentSince = mark(agentSocket);
    const again = await emitAck(customerSocket, "react", { sessionId, seq: 1, emoji: "👍", on: true }, EVENT_MS);
    assertOkAck(again, "repeated react ack");
    assert.deepEqual(again.reactions, expected);
    const never = await emitAck(customerSocket, "react", { sessionId, seq: 1, emoji: "🎉", on: false }, EVENT_MS);
    assertOkAck(never, "take-back of nothing");
    assert.deepEqual(never.reactions, expected);
    // A probe event that does change something comes after anything the repeats could have caused.
    const off = await emitAck(customerSocket, "react", { sessionId, seq: 1, emoji: "👍", on: false }, EVENT_MS);
    // 👍 now counts from the agent's use, after ❤️.
    const afterOff = [
      { emoji: "❤️", count: 1, userIds: [a.id] },
      { emoji: "👍", count: 1, userIds: [a.id] },
    ];
    assert.deepEqual(off.reactions, afterOff);
    await nextEvent(agentSocket, "message-reactions", (p) => p?.sessionId === sessionId, EVENT_MS, { since: agentSince });
    await nextEvent(customerSocket, "message-reactions", (p) => p?.sessionId === sessionId, EVENT_MS, { since: customerSince });
    assert.deepEqual(eventsOf(agentSocket, "message-reactions", agentSince), [{ sessionId, seq: 1, reactions: afterOff }]);
    assert.deepEqual(eventsOf(customerSocket, "message-reactions", customerSince), [{ sessionId, seq: 1, reactions: afterOff }]);

    // A later join and REST history carry them; messages without any carry [].
    await send(customerSocket, sessionId, "no reactions here");
    const rejoin = await connect(baseUrl, c.token);
    const joined = await join(rejoin, sessionId);
    assert.deepEqual(joined.messages.map((m) => [m.seq, m.reactions]), [[1, afterOff], [2, []]]);
    const history = await rest(baseUrl, c.token, "GET", `/sessions/${sessionId}/messages`);
    assert.equal(history.status, 200, JSON.stringify(history.body));
    assert.deepEqual(history.body.items.map((m) => [m.seq, m.reactions]), [[1, afterOff], [2, []]]);
  });

  test("react refuses a bad emoji, a missing message, outsiders, past the caps and on a closed session", { timeout: TEST_MS }, async () => {
    const { c, a, sessionId, customerSocket, agentSocket } = await activeSession();
    // Each socket has its own budget of 20: the shape checks use one of their own.
    const probe = await connect(baseUrl, c.token);
    for (const emoji of ["", "a", "👍👍", ":+1:", "©", "x".repeat(40), 7]) {
      assertFailedAck(await emitAck(probe, "react", { sessionId, seq: 1, emoji, on: true }, EVENT_MS), "invalid_payload");
    }
    assertFailedAck(await emitAck(probe, "react", { sessionId, seq: 1, emoji: "👍" }, EVENT_MS), "invalid_payload");
    assertFailedAck(await emitAck(probe, "react", { sessionId, seq: 1, emoji: "👍", on: "yes" }, EVENT_MS), "invalid_payload");
    // Flags, skin tones, keycaps and ZWJ sequences are one emoji each.
    for (const emoji of ["🇫🇷", "👍🏽", "1️⃣", "👩‍💻"]) {
      assertOkAck(await emitAck(probe, "react", { sessionId, seq: 1, emoji, on: true }, EVENT_MS), emoji);
      assertOkAck(await emitAck(probe, "react", { sessionId, seq: 1, emoji, on: false }, EVENT_MS), emoji);
    }
    assertFailedAck(await emitAck(probe, "react", { sessionId, seq: 2, emoji: "👍", on: true }, EVENT_MS), "not_found");
    assertFailedAck(await emitAck(probe, "react", { sessionId: randomUUID(), seq: 1, emoji: "👍", on: true }, EVENT_MS), "not_found");
    const colleague = agent("Pool Colleague");
    const colleagueSocket = await connect(baseUrl, colleague.token);
    await join(colleagueSocket, sessionId);
    assertFailedAck(await emitAck(colleagueSocket, "react", { sessionId, seq: 1, emoji: "👍", on: true }, EVENT_MS), "forbidden");

    // Ten of one user, then conflict; twenty different emoji, then conflict.
    for (let n = 0; n < 10; n += 1) {
      assertOkAck(await emitAck(customerSocket, "react", { sessionId, seq: 1, emoji: face(n), on: true }, EVENT_MS), `customer ${n}`);
    }
    assertFailedAck(await emitAck(customerSocket, "react", { sessionId, seq: 1, emoji: face(10), on: true }, EVENT_MS), "conflict");
    for (let n = 10; n < 20; n += 1) {
      assertOkAck(await emitAck(agentSocket, "react", { sessionId, seq: 1, emoji: face(n), on: true }, EVENT_MS), `agent ${n}`);
    }
    const admin = { id: uid("admin") };
    admin.token = token({ sub: admin.id, name: "Ada Admin", role: "admin" });
    const adminSocket = await connect(baseUrl, admin.token);
    assertFailedAck(await emitAck(adminSocket, "react", { sessionId, seq: 1, emoji: face(20), on: true }, EVENT_MS), "conflict");
    const joinedOne = await emitAck(adminSocket, "react", { sessionId, seq: 1, emoji: face(0), on: true }, EVENT_MS);
    assertOkAck(joinedOne, "an emoji already there");
    assert.equal(joinedOne.reactions.length, 20);
    assert.deepEqual(joinedOne.reactions[0], { emoji: face(0), count: 2, userIds: [customerSocket.hello.userId, admin.id] });

    const closed = await rest(baseUrl, a.token, "POST", `/sessions/${sessionId}/close`, {});
    assert.equal(closed.status, 200, JSON.stringify(closed.body));
    assertFailedAck(await emitAck(customerSocket, "react", { sessionId, seq: 1, emoji: face(0), on: false }, EVENT_MS), "session_closed");
  });

  test("mark-delivered moves forward only, is clamped, is seen by the other side and shows on join", { timeout: TEST_MS }, async () => {
    const { c, a, sessionId, customerSocket, agentSocket } = await activeSession();
    await send(agentSocket, sessionId, "second");
    await send(agentSocket, sessionId, "third");

    const agentSince = mark(agentSocket);
    const ack = await emitAck(customerSocket, "mark-delivered", { sessionId, upToSeq: 2 }, EVENT_MS);
    assertOkAck(ack, "mark-delivered ack");
    assertFields(ack, { sessionId, userId: c.id, role: "customer", upToSeq: 2 }, "mark-delivered ack");
    const delivered = await nextEvent(agentSocket, "messages-delivered", (p) => p?.sessionId === sessionId, EVENT_MS, { since: agentSince });
    assertFields(delivered, { sessionId, userId: c.id, role: "customer", upToSeq: 2 }, "messages-delivered");
    assertTimestamp(delivered.deliveredAt, "deliveredAt");

    // Backwards: the stored position, no event; past the last message: clamped.
    const back = await emitAck(customerSocket, "mark-delivered", { sessionId, upToSeq: 1 }, EVENT_MS);
    assertFields(back, { ok: true, upToSeq: 2 }, "backwards ack");
    const clamped = await emitAck(customerSocket, "mark-delivered", { sessionId, upToSeq: 99 }, EVENT_MS);
    assertFields(clamped, { ok: true, upToSeq: 3 }, "clamped ack");
    await nextEvent(agentSocket, "messages-delivered", (p) => p?.upToSeq === 3, EVENT_MS, { since: agentSince });
    assert.deepEqual(eventsOf(agentSocket, "messages-delivered", agentSince).map((p) => p.upToSeq), [2, 3]);

    // A pool agent who only reads the session may confirm too; outsiders may not.
    const colleague = agent("Pool Colleague");
    const colleagueSocket = await connect(baseUrl, colleague.token);
    await join(colleagueSocket, sessionId);
    assertFields(await emitAck(colleagueSocket, "mark-delivered", { sessionId, upToSeq: 3 }, EVENT_MS), { ok: true, role: "agent", upToSeq: 3 });
    const stranger = customer("Someone Else");
    const strangerSocket = await connect(baseUrl, stranger.token);
    assertFailedAck(await emitAck(strangerSocket, "mark-delivered", { sessionId, upToSeq: 1 }, EVENT_MS), "forbidden");
    assertFailedAck(await emitAck(customerSocket, "mark-delivered", { sessionId, upToSeq: -1 }, EVENT_MS), "invalid_payload");
    assertFailedAck(await emitAck(customerSocket, "mark-delivered", { sessionId }, EVENT_MS), "invalid_payload");

    const rejoin = await connect(baseUrl, a.token);
    const joined = await join(rejoin, sessionId);
    assert.deepEqual(
      joined.deliveryPositions.map((p) => [p.userId, p.role, p.upToSeq]).sort(),
      [[c.id, "customer", 3], [colleague.id, "agent", 3]].sort(),
    );
    assert.deepEqual(joined.readPositions, [], "delivery moves no read position");
  });
});

describe("files", () => {
  async function uploadFile(who, sessionId, name, contentType, bytes) {
    const url = `${routeUrl(baseUrl, who.token)}/api/chat/sessions/${sessionId}/attachments?name=${encodeURIComponent(name)}`;
    const response = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${who.token}`, "content-type": contentType },
      body: bytes,
      signal: AbortSignal.timeout(5000),
    });
    const body = await response.json();
    assert.equal(response.status, 201, `upload: ${JSON.stringify(body)}`);
    assertKeys(body, ["id", "sessionId", "name", "size", "contentType", "width", "height", "createdAt"], "Attachment");
    return body;
  }

  test("a message carries uploaded files to the other side, in joins and REST, and downloads whole", { timeout: TEST_MS }, async () => {
    const { c, a, sessionId, customerSocket, agentSocket } = await activeSession();
    const bytes = new TextEncoder().encode("Order 1234: the parcel never came.\n".repeat(40));
    const file = await uploadFile(c, sessionId, "Bestellung März.txt", "text/plain", bytes);
    assert.equal(file.name, "Bestellung März.txt");
    assert.equal(file.size, bytes.length);

    const clientMsgId = uid("files");
    const ack = await emitAck(customerSocket, "send-message", { sessionId, content: "", clientMsgId, attachmentIds: [file.id] }, EVENT_MS);
    assertOkAck(ack, "send-message with a file");
    assert.equal(ack.message.content, "");
    assert.deepEqual(ack.message.attachments, [file]);

    const live = await nextEvent(agentSocket, "new-message", (m) => m?.clientMsgId === clientMsgId, EVENT_MS);
    assert.deepEqual(live.attachments, [file]);
    const joined = await join(agentSocket, sessionId, ack.message.seq - 1);
    assert.deepEqual(joined.messages.map((m) => m.attachments), [[file]]);
    const page = await rest(baseUrl, a.token, "GET", `/sessions/${sessionId}/messages?afterSeq=${ack.message.seq - 1}`);
    assert.equal(page.status, 200);
    assert.deepEqual(page.body.items[0].attachments, [file]);

    const download = await fetch(`${routeUrl(baseUrl, a.token)}/api/chat/sessions/${sessionId}/attachments/${file.id}`, {
      headers: { authorization: `Bearer ${a.token}` },
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(download.status, 200);
    assert.equal(download.headers.get("x-content-type-options"), "nosniff");
    assert.match(download.headers.get("content-disposition") ?? "", /^attachment; filename\*=UTF-8''/);
    assert.deepEqual(new Uint8Array(await download.arrayBuffer()), bytes);

    // The same file again, in another message: refused, nothing stored.
    const again = await emitAck(customerSocket, "send-message", { sessionId, content: "once more", clientMsgId: uid("again"), attachmentIds: [file.id] }, EVENT_MS);
    assert.equal(again.ok, false);
    assert.equal(again.error.code, "invalid_payload");
    const after = await rest(baseUrl, a.token, "GET", `/sessions/${sessionId}/messages?afterSeq=${ack.message.seq}`);
    assert.deepEqual(after.body.items, []);
  });
});
