// Helpers for the compatibility tests: start and stop the support-chat binary,
// sign test tokens, open Socket.IO client sockets on the /chat namespace,
// wait for and record server events, and call the REST API.
//
// The binary comes from CHAT_SERVER_BIN, or target/debug/support-chat of this
// repository. Each server gets a fresh data directory and a random JWT secret.
//
// Against a running cluster instead: CHAT_BASE_URLS=url1,url2 and
// CHAT_JWT_SECRET=<the cluster's secret>. Customers then talk to the first
// gateway and agents and admins to the second, so every flow crosses pods.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import jwt from "jsonwebtoken";
import { io } from "socket.io-client";

export const DEFAULT_BIN = fileURLToPath(
  new URL("../../target/debug/support-chat", import.meta.url),
);

const LISTENING = /listening on (http:\/\/\S+)/;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

/** The secret every test token is signed with; the server is given the same. */
export const SECRET = process.env.CHAT_JWT_SECRET || randomBytes(32).toString("hex");

/** Gateways of an external cluster, if the suite runs against one. */
const CLUSTER_URLS = (process.env.CHAT_BASE_URLS || "")
  .split(",")
  .map((url) => url.trim().replace(/\/+$/, ""))
  .filter(Boolean);

/**
 * The gateway a caller talks to: `baseUrl` for a single server; in a
 * cluster, the first gateway for customers (and anonymous callers) and the
 * second for agents and admins.
 */
export function routeUrl(baseUrl, authToken) {
  if (CLUSTER_URLS.length === 0) return baseUrl;
  const claims = typeof authToken === "string" ? jwt.decode(authToken) : null;
  const staff = claims && typeof claims === "object" && claims.role !== "customer";
  return CLUSTER_URLS[staff ? 1 % CLUSTER_URLS.length : 0];
}

/**
 * Starts the server and resolves with `{ baseUrl, stop }` once it prints its
 * listening line. Rejects if it exits or stays silent first, with its stderr.
 */
export async function startServer({ bin = process.env.CHAT_SERVER_BIN || DEFAULT_BIN, env = {} } = {}) {
  if (CLUSTER_URLS.length > 0) {
    return { baseUrl: CLUSTER_URLS[0], process: null, stderr: () => "", async stop() {} };
  }
  const dataDir = await mkdtemp(join(tmpdir(), "support-chat-compat-"));
  const childEnv = {
    ...process.env,
    PORT: "0",
    CHAT_DATA_DIR: dataDir,
    JWT_SECRET: SECRET,
    RATE_LIMIT_PER_SEC: "0",
    RUST_LOG: "warn",
    ...env,
  };
  // Standalone mode: no backplane, no shared database, no separate admin port.
  for (const name of ["REDIS_URL", "DATABASE_URL", "ADMIN_PORT"]) {
    if (!(name in env)) delete childEnv[name];
  }

  let child;
  try {
    child = spawn(bin, [], { env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }

  let stdout = "";
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  child.stdout.setEncoding("utf8");

  // Settles when the process exits, or at once if it could not be started.
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, error });
    });
  });

  let baseUrl;
  try {
    baseUrl = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${bin} did not print its listening line within ${START_TIMEOUT_MS} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
      }, START_TIMEOUT_MS);
      child.stdout.on("data", (chunk) => {
        stdout += chunk;
        const match = LISTENING.exec(stdout);
        if (match) {
          clearTimeout(timer);
          resolve(match[1].replace(/\/+$/, ""));
        }
      });
      exited.then(({ code, signal, error }) => {
        clearTimeout(timer);
        if (error) reject(new Error(`could not start ${bin}: ${error.message}`));
        else reject(new Error(`${bin} exited (code ${code}, signal ${signal}) before listening\nstdout:\n${stdout}\nstderr:\n${stderr}`));
      });
    });
  } catch (err) {
    await stopChild(child, exited);
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  // Keep draining stdout so that a chatty server never blocks on a full pipe.
  child.stdout.resume();
  // Never leave the server behind if the test process ends without stopping it.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  exited.then(() => process.off("exit", killOnExit));

  return {
    baseUrl,
    process: child,
    stderr: () => stderr,
    async stop() {
      const result = await stopChild(child, exited);
      await rm(dataDir, { recursive: true, force: true });
      return result;
    },
  };
}

/** SIGTERM, then SIGKILL if the process has not exited in time. */
async function stopChild(child, exited) {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return exited;
  child.kill("SIGTERM");
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => resolve("late"), STOP_TIMEOUT_MS);
  });
  if ((await Promise.race([exited, late])) === "late") child.kill("SIGKILL");
  clearTimeout(timer);
  return exited;
}

/**
 * An HS256 token signed with SECRET. `name` and `pools` are left out of the
 * claims when not given; `expiresIn` is seconds or a string such as "1h"
 * (negative seconds make an expired token).
 */
