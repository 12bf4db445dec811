// The transfer dialog: hand a chat to an agent picked from the directory of
// the chat's pool (with each agent's status and load), or back to a queue
// picked from the pools known here. It sends the transfer itself and shows
// its own errors, so any screen (console, supervisor view) can open it.

import { useEffect, useMemo, useState } from 'react';
import { useAgentDesk, useChatClient } from '../chat/ChatContext';
import { toErrorBody } from '../chat/ChatClient';
import type { AgentEntry, Session } from '../lib/types';
import { FormDialog } from './FormDialog';

export interface TransferDialogProps {
  session: Session;
  /** Called when the dialog goes: cancelled, or after a transfer that succeeded. */
  onClose: () => void;
  /** Called with the session as the server left it, before `onClose`. */
  onTransferred?: (session: Session) => void;
}

/** How an agent is listed in the picker: name, status and open chats over capacity. */
export function agentLabel(agent: AgentEntry): string {
  return `${agent.name} — ${agent.status ?? (agent.online ? 'online' : 'offline')} · ${agent.openChats ?? 0}/${agent.capacity ?? 0} chats`;
}

/** Agents who take chats now first, then by name as the directory sorts them. */
function pickOrder(a: AgentEntry, b: AgentEntry): number {
  const rank = (x: AgentEntry) => (x.status === 'online' ? 0 : x.status === 'away' ? 1 : 2);
  return rank(a) - rank(b);
}

export function TransferDialog({ session, onClose, onTransferred }: TransferDialogProps) {
  const client = useChatClient();
  const desk = useAgentDesk();
  const me = client.user.userId;
  const [mode, setMode] = useState<'agent' | 'queue'>('agent');
  const [agentId, setAgentId] = useState('');
  // Only agents of the chat's pool can take it: the directory of that pool.
  const [agents, setAgents] = useState<AgentEntry[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  // Every agent the caller may list, for the pools they serve.
  const [allAgents, setAllAgents] = useState<AgentEntry[]>([]);
  const [pool, setPool] = useState(session.pool);

  useEffect(() => {
    let live = true;
    client.api
      .agents(session.pool)
      .then(({ items }) => {
        client.learnAgents(items);
        if (!live) return;
        const others = items.filter((a) => a.id !== me && a.id !== session.agentId).sort(pickOrder);
        setAgents(others);
        setAgentId((current) => current || others[0]?.id || '');
      })
      .catch(() => {
        if (live) setLoadError('The list of agents could not be loaded.');
      });
    client.api
      .agents()
      .then(({ items }) => {
        if (live) setAllAgents(items);
      })
      .catch(() => {
        // The pool list falls back to the chat's pool and the caller's own.
      });
    return () => {
      live = false;
    };
  }, [client, session.pool, session.agentId, me]);

  const pools = useMemo(() => {
    const set = new Set<string>([session.pool, ...client.user.pools]);
    for (const a of [...(agents ?? []), ...allAgents]) for (const p of a.pools) set.add(p);
    return [...set].sort();
  }, [session.pool, client.user.pools, agents, allAgents]);

  const transfer = async (): Promise<string | null> => {
    const target = mode === 'agent' ? { agentId } : { pool };
    let result: Session;
    if (desk) {
      const outcome = await desk.transfer(session.id, target);
      if (!outcome.ok) return outcome.message;
      result = outcome.session;
    } else {
      try {
        result = await client.api.transfer(session.id, target);
      } catch (error) {
        return `The chat could not be transferred. ${toErrorBody(error).message}`;
      }
    }
    onTransferred?.(result);
    onClose();
    return null;
  };

  return (
    <FormDialog
      title="Transfer chat"
      submitLabel="Transfer"
      tone="primary"
      onCancel={onClose}
      validate={() => (mode === 'agent' && !agentId ? 'Pick the agent to hand this chat to.' : null)}
      onSubmit={transfer}
    >
      <fieldset className="choice">
        <legend>Hand this chat to</legend>
        <label className="radio">
          <input type="radio" name="mode" checked={mode === 'agent'} onChange={() => setMode('agent')} />
          Another agent
        </label>
        <label className="radio">
          <input type="radio" name="mode" checked={mode === 'queue'} onChange={() => setMode('queue')} />
          Back to a queue
        </label>
      </fieldset>
      {mode === 'agent' ? (
        <label className="field">
          <span className="field-label">Agent (status · open chats/capacity)</span>
          <select value={agentId} onChange={(e) => setAgentId(e.target.value)} disabled={!agents || agents.length === 0} data-testid="agent-picker">
            {agents === null && <option value="">{loadError ?? 'Loading agents…'}</option>}
            {agents?.length === 0 && <option value="">No other agent serves {session.pool}</option>}
            {agents?.map((a) => (
              <option key={a.id} value={a.id} data-status={a.status}>
                {agentLabel(a)}
              </option>
            ))}
          </select>
        </label>
      ) : (
        <label className="field">
          <span className="field-label">Queue (pool)</span>
          <select value={pool} onChange={(e) => setPool(e.target.value)} data-testid="pool-picker">
            {pools.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
      )}
    </FormDialog>
  );
}
