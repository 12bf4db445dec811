// Builders of protocol objects for the unit tests.

import type { Message, Session } from '../src/lib/types';

export function message(seq: number, over: Partial<Message> = {}): Message {
  return {
    id: `m${seq}`,
    sessionId: 's1',
    seq,
    senderId: 'cust',
    senderName: 'Carla',
    senderRole: 'customer',
    content: `message ${seq}`,
    clientMsgId: `c${seq}`,
    createdAt: new Date(1_700_000_000_000 + seq * 1000).toISOString(),
    ...over,
  };
}

export function session(over: Partial<Session> = {}): Session {
  return {
    id: 's1',
    customerId: 'cust',
    customerName: 'Carla',
    agentId: null,
    agentName: null,
    pool: 'default',
    status: 'pending',
    subject: 'Billing',
    createdAt: new Date(1_700_000_000_000).toISOString(),
    assignedAt: null,
    closedAt: null,
    lastSeq: 0,
    lastMessageAt: null,
    ...over,
  };
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** A JWT-shaped token with the given claims and a dummy signature (the client never verifies). */
export function jwt(claims: Record<string, unknown>): string {
  return `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify(claims))}.c2ln`;
}
