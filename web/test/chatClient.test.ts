// The connection manager against a scripted fake socket: rejoin with
// lastSeq, outbox flushed in order with the same clientMsgId after a
// reconnect, nothing doubled when an unacknowledged message was in fact
// stored, the outbox surviving a reload, giving up and retrying by hand.

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { WebSocketConfig } from '../src/config/websocket.config';
import type { Message } from '../src/lib/types';
import { TokenSource } from '../src/lib/tokenSource';
import { jwt, message, session } from './fixtures';

type Ack = (err: Error | null, response?: unknown) => void;
interface Sent {
  event: string;
  payload: Record<string, unknown>;
  ack: Ack | undefined;
}

class FakeSocket {
  handlers = new Map<string, ((...args: unknown[]) => void)[]>();
  connected = false;
  sent: Sent[] = [];
  connect = vi.fn(() => this);
  io = { engine: { close: vi.fn() }, removeAllListeners: vi.fn() };
  constructor(readonly options: { auth?: unknown } = {}) {}

  on(event: string, fn: (...args: unknown[]) => void) {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), fn]);
    return this;
  }
  removeAllListeners() {
    this.handlers.clear();
  }
  disconnect() {
    this.connected = false;
  }
  emit(event: string, payload: Record<string, unknown>, ack?: Ack) {
    this.sent.push({ event, payload, ack });
    return this;
  }
  timeout() {
    return { emit: (event: string, payload: Record<string, unknown>, ack?: Ack) => this.emit(event, payload, ack) };
  }
  get volatile() {
    return { emit: (event: string, payload: Record<string, unknown>) => this.emit(event, payload) };
  }
  fire(event: string, ...args: unknown[]) {
    for (const fn of this.handlers.get(event) ?? []) fn(...args);
  }
  // What the server does:
  accept() {
    this.connected = true;
    this.fire('connect');
  }
  drop() {
    this.connected = false;
    this.fire('disconnect', 'transport close');
  }
  refuse(message = 'xhr poll error') {
    this.fire('connect_error', Object.assign(new Error(message), { data: { code: 'token_expired' } }));
  }
  take(event: string): Sent[] {
    const found = this.sent.filter((s) => s.event === event);
    this.sent = this.sent.filter((s) => s.event !== event);
    return found;
  }
}

let socket: FakeSocket;
vi.mock('socket.io-client', () => ({
  io: vi.fn((_url: string, options: { auth?: unknown }) => {
    socket = new FakeSocket(options);
    return socket;
  }),
}));

const { ChatClient } = await import('../src/chat/ChatClient');

const config: WebSocketConfig = {
  serverUrl: 'http://chat.test',
  namespace: '/chat',
  transports: ['websocket'],
  reconnection: { enabled: true, attempts: 3, delay: 1000, maxDelay: 5000 },
  timeouts: { connection: 10000, typing: 3000 },
};

class MemoryStorage {
  data = new Map<string, string>();
  getItem(k: string) {
    return this.data.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.data.set(k, v);
  }
  removeItem(k: string) {
    this.data.delete(k);
  }
}

const user = { userId: 'cust', name: 'Carla', role: 'customer' as const, pools: [] };
const agent = (seq: number) => message(seq, { senderId: 'alice', senderName: 'Alice', senderRole: 'agent', clientMsgId: null });

function makeClient(storage = new MemoryStorage()) {
  const client = new ChatClient({ token: 't', user, config, storage: storage as unknown as Storage });
  client.start();
  return { client, storage };
}

function answerJoin(messages: Message[], lastSeq = messages.at(-1)?.seq ?? 0) {
  const joins = socket.take('join-session');
  expect(joins).toHaveLength(1);
  joins[0]!.ack!(null, { ok: true, session: session({ status: 'active', lastSeq }), messages, hasMore: false, readPositions: [] });
  return joins[0]!.payload;
}

