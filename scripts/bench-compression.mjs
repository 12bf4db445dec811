// What permessage-deflate costs and saves, measured with the stock
// socket.io-client (its `ws` offers the extension, as browsers do) against
// one running server: the server's VmRSS per idle connection, the bytes an
// idle connection moves (pings and pongs only) over a while, and the bytes
// and server CPU time of `join-session` replies of many messages. Bytes are
// counted at the client's TCP sockets (WebSocket frames and the HTTP
// upgrade; IP and TCP headers not included). Prints figures; asserts
// nothing. Run by scripts/bench-compression.sh, once per server setting.
//
// Usage: node scripts/bench-compression.mjs URL PID SECRET LABEL
// Environment: CONNECTIONS (2000), IDLE_SECONDS (60), MESSAGES (500),
//              JOINS (50), CONCURRENCY (100)

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

// The compatibility suite's packages (tests/compat, `npm ci` there).
const require = createRequire(new URL("../tests/compat/package.json", import.meta.url));
const { io } = require("socket.io-client");
const jwt = require("jsonwebtoken");

const [url, pidText, secret, label] = process.argv.slice(2);
if (!url || !pidText || !secret || !label) {
  console.error("usage: node scripts/bench-compression.mjs URL PID SECRET LABEL");
  process.exit(2);
}
const pid = Number(pidText);
const env = (name, fallback) => Number(process.env[name] ?? fallback);
const CONNECTIONS = env("CONNECTIONS", 2000);
const IDLE_SECONDS = env("IDLE_SECONDS", 60);
const MESSAGES = env("MESSAGES", 500);
const JOINS = env("JOINS", 50);
const CONCURRENCY = env("CONCURRENCY", 100);
const CLOCK_TICKS = 100; // USER_HZ on Linux

const run = `${Date.now().toString(36)}`;
const token = (sub, role = "customer", pools) =>
  jwt.sign({ sub, name: sub, role, ...(pools ? { pools } : {}) }, secret, { algorithm: "HS256", expiresIn: "2h" });

function rssKib() {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(line.split(/\s+/)[1]);
}

/** The server's user + system CPU time in seconds. */
function cpuSeconds() {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

const tcpOf = (socket) => socket.io.engine.transport.ws._socket;
const wireBytes = (sockets) =>
  sockets.reduce(
    (sum, s) => {
      const tcp = tcpOf(s);
      return { read: sum.read + tcp.bytesRead, written: sum.written + tcp.bytesWritten };
    },
    { read: 0, written: 0 },
  );

function open(sub) {
  return new Promise((resolve, reject) => {
    const socket = io(`${url}/chat`, {
      auth: { token: token(sub) },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
    });
    const timer = setTimeout(() => reject(new Error(`${sub}: no "connected" in time`)), 30_000);
    socket.once("connected", () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once("connect_error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

async function openMany(count) {
  const sockets = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = next++;
      sockets.push(await open(`deflate-idle-${run}-${n}`));
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return sockets;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** RSS once two samples a second apart differ by under 1%. */
async function settledRss() {
  let last = rssKib();
  for (let i = 0; i < 20; i++) {
    await sleep(1000);
    const now = rssKib();
    if (Math.abs(now - last) <= last * 0.01) return now;
    last = now;
  }
  return last;
}

async function rest(authToken, method, path, body) {
  const response = await fetch(`${url}/api/chat${path}`, {
    method,
    headers: { authorization: `Bearer ${authToken}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const parsed = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(parsed)}`);
  return parsed;
}

const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;

// ---------------------------------------------------------------- idle
const rssBefore = await settledRss();
const idle = await openMany(CONNECTIONS);
const rssAfter = await settledRss();
const extension = idle[0].io.engine.transport.ws.extensions || "none";
console.log(`[${label}] negotiated extension: ${extension}`);
console.log(
  `[${label}] ${idle.length} idle connections: server VmRSS ${kib(rssBefore * 1024)} -> ${kib(rssAfter * 1024)}, ` +
    `${(((rssAfter - rssBefore) * 1024) / idle.length).toFixed(0)} bytes per connection`,
);
const idleStart = wireBytes(idle);
await sleep(IDLE_SECONDS * 1000);
const idleEnd = wireBytes(idle);
const perConnection = (a, b) => ((b - a) / idle.length).toFixed(1);
console.log(
  `[${label}] idle for ${IDLE_SECONDS} s: ${perConnection(idleStart.read, idleEnd.read)} bytes server->client and ` +
    `${perConnection(idleStart.written, idleEnd.written)} bytes client->server per connection`,
);
for (const socket of idle) socket.close();

// ---------------------------------------------------------------- join
const customer = token(`deflate-join-${run}`);
const session = await rest(customer, "POST", "/sessions", { subject: "Compression bench" });
const phrases = [
  "Hello, my order has not arrived yet",
  "Could you tell me the tracking number?",
  "I ordered it on Monday and paid for express shipping",
  "The parcel service says the address could not be found",
  "Thanks, that helps a lot",
];
for (let n = 1; n <= MESSAGES; n++) {
  const content = `${phrases[n % phrases.length]} (${n})`;
  await rest(customer, "POST", `/sessions/${session.id}/messages`, { content, clientMsgId: `bench-${n}` });
}
const reader = await open(`deflate-join-${run}`);
const joinOnce = () => reader.timeout(10_000).emitWithAck("join-session", { sessionId: session.id, lastSeq: 0 });
const first = await joinOnce();
const replyJson = Buffer.byteLength(JSON.stringify(first));
const bytesBefore = wireBytes([reader]);
const cpuBefore = cpuSeconds();
for (let i = 0; i < JOINS; i++) await joinOnce();
const cpuAfter = cpuSeconds();
const bytesAfter = wireBytes([reader]);
console.log(
  `[${label}] join-session of ${first.messages.length} messages (hasMore ${first.hasMore}, ack JSON ${kib(replyJson)}; ` +
    `each join sends it twice, as event and ack): ${kib((bytesAfter.read - bytesBefore.read) / JOINS)} server->client ` +
    `per join, server CPU ${(((cpuAfter - cpuBefore) * 1000) / JOINS).toFixed(2)} ms per join (${JOINS} joins)`,
);
reader.close();
process.exit(0);