export function token({ sub, name, role = "customer", pools, expiresIn = "1h", secret = SECRET } = {}) {
  const claims = { sub, role };
  if (name !== undefined) claims.name = name;
  if (pools !== undefined) claims.pools = pools;
  return jwt.sign(claims, secret, { algorithm: "HS256", expiresIn });
}

const openSockets = new Set();

/**
 * Opens a socket on `${baseUrl}/chat`. Every event the server sends to it is
 * recorded, from the start, in `socket.log` as `{ name, payload }` in arrival
 * order. `socket.hello` holds the `connected` payload.
 */
function openSocket(baseUrl, authToken) {
  const socket = io(`${routeUrl(baseUrl, authToken)}/chat`, {
    auth: authToken === undefined ? {} : { token: authToken },
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
  });
  socket.log = [];
  socket.onAny((name, ...args) => {
    socket.log.push({ name, payload: args[0] });
  });
  openSockets.add(socket);
  socket.on("disconnect", () => openSockets.delete(socket));
  return socket;
}

/** Resolves with a socket once the server has sent it `connected`. */
export function connect(baseUrl, authToken, timeoutMs = 3000) {
  const socket = openSocket(baseUrl, authToken);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error(`no "connected" event within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connected", (payload) => {
      clearTimeout(timer);
      socket.hello = payload;
      resolve(socket);
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      socket.close();
      openSockets.delete(socket);
      reject(err);
    });
  });
}

/**
 * Resolves with the connect_error a connection attempt gets; rejects if the
 * socket connects instead.
 */
export function connectError(baseUrl, authToken, timeoutMs = 3000) {
  const socket = openSocket(baseUrl, authToken);
  return new Promise((resolve, reject) => {
    const done = (fn, value) => {
      clearTimeout(timer);
      socket.close();
      openSockets.delete(socket);
      fn(value);
    };
    const timer = setTimeout(() => done(reject, new Error(`no connect_error within ${timeoutMs} ms`)), timeoutMs);
    socket.once("connect_error", (err) => done(resolve, err));
    socket.once("connect", () => done(reject, new Error("the socket was accepted")));
  });
}

/** Closes every socket the helpers opened and that is still open. */
export function closeAllSockets() {
  for (const socket of openSockets) socket.close();
  openSockets.clear();
}

/** Emits `event` with an acknowledgement and resolves with the ack payload. */
export function emitAck(socket, event, payload, timeoutMs = 3000) {
  return socket.timeout(timeoutMs).emitWithAck(event, payload);
}

/** The current length of the socket's event log: a mark to wait from. */
export function mark(socket) {
  return socket.log.length;
}

/** Payloads of the recorded events named `name`, from index `since` on. */
export function eventsOf(socket, name, since = 0) {
  return socket.log.slice(since).filter((e) => e.name === name).map((e) => e.payload);
}

/**
 * Resolves with the payload of the first `name` event that satisfies
 * `predicate`, looking at the socket's log from index `since` (default 0: the
 * whole log, so an event that came before the call is found too) and then at
 * events as they arrive. Resolves with `{ payload, index }` when `withIndex`.
 */
export function nextEvent(socket, name, predicate = () => true, timeoutMs = 3000, { since = 0, withIndex = false } = {}) {
  const matches = (e) => e.name === name && predicate(e.payload);
  const wrap = (index) => (withIndex ? { payload: socket.log[index].payload, index } : socket.log[index].payload);
  for (let i = since; i < socket.log.length; i++) {
    if (matches(socket.log[i])) return Promise.resolve(wrap(i));
  }
  return new Promise((resolve, reject) => {
    const listener = () => {
      const index = socket.log.length - 1;
      if (index >= since && matches(socket.log[index])) {
        clearTimeout(timer);
        socket.offAny(listener);
        resolve(wrap(index));
      }
    };
    const timer = setTimeout(() => {
      socket.offAny(listener);
      const seen = socket.log.slice(since).map((e) => e.name).join(", ") || "nothing";
      reject(new Error(`no matching "${name}" event within ${timeoutMs} ms (seen: ${seen})`));
    }, timeoutMs);
    // Registered after the recorder, so the event is already in the log.
    socket.onAny(listener);
  });
}

/** Calls the REST API; resolves with `{ status, body }` (body parsed as JSON when it is JSON). */
export async function rest(baseUrl, authToken, method, path, body) {
  const headers = {};
  if (authToken !== undefined) headers.authorization = `Bearer ${authToken}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(`${routeUrl(baseUrl, authToken)}/api/chat${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
  const text = await response.text();
  let parsed = text;
  try {
    parsed = text === "" ? null : JSON.parse(text);
  } catch {
    // Not JSON: keep the text, which the assertions will show.
  }
  return { status: response.status, body: parsed };
}
