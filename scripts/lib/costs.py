#!/usr/bin/env python3
"""What the chat's processes, Redis and PostgreSQL spend per message.

`costs.py snapshot --pids GATEWAY=1,2 --pids WORKER=3 --redis URL --database URL`
prints a JSON snapshot of cumulative counters: CPU seconds and context
switches of every thread of each named process, its read and write system
calls and bytes written to storage (/proc/PID/io), Redis's per-command calls
and network bytes (INFO), PostgreSQL's commits and row changes of the
database (pg_stat_database, pg_stat_user_tables) and, where the database has
the pg_stat_statements extension, its statements' calls, time and rows,
and loopback bytes (/proc/net/dev). `costs.py report BEFORE.json AFTER.json
--messages N` prints the difference divided by the N messages sent in
between.
"""

import argparse
import json
import os
import subprocess
import sys

TICKS = os.sysconf("SC_CLK_TCK")


def process_counters(pid):
    """CPU seconds and context switches summed over the process's threads,
    or None when the process is gone."""
    cpu = 0.0
    switches = 0
    task_dir = f"/proc/{pid}/task"
    try:
        tids = os.listdir(task_dir)
    except (FileNotFoundError, ProcessLookupError):
        return None
    for tid in tids:
        try:
            with open(f"{task_dir}/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / TICKS
            with open(f"{task_dir}/{tid}/status") as status:
                for line in status:
                    if "ctxt_switches" in line:
                        switches += int(line.split()[-1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return cpu, switches


IO_FIELDS = ("syscr", "syscw", "write_bytes")


def process_io(pid):
    """Read and write system calls and bytes sent to storage by the whole
    process (/proc/PID/io; zeros where the kernel does not show them)."""
    counters = dict.fromkeys(IO_FIELDS, 0)
    try:
        with open(f"/proc/{pid}/io") as io:
            for line in io:
                key, value = line.split(":", 1)
                if key in counters:
                    counters[key] = int(value)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return counters


def redis_info(url):
    out = subprocess.run(
        ["redis-cli", "-u", url, "INFO", "all"], capture_output=True, text=True, check=True
    ).stdout
    calls = {}
    stats = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, values = line[len("cmdstat_"):].split(":", 1)
            fields = dict(item.split("=") for item in values.split(","))
            calls[name] = int(fields["calls"])
        elif line.startswith(("total_net_input_bytes:", "total_net_output_bytes:", "used_cpu_sys:", "used_cpu_user:")):
            key, value = line.split(":", 1)
            stats[key] = float(value)
    return {"calls": calls, "stats": stats}


def postgres_counters(url):
    query = (
        "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched, blks_hit + blks_read "
        "FROM pg_stat_database WHERE datname = current_database()"
    )
    out = subprocess.run(
        ["psql", url, "-Atc", query], capture_output=True, text=True, check=True
    ).stdout.strip()
    names = ["commits", "rows_inserted", "rows_updated", "rows_fetched", "blocks_touched"]
    return dict(zip(names, (int(v) for v in out.split("|"))))


# Marks the snapshot's own statements, which pg_stat_statements records
# with the rest, so that the report leaves them out.
OWN = "/* costs.py */"


def psql(url, query):
    return subprocess.run(
        ["psql", url, "-Atc", query], capture_output=True, text=True, check=True
    ).stdout.strip()


def postgres_statements(url):
    """pg_stat_statements' rows of the database, by query id and level;
    None when the database has no such extension."""
    if psql(url, f"SELECT {OWN} count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'") != "1":
        return None
    out = psql(
        url,
        f"SELECT {OWN} coalesce(json_agg(json_build_object("
        "'id', coalesce(queryid::text, query) || ':' || toplevel::text, 'toplevel', toplevel, 'calls', calls, "
        "'time', total_exec_time, 'rows', rows, 'query', query)), '[]') "
        "FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND query NOT LIKE '%{OWN}%'",
    )
    return {row.pop("id"): row for row in json.loads(out)}


def loopback_bytes():
    with open("/proc/net/dev") as dev:
        for line in dev:
            if line.strip().startswith("lo:"):
                fields = line.split(":", 1)[1].split()
                return int(fields[0])
    return 0


def snapshot(args):
    processes = {}
    # Per process, so that the report counts only processes alive in both
    # snapshots (a PostgreSQL backend may exit during the run).
    for spec in args.pids:
        name, pids = spec.split("=", 1)
        counted = {}
        for pid in filter(None, pids.split(",")):
            counters = process_counters(pid)
            if counters is not None:
                cpu, switches = counters
                counted[pid] = {"cpu": cpu, "switches": switches, "io": process_io(pid)}
        processes[name] = counted
    result = {"processes": processes, "loopback": loopback_bytes()}
    if args.redis:
        result["redis"] = redis_info(args.redis)
    if args.database:
        result["postgres"] = postgres_counters(args.database)
        statements = postgres_statements(args.database)
        if statements is not None:
            result["statements"] = statements
    json.dump(result, sys.stdout)


def report(args):
    with open(args.before) as f:
        a = json.load(f)
    with open(args.after) as f:
        b = json.load(f)
    n = args.messages
    print(f"per message ({n} messages):")
    for name, after_by_pid in b["processes"].items():
        before_by_pid = a["processes"].get(name, {})
        alive = [pid for pid in after_by_pid if pid in before_by_pid]

        def change(key):
            return sum(after_by_pid[p][key] - before_by_pid[p][key] for p in alive)

        cpu = change("cpu") / n * 1e6
        switches = change("switches") / n
        print(f"  {name:<10} CPU {cpu:7.1f} us   context switches {switches:5.2f}   ({len(alive)} process(es))")
        io = {
            k: sum(after_by_pid[p]["io"][k] - before_by_pid[p]["io"].get(k, 0) for p in alive) / n
            for k in IO_FIELDS
        }
        print(
            f"  {'':<10} read calls {io['syscr']:5.2f}   write calls {io['syscw']:5.2f}"
            f"   bytes to storage {io['write_bytes']:7.0f}"
        )
    if "redis" in b:
        ra, rb = a["redis"], b["redis"]
        cpu = sum(rb["stats"].get(k, 0) - ra["stats"].get(k, 0) for k in ("used_cpu_sys", "used_cpu_user"))
        print(f"  {'redis':<10} CPU {cpu / n * 1e6:7.1f} us   in {(rb['stats']['total_net_input_bytes'] - ra['stats']['total_net_input_bytes']) / n:7.0f} B   out {(rb['stats']['total_net_output_bytes'] - ra['stats']['total_net_output_bytes']) / n:7.0f} B")
        calls = {
            name: (count - ra["calls"].get(name, 0)) / n
            for name, count in rb["calls"].items()
        }
        busy = sorted(((v, k) for k, v in calls.items() if v >= 0.01), reverse=True)
        print("  redis commands: " + ", ".join(f"{k} {v:.2f}" for v, k in busy))
    if "postgres" in b:
        pa, pb = a["postgres"], b["postgres"]
        print("  postgres: " + ", ".join(f"{k} {(pb[k] - pa[k]) / n:.3f}" for k in pb))
    if "statements" in b and "statements" in a:
        report_statements(a["statements"], b["statements"], n)
    print(f"  loopback bytes {(b['loopback'] - a['loopback']) / n:.0f}")


def shorten(query, width=70):
    text = " ".join(query.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def report_statements(before, after, n, top=10):
    """Statement executions per message, and the statements that took the
    most time, from two pg_stat_statements snapshots."""
    changes = []
    for key, row in after.items():
        old = before.get(key, {"calls": 0, "time": 0.0, "rows": 0})
        calls = row["calls"] - old["calls"]
        if calls > 0:
            changes.append((row["time"] - old["time"], calls, row["rows"] - old["rows"], row))
    client = sum(calls for _, calls, _, row in changes if row["toplevel"])
    nested = sum(calls for _, calls, _, row in changes if not row["toplevel"])
    print(
        f"  postgres statements: {client / n:.3f} from the clients (round trips, for clients that send one"
        f" statement per round trip, without pipelining), {nested / n:.3f} run inside them (functions)"
    )
    print(f"  {'calls/msg':>11} {'mean ms':>8} {'rows/call':>9}  statement (by total time; > inside a function)")
    for time, calls, rows, row in sorted(changes, key=lambda c: c[0], reverse=True)[:top]:
        mark = " " if row["toplevel"] else ">"
        print(f"  {calls / n:11.3f} {time / calls:8.3f} {rows / calls:9.2f}  {mark}{shorten(row['query'])}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot")
    snap.add_argument("--pids", action="append", default=[], help="NAME=PID[,PID...]")
    snap.add_argument("--redis")
    snap.add_argument("--database")
    rep = sub.add_parser("report")
    rep.add_argument("before")
    rep.add_argument("after")
    rep.add_argument("--messages", type=int, required=True)
    args = parser.parse_args()
    if args.command == "snapshot":
        snapshot(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