describe('ChatClient', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('rejoins with lastSeq and sends what was written offline, in order, with its clientMsgId', () => {
    const { client } = makeClient();
    socket.accept();
    const stop = client.watch('s1');
    expect(answerJoin([message(1), agent(2)])).toEqual({ sessionId: 's1' });

    socket.drop();
    expect(client.getConnection().status).toBe('reconnecting');
    const first = client.sendMessage('s1', 'written offline')!;
    const second = client.sendMessage('s1', 'me too')!;
    expect(socket.take('send-message')).toEqual([]);
    expect(client.getSessionState('s1').outbox.map((e) => e.state)).toEqual(['queued', 'queued']);

    vi.advanceTimersByTime(1000);
    expect(socket.connect).toHaveBeenCalledTimes(2);
    socket.accept();
    expect(answerJoin([agent(3)], 3)).toEqual({ sessionId: 's1', lastSeq: 2 });

    // One at a time, oldest first.
    let sends = socket.take('send-message');
    expect(sends.map((s) => s.payload)).toEqual([{ sessionId: 's1', content: 'written offline', clientMsgId: first }]);
    sends[0]!.ack!(null, { ok: true, message: message(4, { content: 'written offline', clientMsgId: first }) });
    sends = socket.take('send-message');
    expect(sends.map((s) => s.payload.clientMsgId)).toEqual([second]);
    sends[0]!.ack!(null, { ok: true, message: message(5, { content: 'me too', clientMsgId: second }) });
    // The live echo of a stored message changes nothing.
    socket.fire('new-message', message(5, { content: 'me too', clientMsgId: second }));

    const state = client.getSessionState('s1');
    expect(state.messages.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(state.outbox).toEqual([]);
    stop();
    client.stop();
  });

  it('resends an unacknowledged message with the same clientMsgId, or drops it if the catch-up shows it stored', () => {
    const { client } = makeClient();
    socket.accept();
    client.watch('s1');
    answerJoin([message(1)]);
    const a = client.sendMessage('s1', 'lost ack')!;
    expect(socket.take('send-message').map((s) => s.payload.clientMsgId)).toEqual([a]);
    socket.drop(); // the ack never comes
    expect(client.getSessionState('s1').outbox[0]!.state).toBe('queued');

    vi.advanceTimersByTime(1000);
    socket.accept();
    answerJoin([], 1); // not stored: resent as it was
    const resent = socket.take('send-message');
    expect(resent.map((s) => s.payload.clientMsgId)).toEqual([a]);

    const b = client.sendMessage('s1', 'stored before the drop');
    expect(b).not.toBeNull();
    resent[0]!.ack!(null, { ok: true, message: message(2, { clientMsgId: a }) });
    const inFlight = socket.take('send-message');
    expect(inFlight.map((s) => s.payload.clientMsgId)).toEqual([b]);
    socket.drop();
    vi.advanceTimersByTime(1000);
    socket.accept();
    // The catch-up already holds it: nothing is sent again.
    answerJoin([message(3, { clientMsgId: b })]);
    expect(socket.take('send-message')).toEqual([]);
    expect(client.getSessionState('s1').messages.map((m) => m.clientMsgId)).toEqual(['c1', a, b]);
    client.stop();
  });

  it('keeps the outbox across a reload and flushes it on the next connection', () => {
    const storage = new MemoryStorage();
    const first = makeClient(storage);
    const id = first.client.sendMessage('s1', 'typed before closing the tab')!;
    first.client.stop();
    expect(storage.data.size).toBe(1);

    const second = makeClient(storage);
    socket.accept();
    second.client.watch('s1');
    expect(second.client.getSessionState('s1').outbox.map((e) => e.clientMsgId)).toEqual([id]);
    answerJoin([]);
    expect(socket.take('send-message').map((s) => s.payload.clientMsgId)).toEqual([id]);
    second.client.stop();
  });

  it('marks a message failed on a final refusal and keeps the others going', () => {
    const { client } = makeClient();
    socket.accept();
    client.watch('s1');
    answerJoin([]);
    client.sendMessage('s1', 'one');
    client.sendMessage('s1', 'two');
    const [one] = socket.take('send-message');
    one!.ack!(null, { ok: false, error: { code: 'invalid_payload', message: 'bad' } });
    const [two] = socket.take('send-message');
    expect(two!.payload.content).toBe('two');
    expect(client.getSessionState('s1').outbox.map((e) => e.state)).toEqual(['failed', 'sending']);
    client.stop();
  });

  it('retries later after a rate limit, with the same clientMsgId', () => {
    const { client } = makeClient();
    socket.accept();
    client.watch('s1');
    answerJoin([]);
    const id = client.sendMessage('s1', 'hi');
    socket.take('send-message')[0]!.ack!(null, { ok: false, error: { code: 'rate_limited', message: 'slow down' } });
    expect(socket.take('send-message')).toEqual([]);
    vi.advanceTimersByTime(2000);
    expect(socket.take('send-message').map((s) => s.payload.clientMsgId)).toEqual([id]);
    client.stop();
  });

  it('gives up after the last attempt and offers a manual retry', () => {
    const { client } = makeClient();
    socket.accept();
    socket.drop();
    for (let i = 0; i < 3; i++) {
      vi.advanceTimersByTime(5000);
      socket.refuse();
    }
    expect(client.getConnection()).toMatchObject({ status: 'failed', attempt: 3 });
    const calls = socket.connect.mock.calls.length;
    vi.advanceTimersByTime(60_000);
    expect(socket.connect.mock.calls.length).toBe(calls);
    client.retryConnection();
    expect(socket.connect.mock.calls.length).toBe(calls + 1);
    expect(client.getConnection().status).toBe('reconnecting');
    socket.accept();
    expect(client.getConnection().status).toBe('connected');
    client.stop();
  });

  it('stops for good when the server refuses the token', () => {
    const { client } = makeClient();
    socket.refuse('unauthorized');
    expect(client.getConnection().status).toBe('unauthorized');
    vi.advanceTimersByTime(60_000);
    expect(socket.connect).toHaveBeenCalledTimes(1);
    client.stop();
  });

  it('fills a gap in live messages over REST', async () => {
    vi.useRealTimers();
    // The first join also asks for the session's timeline entries (GET …/events).
    const fetchMock = vi.fn(async (url: string) =>
      String(url).includes('/events')
        ? new Response(JSON.stringify({ items: [] }), { status: 200 })
        : new Response(JSON.stringify({ items: [message(2), message(3)], hasMore: false }), { status: 200 }),
    );
    vi.stubGlobal('fetch', fetchMock);
    const { client } = makeClient();
    socket.accept();
    client.watch('s1');
    answerJoin([message(1)]);
    socket.fire('new-message', message(4));
    await vi.waitFor(() => expect(client.getSessionState('s1').messages.map((m) => m.seq)).toEqual([1, 2, 3, 4]));
    const urls = fetchMock.mock.calls.map((call) => String((call as unknown as [string])[0]));
    expect(urls.filter((u) => u.includes('/messages'))).toEqual([expect.stringContaining('/api/chat/sessions/s1/messages?afterSeq=1&limit=200')]);
    expect(urls.filter((u) => u.includes('/events'))).toEqual([expect.stringContaining('/api/chat/sessions/s1/events')]);
    vi.unstubAllGlobals();
    client.stop();
  });
});

