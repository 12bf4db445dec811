// permessage-deflate with the stock socket.io-client in Node (the `ws`
// package offers the extension by default and compresses its own frames of
// 1 KiB and more): the extension is negotiated on the terms of
// docs/protocol.md ("Compression"), and a conversation with large messages
// and a large join reply reads exactly as it was written.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, afterEach, before, test } from "node:test";

import { closeAllSockets, connect, emitAck, nextEvent, rest, startServer, token } from "./server.mjs";

const EVENT_MS = 5000;
const MESSAGES = 20;

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

const uid = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** The `ws` WebSocket under a connected socket.io-client socket. */
function wsOf(socket) {
  const ws = socket.io.engine.transport.ws;
  assert.ok(ws, "the websocket transport is in use");
  return ws;
}

/** A long message, different for each n, that compresses well. */
const longContent = (n) => `message ${n}: ${"the order has not arrived yet, could you look at it? ".repeat(60)}`.slice(0, 3000);

test("socket.io-client negotiates permessage-deflate and chats with large messages", { timeout: 60_000 }, async () => {
  const customerId = uid("cust");
  const agentId = uid("agent");
  const customerToken = token({ sub: customerId, name: "Dee Flate", role: "customer" });
  const agentToken = token({ sub: agentId, name: "Ann Agent", role: "agent", pools: ["default"] });

  const customerSocket = await connect(baseUrl, customerToken, EVENT_MS);
  const agentSocket = await connect(baseUrl, agentToken, EVENT_MS);
  for (const socket of [customerSocket, agentSocket]) {
    const ws = wsOf(socket);
    assert.equal(ws.extensions, "permessage-deflate", "the extension is negotiated");
    // The server's terms: no context kept on either side.
    const params = ws._extensions?.["permessage-deflate"]?.params;
    if (params) {
      assert.equal(params.server_no_context_takeover, true);
      assert.equal(params.client_no_context_takeover, true);
    }
  }

  const created = await rest(baseUrl, customerToken, "POST", "/sessions", { subject: "Compression" });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const sessionId = created.body.id;
  const assigned = await rest(baseUrl, agentToken, "POST", `/sessions/${sessionId}/assign`, {});
  assert.equal(assigned.status, 200, JSON.stringify(assigned.body));
  for (const socket of [customerSocket, agentSocket]) {
    const ack = await emitAck(socket, "join-session", { sessionId }, EVENT_MS);
    assert.equal(ack.ok, true, JSON.stringify(ack));
  }

  // Large messages both ways: the client compresses what it sends, the
  // server what it pushes, and every byte arrives as written.
  for (let n = 1; n <= MESSAGES; n++) {
    const [from, to] = n % 2 ? [customerSocket, agentSocket] : [agentSocket, customerSocket];
    const content = longContent(n);
    const clientMsgId = uid("cm");
    const ack = await emitAck(from, "send-message", { sessionId, content, clientMsgId }, EVENT_MS);
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.equal(ack.message.content, content);
    const seen = await nextEvent(to, "new-message", (m) => m?.clientMsgId === clientMsgId, EVENT_MS);
    assert.equal(seen.content, content);
  }

  // A late joiner gets every message in one large join reply.
  const late = await connect(baseUrl, customerToken, EVENT_MS);
  assert.equal(wsOf(late).extensions, "permessage-deflate");
  const joined = await emitAck(late, "join-session", { sessionId, lastSeq: 0 }, EVENT_MS);
  assert.equal(joined.ok, true, JSON.stringify(joined));
  const contents = joined.messages.map((m) => m.content).filter((c) => c.startsWith("message "));
  assert.deepEqual(contents, Array.from({ length: MESSAGES }, (_, i) => longContent(i + 1)));
});
