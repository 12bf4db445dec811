//! A Redis Cluster of a test's own: masters and replicas, each a
//! `redis-server` on loopback, so that a test can kill a master and watch a
//! replica take its slots over (the shared server must never be stopped, and
//! is not a cluster anyway). Tuned for fast failover: a one-second node
//! timeout, replicas that promote whatever the age of their data, and no
//! persistence to wait for. Every node still running is killed when dropped.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::redis::spawn_redis_server;
use super::{came_true_blocking, free_port};

/// How long one node may take to answer PING after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `redis-cli --cluster create` plus the cluster's agreement on
/// its slots and replicas may take: replicas need a full sync each.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);
/// The slots of a Redis Cluster, fixed by the protocol.
const SLOTS: usize = 16384;
/// How much of each node's log a failure shows.
const LOG_TAIL_LINES: usize = 30;

pub struct ThrowawayRedisCluster {
    // Removed after the nodes are killed: fields drop after `Drop::drop`.
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    masters: usize,
    replicas_per_master: usize,
}

struct Node {
    port: u16,
    /// None once killed.
    child: Option<Child>,
}

/// One line of `CLUSTER NODES`, as far as the tests need it.
struct NodeLine {
    port: u16,
    master: bool,
    /// Slot ranges, inclusive; a migrating slot's `[…]` entries are left out.
    slots: Vec<(u16, u16)>,
}

impl ThrowawayRedisCluster {
    /// Starts `masters` masters with `replicas_per_master` replicas each and
    /// returns once every node agrees that the cluster is up, all slots are
    /// served and every replica is in sync with its master. Panics with the
    /// reason and the tail of the nodes' logs when it cannot get there.
    pub fn start(masters: usize, replicas_per_master: usize) -> ThrowawayRedisCluster {
        assert!(
            masters >= 3,
            "a Redis Cluster needs at least 3 masters (redis-cli refuses fewer), not {masters}"
        );
        let dir = tempfile::Builder::new()
            .prefix("chat-test-redis-cluster-")
            .tempdir()
            .expect("a temporary directory");
        let mut cluster = ThrowawayRedisCluster {
            dir,
            nodes: Vec::new(),
            masters,
            replicas_per_master,
        };
        // Data and bus ports are chosen apart: the default bus port
        // (data port + 10000) can lie past 65535 for an ephemeral port.
        let total = masters * (1 + replicas_per_master);
        let mut taken = BTreeSet::new();
        let mut distinct_port = || loop {
            let port = free_port();
            if taken.insert(port) {
                return port;
            }
        };
        let ports: Vec<(u16, u16)> = (0..total)
            .map(|_| (distinct_port(), distinct_port()))
            .collect();
        for (port, bus_port) in ports {
            cluster.spawn(port, bus_port);
        }
        for index in 0..cluster.nodes.len() {
            cluster.wait_for_ping(index);
        }
        cluster.create();
        cluster.wait_until_formed();
        cluster
    }