describe('ChatClient and the token lifetime', () => {
  const NOW = 1_800_000_000_000;
  const inSeconds = (s: number) => Math.floor(Date.now() / 1000) + s;
  const settle = () => vi.advanceTimersByTimeAsync(0);

  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(NOW);
  });
  afterEach(() => vi.useRealTimers());

  function clientWith(tokens: TokenSource) {
    const client = new ChatClient({ token: tokens.token, tokens, user, config, storage: null });
    const errors: unknown[] = [];
    client.on('server-error', (e) => errors.push(e));
    client.start();
    return { client, errors };
  }

  /** What the socket's auth function hands over, as socket.io-client calls it on each (re)connect. */
  async function authToken(): Promise<unknown> {
    const auth = socket.options.auth;
    expect(typeof auth).toBe('function');
    let data: unknown;
    (auth as (cb: (d: unknown) => void) => void)((d) => (data = d));
    await settle();
    return (data as { token?: unknown } | undefined)?.token;
  }

  it('connects with a function auth that gives the current token, or a new one when it is about to expire', async () => {
    const first = jwt({ sub: 'cust', exp: inSeconds(3600), iat: inSeconds(0) });
    const second = jwt({ sub: 'cust', exp: inSeconds(7200), iat: inSeconds(3590) });
    const mint = vi.fn(async () => second);
    const { client } = clientWith(new TokenSource({ token: first, mint }));
    expect(await authToken()).toBe(first);
    expect(mint).not.toHaveBeenCalled();
    vi.setSystemTime(NOW + 3590 * 1000); // 10 s left
    expect(await authToken()).toBe(second);
    expect(mint).toHaveBeenCalledTimes(1);
    client.stop();
  });

  it('answers token-expiring with refresh-token and a new token, and goes on', async () => {
    const first = jwt({ sub: 'cust', exp: inSeconds(70), iat: inSeconds(0) });
    const second = jwt({ sub: 'cust', exp: inSeconds(3600), iat: inSeconds(10) });
    const mint = vi.fn(async () => second);
    const tokens = new TokenSource({ token: first, mint });
    const { client, errors } = clientWith(tokens);
    const refreshed = vi.fn();
    client.on('token-refreshed', refreshed);
    socket.accept();
    vi.setSystemTime(NOW + 10_000);
    socket.fire('token-expiring', { expiresAt: new Date(NOW + 70_000).toISOString() });
    await settle();
    expect(mint).toHaveBeenCalledTimes(1);
    const [refresh, ...more] = socket.take('refresh-token');
    expect(more).toEqual([]);
    expect(refresh!.payload).toEqual({ token: second });
    refresh!.ack!(null, { ok: true, expiresAt: new Date(NOW + 3600_000).toISOString() });
    expect(refreshed).toHaveBeenCalledTimes(1);
    expect(tokens.token).toBe(second);
    expect(socket.sent).toEqual([]);
    expect(client.getConnection().status).toBe('connected');
    // The original expiry passes: nothing happens, and a reconnect would use the new token.
    vi.advanceTimersByTime(120_000);
    expect(client.getConnection().status).toBe('connected');
    expect(await authToken()).toBe(second);
    expect(errors).toEqual([]);
    client.stop();
  });

  it('lets a connection whose refresh failed expire quietly, and reconnects with a fresh token', async () => {
    const first = jwt({ sub: 'cust', exp: inSeconds(70), iat: inSeconds(0) });
    const second = jwt({ sub: 'cust', exp: inSeconds(3600), iat: inSeconds(70) });
    const mint = vi.fn().mockRejectedValueOnce(new Error('busy')).mockResolvedValue(second);
    const { client, errors } = clientWith(new TokenSource({ token: first, mint }));
    socket.accept();
    socket.fire('token-expiring', { expiresAt: new Date(NOW + 70_000).toISOString() });
    await settle();
    expect(socket.take('refresh-token')).toEqual([]); // the mint failed: nothing to send

    vi.setSystemTime(NOW + 70_000);
    socket.fire('error', { code: 'token_expired', message: 'the token has expired; reconnect with a fresh one' });
    socket.drop(); // the server closes the transport
    expect(errors).toEqual([]); // no error shown for it
    expect(client.getConnection().status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(socket.connect).toHaveBeenCalledTimes(2);
    expect(await authToken()).toBe(second);
    socket.accept();
    expect(client.getConnection().status).toBe('connected');
    client.stop();
  });

  it('sends nothing when the refresh is refused, and the reconnect still gets a new token', async () => {
    const first = jwt({ sub: 'cust', exp: inSeconds(70), iat: inSeconds(0) });
    const second = jwt({ sub: 'cust', exp: inSeconds(3600), iat: inSeconds(0) });
    const { client } = clientWith(new TokenSource({ token: first, mint: async () => second }));
    socket.accept();
    socket.fire('token-expiring', { expiresAt: new Date(NOW + 70_000).toISOString() });
    await settle();
    socket.take('refresh-token')[0]!.ack!(null, { ok: false, error: { code: 'rate_limited', message: 'slow down' } });
    expect(socket.sent).toEqual([]);
    expect(client.getConnection().status).toBe('connected');
    client.stop();
  });

  it('shows "session expired" for a token that cannot be renewed, and does not loop', async () => {
    const pasted = jwt({ sub: 'cust', exp: inSeconds(70), iat: inSeconds(0) });
    const { client, errors } = clientWith(new TokenSource({ token: pasted }));
    socket.accept();
    socket.fire('token-expiring', { expiresAt: new Date(NOW + 70_000).toISOString() });
    await settle();
    expect(socket.take('refresh-token')).toEqual([]);
    vi.setSystemTime(NOW + 70_000);
    socket.fire('error', { code: 'token_expired', message: 'expired' });
    socket.drop();
    expect(errors).toEqual([]);
    expect(client.getConnection()).toMatchObject({ status: 'unauthorized', lastError: 'Your session has expired.' });
    vi.advanceTimersByTime(60_000);
    expect(socket.connect).toHaveBeenCalledTimes(1);
    client.retryConnection();
    expect(socket.connect).toHaveBeenCalledTimes(1);
    client.stop();
  });

  it('does not even connect with an expired token that cannot be renewed', () => {
    const { client } = clientWith(new TokenSource({ token: jwt({ sub: 'cust', exp: inSeconds(-1) }) }));
    expect(socket.connect).not.toHaveBeenCalled();
    expect(client.getConnection()).toMatchObject({ status: 'unauthorized', lastError: 'Your session has expired.' });
    client.stop();
  });

  it('renews once after the server refuses an expired renewable token, then gives up', async () => {
    const first = jwt({ sub: 'cust', exp: inSeconds(3600) });
    const mint = vi.fn(async () => first); // keeps giving a token the server refuses
    const { client } = clientWith(new TokenSource({ token: first, mint }));
    socket.refuse('unauthorized');
    expect(client.getConnection().status).toBe('reconnecting');
    vi.advanceTimersByTime(1000);
    expect(socket.connect).toHaveBeenCalledTimes(2);
    socket.refuse('unauthorized');
    expect(client.getConnection().status).toBe('unauthorized');
    vi.advanceTimersByTime(60_000);
    expect(socket.connect).toHaveBeenCalledTimes(2);
    client.stop();
  });
});

