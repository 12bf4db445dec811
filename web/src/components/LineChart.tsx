// A small hand-drawn SVG line chart for one series over a time window, with
// a text summary for screen readers.

import { useEffect, useRef, useState } from 'react';
import type { Point } from '../lib/statsSeries';

export interface LineChartProps {
  title: string;
  points: Point[];
  /** Start and end of the window shown (ms since epoch). */
  from: number;
  to: number;
  color: string;
  /** Format a value for the axis and summary. */
  format?: (value: number) => string;
  /** Smallest top of the vertical scale. */
  minMax?: number;
  /** Draw as steps (a count that holds until it changes) rather than slopes. */
  step?: boolean;
}

const H = 150;
const PAD = { top: 10, right: 8, bottom: 18, left: 30 };

export function LineChart({ title, points, from, to, color, format = defaultFormat, minMax = 2, step = false }: LineChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const [W, setW] = useState(320);
  useEffect(() => {
    const el = box.current;
    if (!el || typeof ResizeObserver === 'undefined') return undefined;
    const observer = new ResizeObserver(() => setW(Math.max(160, Math.round(el.clientWidth))));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  const max = Math.max(minMax, ...points.map((p) => p.value));
  const top = niceCeil(max);
  const x = (t: number) => PAD.left + ((t - from) / Math.max(1, to - from)) * (W - PAD.left - PAD.right);
  const y = (v: number) => PAD.top + (1 - v / top) * (H - PAD.top - PAD.bottom);
  const line = points
    .map((p, i) => {
      const px = x(p.t).toFixed(1);
      const py = y(p.value).toFixed(1);
      if (i === 0) return `M${px},${py}`;
      return step ? `H${px} V${py}` : `L${px},${py}`;
    })
    .join(' ');
  const first = points[0];
  const last = points[points.length - 1];
  const area = first && last ? `${line} L${x(last.t).toFixed(1)},${y(0)} L${x(first.t).toFixed(1)},${y(0)} Z` : '';
  const minutes = Math.round((to - from) / 60000);
  const summary = last
    ? `${title} over the last ${minutes} minutes: now ${format(last.value)}, highest ${format(Math.max(...points.map((p) => p.value)))}.`
    : `${title}: no data yet.`;

  return (
    <figure className="chart">
      <figcaption className="chart-title">
        <span>{title}</span>
        <span className="chart-now">{last ? format(last.value) : '—'}</span>
      </figcaption>
      <div ref={box} className="chart-box">
        <svg viewBox={`0 0 ${W} ${H}`} width={W} height={H} role="img" aria-label={summary}>
          {[0, 0.5, 1].map((f) => (
            <g key={f}>
              <line x1={PAD.left} x2={W - PAD.right} y1={y(top * f)} y2={y(top * f)} className="chart-grid" />
              <text x={PAD.left - 4} y={y(top * f) + 3} className="chart-label" textAnchor="end">
                {tick(top * f)}
              </text>
            </g>
          ))}
          <text x={PAD.left} y={H - 4} className="chart-label">
            −{minutes} min
          </text>
          <text x={W - PAD.right} y={H - 4} className="chart-label" textAnchor="end">
            now
          </text>
          {area && <path d={area} fill={color} opacity={0.12} />}
          {line && <path d={line} fill="none" stroke={color} strokeWidth={2} strokeLinejoin="round" />}
        </svg>
      </div>
    </figure>
  );
}

function defaultFormat(value: number): string {
  return String(Math.round(value));
}

function tick(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function niceCeil(value: number): number {
  if (value <= 1) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 4, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}
