#!/usr/bin/env python3
"""What a deployment needs for a number of connections and a message rate,
computed from measured costs (docs/capacity.md explains the model).

    scripts/capacity.py [--connections N] [--rate MSGS_PER_S]
                        [--utilisation U] [--inputs FILE.json]

prints a Markdown table. The measured inputs are MEASURED below, each with
where it comes from; `--inputs` replaces any of them from a JSON object
with the same keys, so a new measurement changes the table without
touching the model.
"""

import argparse
import json
import math
import sys

# Per-message figures: the whole path of one message as the benchmark sends
# it (a customer's message, acked, echoed to the sender and delivered to the
# session's agent on another gateway). COSTS=1 PAIRS=200 DURATION=15
# scripts/bench-cluster.sh 6000, 2 gateways + 2 workers, on the slower of
# the two hosts of docs/performance.md: a conservative basis.
MEASURED = {
    "gateway_cpu_us_per_message": 115.6,
    "worker_cpu_us_per_message": 63.1,
    "redis_cpu_us_per_message": 39.0,
    "postgres_cpu_us_per_message": 36.0,
    "redis_bytes_in_per_message": 1518,
    "redis_bytes_out_per_message": 2428,
    "postgres_commits_per_message": 0.055,
    "postgres_bytes_to_storage_per_message": 5251,
    # scripts/bench-cluster.sh's idle run: RSS growth per authenticated idle
    # socket over 10,000 (docs/performance.md, "Idle connections").
    "gateway_bytes_per_idle_connection": 7584,
    # A gateway's resident memory with no connection (ps, after start).
    "gateway_base_bytes": 20 * 1024 * 1024,
}

# Choices of the model, not measurements (docs/capacity.md says why).
ASSUMED = {
    "vcpus_per_gateway_pod": 2,
    "vcpus_per_worker_pod": 2,
    "connections_per_gateway_pod": 50_000,
    # Room for queued frames and buffers of busy sockets.
    "memory_per_connection_factor": 2.0,
    "partitions_per_worker": 4,
    # Of gateways and of workers: one may fail, or be drained, at any time.
    "min_pods": 2,
    "stored_bytes_per_message": 400,
}


def count(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def plan(connections, rate, utilisation, m, a):
    """Rows of (component, what it needs, how it was computed)."""
    rows = []
    gateway_cores = rate * m["gateway_cpu_us_per_message"] / 1e6 / utilisation
    by_cpu = math.ceil(gateway_cores / a["vcpus_per_gateway_pod"])
    by_connections = math.ceil(connections / a["connections_per_gateway_pod"])
    gateways = max(by_cpu, by_connections, a["min_pods"])
    per_pod = math.ceil(connections / gateways)
    memory = m["gateway_base_bytes"] + per_pod * m["gateway_bytes_per_idle_connection"] * a[
        "memory_per_connection_factor"
    ]
    rows.append(
        (
            "gateway pods",
            f"{gateways} × {a['vcpus_per_gateway_pod']} vCPU, {memory / 2**30:.2f} GiB each",
            f"CPU {gateway_cores:.1f} cores → {by_cpu} pods; connections → {by_connections} pods; "
            f"{per_pod:,} connections a pod",
        )
    )
    worker_cores = rate * m["worker_cpu_us_per_message"] / 1e6 / utilisation
    workers = max(math.ceil(worker_cores / a["vcpus_per_worker_pod"]), a["min_pods"])
    rows.append(
        (
            "worker pods",
            f"{workers} × {a['vcpus_per_worker_pod']} vCPU, PARTITIONS ≥ {workers * a['partitions_per_worker']}",
            f"CPU {worker_cores:.1f} cores",
        )
    )
    redis_cores = rate * m["redis_cpu_us_per_message"] / 1e6 / utilisation
    shards = math.ceil(redis_cores)
    traffic = rate * (m["redis_bytes_in_per_message"] + m["redis_bytes_out_per_message"])
    rows.append(
        (
            "Redis shards",
            f"{count(shards, 'master')} + {count(shards, 'replica')}",
            f"CPU {redis_cores:.1f} cores, one a shard; {traffic / shards / 1e6:.0f} MB/s a shard in and out",
        )
    )
    pg_cores = rate * m["postgres_cpu_us_per_message"] / 1e6 / utilisation
    commits = rate * m["postgres_commits_per_message"]
    wal = rate * m["postgres_bytes_to_storage_per_message"]
    stored = rate * 86_400 * a["stored_bytes_per_message"]
    rows.append(
        (
            "PostgreSQL primary",
            f"{count(math.ceil(pg_cores), 'core')}, {commits:,.0f} commits/s, {wal / 1e6:.0f} MB/s written",
            f"{stored / 1e12:.1f} TB of messages a day",
        )
    )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=100_000, help="messages per second")
    parser.add_argument(
        "--utilisation", type=float, default=0.5, help="share of each core planned busy (0-1]"
    )
    parser.add_argument("--inputs", help="JSON object overriding measured inputs or assumptions")
    args = parser.parse_args()
    if not 0 < args.utilisation <= 1:
        parser.error("--utilisation must be in (0, 1]")
    measured, assumed = dict(MEASURED), dict(ASSUMED)
    if args.inputs:
        with open(args.inputs) as f:
            overrides = json.load(f)
        for key, value in overrides.items():
            if key in measured:
                measured[key] = value
            elif key in assumed:
                assumed[key] = value
            else:
                parser.error(f"--inputs: unknown key {key!r}")
    print(
        f"{args.connections:,} connections, {args.rate:,.0f} msgs/s, "
        f"cores planned {args.utilisation:.0%} busy:"
    )
    print()
    print("| component | needs | from |")
    print("|---|---|---|")
    for component, needs, reason in plan(args.connections, args.rate, args.utilisation, measured, assumed):
        print(f"| {component} | {needs} | {reason} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
