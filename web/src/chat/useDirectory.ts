// The agent directory as a screen sees it: loaded over REST (GET /agents) on
// every connection and kept live by `agent-updated`, with each agent's
// status, open chats and capacity.

import { useEffect, useState } from 'react';
import type { AgentEntry } from '../lib/types';
import { useChatClient } from './ChatContext';

export interface DirectoryState {
  agents: AgentEntry[];
  loaded: boolean;
  error: string | null;
}

/** The directory sorts by name (bytewise), then id. */
function byName(a: AgentEntry, b: AgentEntry): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export function upsertAgent(list: AgentEntry[], agent: AgentEntry): AgentEntry[] {
  const index = list.findIndex((a) => a.id === agent.id);
  if (index === -1) return [...list, agent].sort(byName);
  const next = list.slice();
  next[index] = { ...list[index], ...agent };
  return next;
}

/** The agents of `pool`, or of the caller's pools (admins: everyone) without one. */
export function useDirectory(pool?: string): DirectoryState {
  const client = useChatClient();
  const [state, setState] = useState<DirectoryState>({ agents: [], loaded: false, error: null });

  useEffect(() => {
    let live = true;
    let ticket = 0;
    const load = () => {
      const mine = ++ticket;
      client.api.agents(pool).then(
        ({ items }) => {
          client.learnAgents(items);
          if (live && mine === ticket) setState({ agents: items.slice().sort(byName), loaded: true, error: null });
        },
        (error: unknown) => {
          if (live && mine === ticket) setState((s) => ({ ...s, loaded: true, error: error instanceof Error ? error.message : String(error) }));
        },
      );
    };
    load();
    const offs = [
      // Updates may have been missed while disconnected.
      client.on('connected', load),
      client.on('agent-updated', ({ agent }) => {
        if (pool && !agent.pools.includes(pool)) return;
        setState((s) => {
          // An agent of the caller's pools only (admins see everyone): a known one, or one sharing a pool.
          const relevant = pool || client.user.role === 'admin' || s.agents.some((a) => a.id === agent.id) || agent.pools.some((p) => client.user.pools.includes(p));
          return relevant ? { ...s, agents: upsertAgent(s.agents, agent) } : s;
        });
      }),
    ];
    return () => {
      live = false;
      for (const off of offs) off();
    };
  }, [client, pool]);

  return state;
}