describe('ChatClient: delivery, reactions, notes and attachments', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('confirms arrivals with mark-delivered by itself, batched with the highest seq, never for its own messages', async () => {
    const { client } = makeClient();
    socket.accept();
    client.watch('s1');
    const joins = socket.take('join-session');
    joins[0]!.ack!(null, {
      ok: true,
      session: session({ status: 'active', lastSeq: 2 }),
      messages: [agent(1), message(2)],
      hasMore: false,
      readPositions: [],
      deliveryPositions: [{ userId: 'cust', role: 'customer', upToSeq: 0 }],
    });
    await vi.advanceTimersByTimeAsync(0);
    // Agent's message 1 arrived with the join: confirmed at once.
    expect(socket.take('mark-delivered').map((s) => s.payload)).toEqual([{ sessionId: 's1', upToSeq: 1 }]);
    socket.fire('new-message', agent(3));
    socket.fire('new-message', agent(4));
    socket.fire('new-message', message(5)); // mine: nothing to confirm
    expect(socket.take('mark-delivered')).toEqual([]);
    await vi.advanceTimersByTimeAsync(500);
    const batch = socket.take('mark-delivered');
    expect(batch.map((s) => s.payload)).toEqual([{ sessionId: 's1', upToSeq: 4 }]);
    batch[0]!.ack!(null, { ok: true, sessionId: 's1', userId: 'cust', role: 'customer', upToSeq: 4 });
    expect(client.getSessionState('s1').deliveryPositions).toEqual([{ userId: 'cust', role: 'customer', upToSeq: 4 }]);
    // Someone else's delivery moves the ticks on my message 5.
    socket.fire('messages-delivered', { sessionId: 's1', userId: 'alice', role: 'agent', upToSeq: 5, deliveredAt: new Date().toISOString() });
    expect(client.getSessionState('s1').deliveryPositions.find((p) => p.userId === 'alice')?.upToSeq).toBe(5);
    client.stop();
  });

  it('sends mark-delivered again after the server refused it for its budget, not after other refusals', async () => {
    const { client } = makeClient();
    socket.accept();
    client.watch('s1');
    answerJoin([agent(1)]);
    await vi.advanceTimersByTimeAsync(0);
    const first = socket.take('mark-delivered');
    expect(first.map((s) => s.payload)).toEqual([{ sessionId: 's1', upToSeq: 1 }]);
    first[0]!.ack!(null, { ok: false, error: { code: 'rate_limited', message: 'too many' } });
    await vi.advanceTimersByTimeAsync(500);
    const again = socket.take('mark-delivered');
    expect(again.map((s) => s.payload)).toEqual([{ sessionId: 's1', upToSeq: 1 }]);
    socket.fire('new-message', agent(2));
    await vi.advanceTimersByTimeAsync(500);
    const next = socket.take('mark-delivered');
    expect(next.map((s) => s.payload)).toEqual([{ sessionId: 's1', upToSeq: 2 }]);
    next[0]!.ack!(null, { ok: false, error: { code: 'forbidden', message: 'no' } });
    await vi.advanceTimersByTimeAsync(5_000);
    expect(socket.take('mark-delivered')).toEqual([]);
    client.stop();
  });

  it('sends react with on true/false, shows it at once and keeps what the server answers; live lists replace it', async () => {
    const { client } = makeClient();
    socket.accept();
    client.watch('s1');
    answerJoin([agent(1)]);
    const done = client.react('s1', 1, '👍', true);
    const sent = socket.take('react');
    expect(sent.map((s) => s.payload)).toEqual([{ sessionId: 's1', seq: 1, emoji: '👍', on: true }]);
    expect(client.getSessionState('s1').messages[0]!.reactions).toEqual([{ emoji: '👍', count: 1, userIds: ['cust'] }]);
    sent[0]!.ack!(null, { ok: true, sessionId: 's1', seq: 1, reactions: [{ emoji: '👍', count: 2, userIds: ['alice', 'cust'] }] });
    await expect(done).resolves.toEqual([{ emoji: '👍', count: 2, userIds: ['alice', 'cust'] }]);
    socket.fire('message-reactions', { sessionId: 's1', seq: 1, reactions: [] });
    expect(client.getSessionState('s1').messages[0]!.reactions).toEqual([]);
    // A refusal puts the list back as it was.
    const refused = client.react('s1', 1, '🎉', true);
    socket.take('react')[0]!.ack!(null, { ok: false, error: { code: 'conflict', message: 'too many' } });
    await expect(refused).rejects.toThrow('too many');
    expect(client.getSessionState('s1').messages[0]!.reactions).toEqual([]);
    client.stop();
  });

  it('sends attachmentIds and internal, allows a message of files only, and keeps a stored note apart from the messages', () => {
    const staff = new ChatClient({ token: 't', user: { userId: 'alice', name: 'Alice', role: 'agent', pools: ['default'] }, config, storage: null });
    staff.start();
    socket.accept();
    staff.watch('s1');
    answerJoin([message(1)]);
    const file = { id: 'f1', sessionId: 's1', name: 'a.png', size: 3, contentType: 'image/png', width: 1, height: 1, createdAt: new Date(0).toISOString() };
    const withFile = staff.sendMessage('s1', '  ', { attachments: [file] })!;
    let sends = socket.take('send-message');
    expect(sends.map((s) => s.payload)).toEqual([{ sessionId: 's1', content: '', clientMsgId: withFile, attachmentIds: ['f1'] }]);
    sends[0]!.ack!(null, { ok: true, message: message(2, { senderId: 'alice', content: '', clientMsgId: withFile, attachments: [file] }) });
    expect(staff.sendMessage('s1', '   ')).toBeNull();

    const noteId = staff.sendMessage('s1', 'for staff', { internal: true })!;
    sends = socket.take('send-message');
    expect(sends[0]!.payload).toEqual({ sessionId: 's1', content: 'for staff', clientMsgId: noteId, internal: true });
    sends[0]!.ack!(null, { ok: true, message: message(1, { id: 'n1', senderId: 'alice', content: 'for staff', clientMsgId: noteId, internal: true, afterSeq: 2 }) });
    socket.fire('new-note', message(1, { id: 'n1', senderId: 'alice', content: 'for staff', clientMsgId: noteId, internal: true, afterSeq: 2 }));
    const state = staff.getSessionState('s1');
    expect(state.messages.map((m) => m.seq)).toEqual([1, 2]);
    expect(state.notes.map((n) => [n.seq, n.afterSeq])).toEqual([[1, 2]]);
    expect(state.outbox).toEqual([]);
    staff.stop();
  });

  it('a customer never holds a note, whatever arrives', () => {
    const { client } = makeClient();
    socket.accept();
    client.watch('s1');
    answerJoin([agent(1)]);
    socket.fire('new-note', message(1, { id: 'n1', internal: true, afterSeq: 1 }));
    socket.fire('new-message', message(2, { id: 'n2', internal: true, afterSeq: 1 }));
    const state = client.getSessionState('s1');
    expect(state.notes).toEqual([]);
    expect(state.messages.map((m) => m.seq)).toEqual([1]);
    expect(() => client.sendMessage('s1', 'x', { internal: true })).toThrow();
    client.stop();
  });
});