    /// "127.0.0.1:port" of every node, killed ones included, masters first
    /// as they were at creation.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect()
    }

    /// The value for `REDIS_CLUSTER_NODES`.
    pub fn seed_nodes(&self) -> String {
        self.nodes().join(",")
    }

    /// The cluster URL the client reads, every node a seed.
    pub fn url(&self) -> String {
        let nodes = self.nodes();
        let mut url = format!("redis-cluster://{}", nodes[0]);
        for (i, node) in nodes[1..].iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str("node=");
            url.push_str(node);
        }
        url
    }

    /// The port of the master serving `slot` in the view of the first live
    /// node that answers. During a failover that may still be a dead
    /// master; `wait_until_slot_served` waits for the takeover.
    pub fn master_of_slot(&self, slot: u16) -> u16 {
        assert!(usize::from(slot) < SLOTS, "slot {slot} is past {SLOTS}");
        for port in self.live_ports() {
            if let Some(lines) = cluster_nodes(port) {
                return owner_of(&lines, slot)
                    .unwrap_or_else(|| panic!("node {port} sees no master serving slot {slot}"));
            }
        }
        panic!("no live node answers CLUSTER NODES:\n{}", self.log_tails());
    }

    /// Crashes the node on `port`: SIGKILL to its own process, then waits
    /// for it to exit so that its ports are closed when this returns.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no node of this cluster listens on {port}"));
        let mut child = node
            .child
            .take()
            .unwrap_or_else(|| panic!("the node on {port} was already killed"));
        child
            .kill()
            .expect("SIGKILL to a redis-server of this test");
        child.wait().expect("the killed redis-server to exit");
    }

    /// Waits until every live node reports the cluster up and agrees that
    /// a live master serves `slot` (after a kill: a replica has taken over),
    /// and returns that master's port. Panics once `within` has passed.
    pub fn wait_until_slot_served(&self, slot: u16, within: Duration) -> u16 {
        let live = self.live_ports();
        let mut served_by = None;
        let served = came_true_blocking(within, || {
            served_by = self.agreed_live_owner(&live, slot);
            served_by.is_some()
        });
        assert!(
            served,
            "slot {slot} was not served by a live master with the cluster up within {within:?}:\n{}",
            self.log_tails()
        );
        served_by.expect("the owner found")
    }

    /// Moves `slot` (and its keys) from the master serving it to the
    /// master on `to`, as resharding does, and returns once every live node
    /// agrees on the new owner. Panics when a step is refused.
    pub fn move_slot(&self, slot: u16, to: u16) {
        let from = self.master_of_slot(slot);
        assert_ne!(from, to, "slot {slot} is already served by {to}");
        let id = |port: u16| {
            command(port, &["CLUSTER", "MYID"])
                .unwrap_or_else(|| panic!("node {port} did not tell its id"))
        };
        let (from_id, to_id) = (id(from), id(to));
        let slot_text = slot.to_string();
        let run = |port: u16, args: &[&str]| {
            let reply = command(port, args);
            assert!(
                reply.as_deref() == Some("OK"),
                "{args:?} on {port} answered {reply:?}"
            );
        };
        run(
            to,
            &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &from_id],
        );
        run(
            from,
            &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &to_id],
        );
        let to_port = to.to_string();
        loop {
            let keys = command_lines(from, &["CLUSTER", "GETKEYSINSLOT", &slot_text, "100"]);
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            run(from, &args);
        }
        for port in [to, from] {
            run(port, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]);
        }
        let moved = came_true_blocking(FORM_TIMEOUT, || {
            self.agreed_live_owner(&self.live_ports(), slot) == Some(to)
        });
        assert!(
            moved,
            "the nodes did not agree that {to} serves slot {slot}"
        );
    }

    fn agreed_live_owner(&self, live: &[u16], slot: u16) -> Option<u16> {
        let mut agreed = None;
        for &port in live {
            if !cluster_info(port)?.contains("cluster_state:ok") {
                return None;
            }
            let owner = owner_of(&cluster_nodes(port)?, slot)?;
            if !live.contains(&owner) || agreed.is_some_and(|seen| seen != owner) {
                return None;
            }
            agreed = Some(owner);
        }
        agreed
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| node.child.is_some())
            .map(|node| node.port)
            .collect()
    }

    fn log(&self, port: u16) -> PathBuf {
        self.dir.path().join(format!("redis-{port}.log"))
    }

    fn spawn(&mut self, port: u16, bus_port: u16) {
        let nodes_file = self.dir.path().join(format!("nodes-{port}.conf"));
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string()])
            .args(["--cluster-port", &bus_port.to_string()])
            .args(["--bind", "127.0.0.1", "--cluster-announce-ip", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(nodes_file)
            .args(["--cluster-node-timeout", "1000"])
            // Promote a replica however long ago it last heard its master.
            .args(["--cluster-replica-validity-factor", "0"])
            .args(["--cluster-allow-reads-when-down", "no"])
            // A failover must hand the slots to the dead master's own
            // replica, not reshuffle replicas among masters meanwhile.
            .args(["--cluster-allow-replica-migration", "no"])
            .args(["--appendonly", "no", "--save", ""])
            // Replicas sync at once instead of after the default 5 s wait
            // for more replicas to share one transfer.
            .args(["--repl-diskless-sync", "yes"])
            .args(["--repl-diskless-sync-delay", "0"]);
        let child = spawn_redis_server(&mut command, self.dir.path(), &self.log(port));
        self.nodes.push(Node {
            port,
            child: Some(child),
        });
    }

    fn wait_for_ping(&mut self, index: usize) {
        let port = self.nodes[index].port;
        let mut exited = None;
        let ready = came_true_blocking(START_TIMEOUT, || {
            let child = self.nodes[index].child.as_mut().expect("a running node");
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return true;
            }
            command(port, &["PING"]).is_some_and(|reply| reply == "PONG")
        });
        if let Some(status) = exited {
            panic!(
                "redis-server on {port} exited ({status}):\n{}",
                self.log_tail(port)
            );
        }
        assert!(
            ready,
            "redis-server on {port} did not answer PING within {START_TIMEOUT:?}:\n{}",
            self.log_tail(port)
        );
    }

    /// Runs `redis-cli --cluster create`, which assigns the slots to the
    /// first `masters` nodes and the rest as their replicas.
    fn create(&self) {
        let output_file = self.dir.path().join("cluster-create.out");
        let output = std::fs::File::create(&output_file).expect("a file for redis-cli's output");
        let mut child = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(self.nodes())
            .args(["--cluster-replicas", &self.replicas_per_master.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null())
            .stdout(
                output
                    .try_clone()
                    .expect("a second handle on the output file"),
            )
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}); install it with: apt-get install redis-tools")
            });
        let mut status = None;
        let finished = came_true_blocking(FORM_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if !finished {
            let _ = child.kill();
            let _ = child.wait();
        }
        let said = std::fs::read_to_string(&output_file).unwrap_or_default();
        match status {
            Some(status) if status.success() => {}
            Some(status) => panic!(
                "redis-cli --cluster create failed ({status}):\n{said}\n{}",
                self.log_tails()
            ),
            None => panic!(
                "redis-cli --cluster create did not finish within {FORM_TIMEOUT:?}:\n{said}\n{}",
                self.log_tails()
            ),
        }
    }

    fn wait_until_formed(&self) {
        let formed = came_true_blocking(FORM_TIMEOUT, || {
            self.nodes
                .iter()
                .all(|node| self.formed_in_view_of(node.port))
        });
        assert!(
            formed,
            "the cluster of {} masters with {} replicas each did not form within {FORM_TIMEOUT:?}:\n{}",
            self.masters,
            self.replicas_per_master,
            self.log_tails()
        );
    }

    /// Whether `port` knows every node, finds every slot served, and sees
    /// the expected masters and replicas; a replica must also have finished
    /// its sync, or a failover right after the start could lose the slots.
    fn formed_in_view_of(&self, port: u16) -> bool {
        let Some(info) = cluster_info(port) else {
            return false;
        };
        let total = self.nodes.len();
        if !(info.contains("cluster_state:ok")
            && info.contains(&format!("cluster_slots_ok:{SLOTS}"))
            && info.contains(&format!("cluster_known_nodes:{total}")))
        {
            return false;
        }
        let Some(lines) = cluster_nodes(port) else {
            return false;
        };
        let serving = lines
            .iter()
            .filter(|line| line.master && !line.slots.is_empty())
            .count();
        let replicas = lines.iter().filter(|line| !line.master).count();
        if serving != self.masters || replicas != self.masters * self.replicas_per_master {
            return false;
        }
        let me_a_replica = lines.iter().any(|line| line.port == port && !line.master);
        !me_a_replica
            || command(port, &["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
    }

    fn log_tail(&self, port: u16) -> String {
        let text = std::fs::read_to_string(self.log(port)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        format!("--- redis-{port}.log ---\n{}", lines[start..].join("\n"))
    }

    fn log_tails(&self) -> String {
        self.nodes
            .iter()
            .map(|node| self.log_tail(node.port))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ThrowawayRedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn cluster_info(port: u16) -> Option<String> {
    command(port, &["CLUSTER", "INFO"])
}

fn cluster_nodes(port: u16) -> Option<Vec<NodeLine>> {
    command(port, &["CLUSTER", "NODES"]).map(|text| parse_cluster_nodes(&text))
}

/// The master whose ranges hold `slot`; a failed master that still holds
/// it counts until a replica takes it over.
fn owner_of(lines: &[NodeLine], slot: u16) -> Option<u16> {
    lines
        .iter()
        .filter(|line| line.master)
        .find(|line| {
            line.slots
                .iter()
                .any(|&(first, last)| first <= slot && slot <= last)
        })
        .map(|line| line.port)
}

/// `<id> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch>
/// <link> <slot>…`, one node a line.
fn parse_cluster_nodes(text: &str) -> Vec<NodeLine> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let address = fields[1].split(['@', ',']).next()?;
            let port = address.rsplit(':').next()?.parse().ok()?;
            let master = fields[2].split(',').any(|flag| flag == "master");
            let slots = fields[8..]
                .iter()
                .filter(|entry| !entry.starts_with('['))
                .filter_map(|entry| match entry.split_once('-') {
                    Some((first, last)) => Some((first.parse().ok()?, last.parse().ok()?)),
                    None => entry.parse().ok().map(|slot| (slot, slot)),
                })
                .collect();
            Some(NodeLine {
                port,
                master,
                slots,
            })
        })
        .collect()
}

/// A new connection to the node on `port` with `args` sent on it as one
/// RESP command, ready to read the answer; None when that fails.
fn sent(port: u16, args: &[&str]) -> Option<BufReader<TcpStream>> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    Some(BufReader::new(stream))
}

