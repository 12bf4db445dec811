// The chat protocol's objects and event payloads (docs/protocol.md), as
// the browser sees them: JSON, camelCase, times as RFC 3339 strings.

export type Role = 'customer' | 'agent' | 'admin';
export type SessionStatus = 'pending' | 'active' | 'closed';

export interface Session {
  id: string;
  customerId: string;
  customerName: string;
  agentId: string | null;
  agentName: string | null;
  pool: string;
  status: SessionStatus;
  subject: string | null;
  createdAt: string;
  assignedAt: string | null;
  closedAt: string | null;
  lastSeq: number;
  lastMessageAt: string | null;
  /** Colleagues invited into the session by its agent (absent from older servers). */
  participants?: Participant[];
}

/** An agent invited into a session by its assigned agent. */
export interface Participant {
  userId: string;
  name: string;
  role: Role;
  joinedAt: string;
}

/** A file uploaded to a session; messages carry them by id. */
export interface Attachment {
  id: string;
  sessionId: string;
  name: string;
  size: number;
  contentType: string;
  width: number | null;
  height: number | null;
  createdAt: string;
}

/** The reactions of one emoji on a message, `userIds` in the order they reacted. */
export interface Reaction {
  emoji: string;
  count: number;
  userIds: string[];
}

export interface Message {
  id: string;
  sessionId: string;
  seq: number;
  senderId: string;
  senderName: string;
  senderRole: Role;
  content: string;
  clientMsgId: string | null;
  createdAt: string;
  /** Files carried (absent from older servers). */
  attachments?: Attachment[];
  reactions?: Reaction[];
  /** An internal note, for staff only: numbered in the notes' own sequence and placed by `afterSeq`. */
  internal?: boolean;
  afterSeq?: number | null;
}

/** What an agent says about taking chats; `offline` when no socket of theirs is connected. */
export type AgentStatus = 'online' | 'away' | 'offline';

/** An agent of the directory (`GET /agents`): online now, or last seen then, with its routing load. */
export interface AgentEntry {
  id: string;
  name: string;
  pools: string[];
  online: boolean;
  lastSeenAt: string;
  status: AgentStatus;
  openChats: number;
  capacity: number;
}

export interface Stats {
  pool: string;
  pendingSessions: number;
  activeSessions: number;
  closedToday: number;
  onlineAgents: number;
  avgWaitSeconds: number | null;
  longestWaitSeconds: number;
  avgFirstResponseSeconds: number | null;
  messagesToday: number;
  updatedAt: string;
}

export type ErrorCode =
  | 'invalid_payload'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'session_closed'
  | 'payload_too_large'
  | 'rate_limited'
  | 'unavailable';

export interface ChatErrorBody {
  code: ErrorCode | string;
  message: string;
}

export interface ReadPosition {
  userId: string;
  role: Role;
  upToSeq: number;
}

export interface ConnectedPayload {
  userId: string;
  name: string;
  role: Role;
  pools: string[];
  socketId: string;
  serverTime: string;
}

export type SessionEventKind = 'assigned' | 'transferred' | 'returned' | 'closed' | 'invited' | 'left';

/** A system entry of the timeline: placed after message `afterSeq`, it takes no seq of its own. */
export interface SessionEvent {
  sessionId: string;
  kind: SessionEventKind;
  at: string;
  /** Who did it; null when the system did (automatic assignment, a return of a gone agent's chat). */
  by: { userId: string; role: Role } | null;
  /** The agent holding the session afterwards (for `closed`, the one who held it). */
  agentId: string | null;
  agentName: string | null;
  pool: string;
  afterSeq: number;
}

export interface SessionJoinedPayload {
  session: Session;
  messages: Message[];
  hasMore: boolean;
  readPositions: ReadPosition[];
  /** How far each recipient's client has confirmed messages arrived (absent from older servers). */
  deliveryPositions?: ReadPosition[];
  /** The latest timeline entries, oldest first (absent from older servers). */
  events?: SessionEvent[];
  /** Staff only: the latest internal notes, oldest first. */
  notes?: Message[];
}

/** Where a waiting session stands in its pool's queue (sent to its customer). */
export interface QueuePosition {
  sessionId: string;
  position: number;
  estimatedWaitSeconds: number | null;
}

/** `GET /queue`: a waiting session with when it entered the queue. */
export interface QueueEntry {
  session: Session;
  queuedAt: string;
  position: number;
}

export interface UserTypingPayload {
  sessionId: string;
  userId: string;
  name: string;
  role: Role;
  isTyping: boolean;
}

export interface MessagesReadPayload {
  sessionId: string;
  userId: string;
  role: Role;
  upToSeq: number;
  readAt: string;
}

export interface MessagesDeliveredPayload {
  sessionId: string;
  userId: string;
  role: Role;
  upToSeq: number;
  deliveredAt: string;
}

export interface MessageReactionsPayload {
  sessionId: string;
  seq: number;
  reactions: Reaction[];
}

export interface SessionClosedPayload {
  sessionId: string;
  closedBy: { userId: string; role: Role };
  reason: string | null;
  closedAt: string;
}

export interface SessionEnvelope {
  session: Session;
}

export interface MessagePage {
  items: Message[];
  hasMore: boolean;
}

export interface SessionPage {
  items: Session[];
  nextCursor: string | null;
}

/** An acknowledgement: `{ ok: true, ... }` or `{ ok: false, error }`. */
export type Ack<T> = ({ ok: true } & T) | { ok: false; error: ChatErrorBody };

/** Who is signed in, as the token says. */
export interface ChatUser {
  userId: string;
  name: string;
  role: Role;
  pools: string[];
}

/** Limits the server enforces (docs/protocol.md). */
export const MAX_CONTENT_CHARS = 4000;
export const MAX_SUBJECT_CHARS = 200;
export const MAX_REASON_CHARS = 500;
/** Files one message may carry. */
export const MAX_ATTACHMENTS = 10;
