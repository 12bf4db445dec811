// The supervisor dashboard: the pool's Stats (docs/protocol.md) as live
// cards, refreshed by `stats-update`, and charts of the queue length and the
// message rate over the last minutes; for admins, the supervisor's tables
// of open chats and agents between the cards and the charts.

import { useEffect, useMemo, useState } from 'react';
import { toErrorBody } from '../chat/ChatClient';
import { useChatClient, useConnection } from '../chat/ChatContext';
import { duration, timeWithSeconds } from '../lib/format';
import { useNow } from '../lib/hooks';
import { addSample, buildSeries, sampleOf, type StatsSample } from '../lib/statsSeries';
import type { Stats } from '../lib/types';
import { LineChart } from './LineChart';
import { SupervisorView } from './SupervisorView';

/** The charts cover what was observed, from one minute up to the last ten. */
const WINDOW_MS = 10 * 60_000;
const MIN_WINDOW_MS = 60_000;
const STEP_MS = 5_000;

export function SupportDashboard() {
  const client = useChatClient();
  const connection = useConnection();
  const pools = useMemo(() => (client.user.pools.length ? client.user.pools : ['default']), [client.user.pools]);
  const [pool, setPool] = useState(pools[0]!);
  const [stats, setStats] = useState<Stats | null>(null);
  const [receivedAt, setReceivedAt] = useState(0);
  const [samples, setSamples] = useState<StatsSample[]>([]);
  const [error, setError] = useState<string | null>(null);
  const now = useNow(1000);

  useEffect(() => {
    let cancelled = false;
    setStats(null);
    setSamples([]);
    const apply = (next: Stats) => {
      if (cancelled || next.pool !== pool) return;
      const t = Date.now();
      setStats(next);
      setReceivedAt(t);
      setError(null);
      setSamples((s) => addSample(s, sampleOf(next, t), WINDOW_MS));
    };
    const load = () =>
      client.api.stats(pool).then(apply, (err: unknown) => {
        if (!cancelled) setError(toErrorBody(err).message);
      });
    if (client.isConnected) void load();
    const offConnected = client.on('connected', () => void load());
    const offStats = client.on('stats-update', apply);
    return () => {
      cancelled = true;
      offConnected();
      offStats();
    };
  }, [client, pool]);

  // Keep the charts moving between updates: the figures in force still hold.
  useEffect(() => {
    if (!stats) return undefined;
    const timer = setInterval(() => setSamples((s) => addSample(s, sampleOf(stats, Date.now()), WINDOW_MS)), STEP_MS);
    return () => clearInterval(timer);
  }, [stats]);

  const observed = samples.length ? now - samples[0]!.t : 0;
  const span = Math.min(WINDOW_MS, Math.max(MIN_WINDOW_MS, Math.ceil(observed / MIN_WINDOW_MS) * MIN_WINDOW_MS));
  const series = useMemo(() => buildSeries(samples, now, span, STEP_MS), [samples, now, span]);
  const live = connection.status === 'connected';
  const longest = stats ? stats.longestWaitSeconds + (stats.pendingSessions > 0 ? Math.max(0, (now - receivedAt) / 1000) : 0) : null;

  const cards: { label: string; value: string; hint?: string; tone?: 'warn' | 'ok' }[] = stats
    ? [
        { label: 'Waiting now', value: String(stats.pendingSessions), tone: stats.pendingSessions > 0 ? 'warn' : 'ok', hint: 'chats in the queue' },
        { label: 'Active chats', value: String(stats.activeSessions), hint: 'with an agent' },
        { label: 'Agents online', value: String(stats.onlineAgents), tone: stats.onlineAgents > 0 ? 'ok' : 'warn' },
        { label: 'Closed today', value: String(stats.closedToday) },
        { label: 'Longest wait', value: duration(longest), hint: 'oldest chat in the queue' },
        { label: 'Average wait', value: duration(stats.avgWaitSeconds), hint: 'today, until an agent took it' },
        { label: 'First response', value: duration(stats.avgFirstResponseSeconds), hint: 'today, on average' },
        { label: 'Messages today', value: String(stats.messagesToday) },
      ]
    : [];

  return (
    <div className="dashboard">
      <header className="page-header">
        <div>
          <h1 className="page-title">Support dashboard</h1>
          <p className="muted small" aria-live="polite">
            {live ? (
              <>
                <span className="live-dot" aria-hidden="true" /> Live
              </>
            ) : (
              'Paused: not connected'
            )}
            {stats ? ` · updated ${timeWithSeconds(stats.updatedAt)}` : ''}
          </p>
        </div>
        {pools.length > 1 && (
          <label className="field field-inline">
            <span className="field-label">Pool</span>
            <select value={pool} onChange={(e) => setPool(e.target.value)}>
              {pools.map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
            </select>
          </label>
        )}
      </header>
      {error && (
        <p className="inline-error" role="alert">
          Stats could not be loaded: {error}
        </p>
      )}
      {!stats && !error && (
        <p className="muted" role="status">
          Loading stats for {pool}…
        </p>
      )}
      {stats && (
        <ul className="cards" aria-label={`Stats of the ${pool} pool`} data-testid="stats-cards">
          {cards.map((card) => (
            <li key={card.label} className={`card ${card.tone ? `card-${card.tone}` : ''}`}>
              <span className="card-label">{card.label}</span>
              <span className="card-value" data-testid={`stat-${card.label.toLowerCase().replace(/\s+/g, '-')}`}>
                {card.value}
              </span>
              {card.hint && <span className="card-hint">{card.hint}</span>}
            </li>
          ))}
        </ul>
      )}
      {client.user.role === 'admin' && <SupervisorView />}
      {stats && (
        <div className="charts">
          <LineChart title="Queue length" points={series.queue} from={now - span} to={now} color="#d97706" step />
          <LineChart
            title="Messages per minute"
            points={series.rate}
            from={now - span}
            to={now}
            color="#2563eb"
            format={(v) => (v >= 10 ? String(Math.round(v)) : String(Math.round(v * 10) / 10))}
          />
        </div>
      )}
    </div>
  );
}