/// One command answered by an array of bulk strings (empty when the node
/// does not answer or answers anything else).
fn command_lines(port: u16, args: &[&str]) -> Vec<String> {
    let Some(mut reader) = sent(port, args) else {
        return Vec::new();
    };
    let mut line = String::new();
    let count: usize = match reader.read_line(&mut line) {
        Ok(_) => line
            .trim_end()
            .strip_prefix('*')
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        Err(_) => 0,
    };
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        let Some(length) = reader
            .read_line(&mut line)
            .ok()
            .and_then(|_| line.trim_end().strip_prefix('$')?.parse::<usize>().ok())
        else {
            break;
        };
        let mut body = vec![0; length + 2];
        if reader.read_exact(&mut body).is_err() {
            break;
        }
        body.truncate(length);
        items.push(String::from_utf8_lossy(&body).into_owned());
    }
    items
}

/// One command in RESP, answered by a status or a bulk string. None when
/// the node does not answer, answers an error, or answers something else:
/// callers poll, and a node that is starting or failing over is not ready.
fn command(port: u16, args: &[&str]) -> Option<String> {
    let mut reader = sent(port, args)?;
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let first = first.trim_end();
    if let Some(status) = first.strip_prefix('+') {
        return Some(status.to_string());
    }
    let length: usize = first.strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0; length + 2];
    reader.read_exact(&mut body).ok()?;
    body.truncate(length);
    String::from_utf8(body).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn redis_cluster_hands_a_killed_masters_slots_to_its_replica() {
        let mut cluster = ThrowawayRedisCluster::start(3, 1);
        assert_eq!(cluster.nodes().len(), 6);
        assert_eq!(cluster.seed_nodes().split(',').count(), 6);
        assert!(cluster.url().starts_with("redis-cluster://127.0.0.1:"));

        let seen_by = cluster.nodes[0].port;
        let lines = cluster_nodes(seen_by).expect("CLUSTER NODES of a live node");
        let mut slots_of: BTreeMap<u16, usize> = BTreeMap::new();
        for slot in 0..SLOTS as u16 {
            let owner = owner_of(&lines, slot).expect("every slot served");
            *slots_of.entry(owner).or_default() += 1;
        }
        assert_eq!(slots_of.len(), 3, "three masters share the slots");
        assert!(
            slots_of.values().all(|&count| count > SLOTS / 4),
            "each master holds about a third of the slots: {slots_of:?}"
        );
        let masters: BTreeSet<u16> = slots_of.keys().copied().collect();

        let killed = cluster.master_of_slot(0);
        assert!(masters.contains(&killed));
        cluster.kill(killed);
        let successor = cluster.wait_until_slot_served(0, Duration::from_secs(10));
        assert_ne!(successor, killed);
        assert!(
            !masters.contains(&successor),
            "a replica took slot 0 over, not another master: {successor}"
        );
        assert_eq!(cluster.master_of_slot(0), successor);
    }

    #[test]
    fn redis_cluster_nodes_lines_are_read_with_their_slots() {
        let text = "\
a 127.0.0.1:7000@17000,host myself,master - 0 0 1 connected 0-5460 [5461->-b]
b 127.0.0.1:7001@17001 master,fail - 0 0 2 connected 5461 5462-16383
c 127.0.0.1:7002@17002 slave a 0 0 1 connected
";
        let lines = parse_cluster_nodes(text);
        assert_eq!(lines.len(), 3);
        assert_eq!(owner_of(&lines, 0), Some(7000));
        assert_eq!(owner_of(&lines, 5460), Some(7000));
        assert_eq!(owner_of(&lines, 5461), Some(7001));
        assert_eq!(owner_of(&lines, 16383), Some(7001));
        assert!(!lines[2].master && lines[2].port == 7002);
    }
}
