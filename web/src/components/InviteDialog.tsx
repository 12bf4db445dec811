// The "Invite colleague" picker: agents of the directory (GET /agents) who
// are not already in the chat, the one who takes chats now listed first, as
// in the transfer dialog. Inviting lets them read and write in the chat
// while it stays the assigned agent's.

import { useEffect, useState } from 'react';
import { useChatClient } from '../chat/ChatContext';
import { toErrorBody } from '../chat/ChatClient';
import type { AgentEntry, Session } from '../lib/types';
import { FormDialog } from './FormDialog';
import { agentLabel } from './TransferDialog';

export interface InviteDialogProps {
  session: Session;
  onClose: () => void;
}

/** Agents who may be invited: not me, not the chat's agent, not already invited; online ones first. */
export function invitable(agents: AgentEntry[], session: Session, me: string): AgentEntry[] {
  const taken = new Set([me, session.agentId ?? '', ...(session.participants ?? []).map((p) => p.userId)]);
  const rank = (a: AgentEntry) => (a.status === 'online' ? 0 : a.status === 'away' ? 1 : 2);
  return agents.filter((a) => !taken.has(a.id)).sort((a, b) => rank(a) - rank(b));
}

export function InviteDialog({ session, onClose }: InviteDialogProps) {
  const client = useChatClient();
  const me = client.user.userId;
  const [agents, setAgents] = useState<AgentEntry[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [agentId, setAgentId] = useState('');

  useEffect(() => {
    let live = true;
    client.api
      .agents()
      .then(({ items }) => {
        client.learnAgents(items);
        if (!live) return;
        const list = invitable(items, session, me);
        setAgents(list);
        setAgentId((current) => current || list[0]?.id || '');
      })
      .catch(() => {
        if (live) setLoadError('The list of agents could not be loaded.');
      });
    return () => {
      live = false;
    };
  }, [client, session, me]);

  const invite = async (): Promise<string | null> => {
    try {
      await client.invite(session.id, agentId);
    } catch (error) {
      const body = toErrorBody(error);
      if (body.code === 'conflict') return `The colleague could not be invited: ${body.message || 'already in the chat, or the chat has as many colleagues as it may.'}`;
      return `The colleague could not be invited. ${body.message}`;
    }
    onClose();
    return null;
  };

  return (
    <FormDialog
      title="Invite colleague"
      submitLabel="Invite"
      tone="primary"
      onCancel={onClose}
      validate={() => (!agentId ? 'Pick the colleague to invite.' : null)}
      onSubmit={invite}
    >
      <p className="muted small">The colleague can read and write in this chat; it stays yours.</p>
      <label className="field">
        <span className="field-label">Colleague (status · open chats/capacity)</span>
        <select value={agentId} onChange={(e) => setAgentId(e.target.value)} disabled={!agents || agents.length === 0} data-testid="colleague-picker">
          {agents === null && <option value="">{loadError ?? 'Loading agents…'}</option>}
          {agents?.length === 0 && <option value="">No other agent to invite</option>}
          {agents?.map((a) => (
            <option key={a.id} value={a.id} data-status={a.status}>
              {agentLabel(a)}
            </option>
          ))}
        </select>
      </label>
    </FormDialog>
  );
}
