"""Checks the deployment files offline: deploy/ (Dockerfile, compose file
with its redis-cluster profile, HAProxy, Prometheus, Grafana), k8s/ (the
kustomize base) and k8s/overlays/ (overlays that only change settings), that the
alerts, their runbooks and the drain timings agree everywhere, and that the
capacity table in docs/capacity.md is what scripts/capacity.py computes.

Run by scripts/check-deploy, which provides the tools (promtool, kubectl,
haproxy, and a virtualenv with kubernetes-validate, check-jsonschema and dockerfile).
Prints one line per check; exits 1 if any failed.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import dockerfile
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
K8S = os.path.join(ROOT, "k8s")
K8S_OVERLAYS = os.path.join(ROOT, "k8s", "overlays")
# The compose profile's Redis Cluster: 3 masters with a replica each.
CLUSTER_NODES = [f"redis-node-{i}" for i in range(1, 7)]
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")
# Kubernetes versions the manifests are checked against: the oldest the
# docs support (preStop `sleep` is on by default from 1.30) and the newest
# the validator knows.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
REQUIRED_ALERTS = {
    "ChatPartitionWithoutOwner",
    "ChatStreamLagGrowing",
    "ChatErrorRateHigh",
    "ChatAckLatencyHigh",
    "ChatPodsNotReady",
    "ChatDeadLetters",
}

results = []


def check(name, ok, detail=""):
    results.append(ok)
    status = "ok  " if ok else "FAIL"
    print(f"{status} {name}" + (f": {detail}" if detail and not ok else ""))


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def millis(env, name):
    return int(env[name])


def anchor(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


# ---------------------------------------------------------------- Prometheus


def check_prometheus():
    config = os.path.join(DEPLOY, "prometheus", "prometheus.yml")
    rules = os.path.join(DEPLOY, "prometheus", "alerts.yml")
    result = run(["promtool", "check", "config", config])
    check("promtool check config deploy/prometheus/prometheus.yml", result.returncode == 0,
          result.stdout + result.stderr)
    result = run(["promtool", "check", "rules", rules])
    check("promtool check rules deploy/prometheus/alerts.yml", result.returncode == 0,
          result.stdout + result.stderr)

    scrape = load(config)
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    for job in ("chat-gateway", "chat-worker"):
        targets = [t for sc in jobs.get(job, {}).get("static_configs", []) for t in sc["targets"]]
        check(f"prometheus.yml scrapes two {job} targets", len(targets) == 2, str(targets))

    groups = load(rules)["groups"]
    alerts = {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
    check("alerts.yml has the required alerts", REQUIRED_ALERTS <= set(alerts),
          f"missing {sorted(REQUIRED_ALERTS - set(alerts))}")
    with open(OPERATIONS) as f:
        docs = f.read()
    anchors = {anchor(line.lstrip("#")) for line in docs.splitlines() if line.startswith("#")}
    for name, rule in sorted(alerts.items()):
        url = rule.get("annotations", {}).get("runbook_url", "")
        wanted = f"docs/operations.md#{name.lower()}"
        check(f"alert {name} links its runbook", url == wanted, f"runbook_url {url!r}, want {wanted!r}")
        check(f"docs/operations.md has a runbook for {name}", name.lower() in anchors,
              f"no heading '{name}' in docs/operations.md")
        check(f"alert {name} has a severity", rule.get("labels", {}).get("severity") in
              ("warning", "critical"))
    return groups


# ---------------------------------------------------------------- Grafana


def check_grafana():
    datasources = load(os.path.join(DEPLOY, "grafana", "provisioning", "datasources", "prometheus.yml"))
    uids = {ds["uid"] for ds in datasources["datasources"]}
    providers = load(os.path.join(DEPLOY, "grafana", "provisioning", "dashboards", "chat.yml"))
    check("Grafana provisions a dashboard folder",
          providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards")
    with open(os.path.join(DEPLOY, "grafana", "dashboards", "chat.json")) as f:
        dashboard = json.load(f)
    exprs = []
    for panel in dashboard["panels"]:
        check(f"panel '{panel['title']}' uses the provisioned data source",
              panel["datasource"]["uid"] in uids)
        exprs.extend(t["expr"] for t in panel["targets"])
    joined = "\n".join(exprs)
    for topic, pattern in [
        ("connections", "chat_gateway_sockets"),
        ("message rate", "chat_gateway_events_received_total"),
        ("latency percentiles", "histogram_quantile(0.99"),
        ("stream lag", "chat_worker_stream_lag"),
        ("errors", "chat_gateway_backplane_errors_total"),
    ]:
        check(f"the dashboard shows {topic}", pattern in joined)
    # Every query must be valid PromQL: promtool compiles them as recording
    # rules (Grafana's $__rate_interval stands for a range).
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query:{i}", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump(rules, f)
        path = f.name
    result = run(["promtool", "check", "rules", path])
    os.unlink(path)
    check(f"the dashboard's {len(exprs)} queries are valid PromQL", result.returncode == 0,
          result.stdout + result.stderr)


# ---------------------------------------------------------------- Dockerfile, compose, HAProxy


def check_docker():
    commands = dockerfile.parse_file(os.path.join(DEPLOY, "Dockerfile"))
    stages = {}
    current = None
    for command in commands:
        if command.cmd == "FROM":
            values = command.value
            current = values[2] if len(values) >= 3 and values[1].upper() == "AS" else values[0]
            stages[current] = {"from": values[0], "user": None}
        elif command.cmd == "USER" and current:
            stages[current]["user"] = command.value[0]
    for target in ("gateway", "worker", "standalone"):
        stage = stages.get(target)
        check(f"Dockerfile has a '{target}' target", stage is not None)
        if stage:
            user = (stage["user"] or "0").split(":")[0]
            check(f"the {target} image runs as a non-root user", user not in ("0", "root"), user)
            check(f"the {target} image is distroless", stage["from"].startswith("gcr.io/distroless/"),
                  stage["from"])
    check("Dockerfile builds in separate stages", {"web", "build"} <= set(stages))

    compose_path = os.path.join(DEPLOY, "docker-compose.yml")
    result = run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", compose_path])
    check("docker-compose.yml follows the Compose Specification", result.returncode == 0,
          result.stdout + result.stderr)
    compose = load(compose_path)
    services = compose["services"]
    check("compose has Redis, PostgreSQL, 2 gateways, 2 workers, a load balancer, Prometheus, Grafana",
          {"redis", "postgres", "gateway-1", "gateway-2", "worker-1", "worker-2", "lb", "prometheus",
           "grafana"} <= set(services))
    redis_command = services["redis"]["command"]
    check("Redis keeps an append-only file",
          "--appendonly" in redis_command and redis_command[redis_command.index("--appendonly") + 1] == "yes")
    chat_services = ("gateway-1", "gateway-2", "worker-1", "worker-2",
                     "cluster-gateway-1", "cluster-gateway-2", "cluster-worker-1", "cluster-worker-2")
    for name in chat_services:
        if name not in services:
            check(f"compose has {name}", False)
            continue
        service = services[name]
        build = service.get("build", {})
        check(f"{name} builds a Dockerfile target", build.get("target") in stages, str(build))
        grace = int(service["stop_grace_period"].rstrip("s")) * 1000
        env = service["environment"]
        check(f"{name}'s stop_grace_period exceeds its SHUTDOWN_GRACE_MS",
              grace > millis(env, "SHUTDOWN_GRACE_MS"))
        if "gateway" in name:
            check(f"{name}'s drain fits its grace",
                  millis(env, "DRAIN_DELAY_MS") + millis(env, "DRAIN_WINDOW_MS") < millis(env, "SHUTDOWN_GRACE_MS"))
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                check(f"{name} mounts an existing {source}",
                      os.path.exists(os.path.join(DEPLOY, source)))

    check_compose_redis_cluster(services)

    haproxy_cfg = os.path.join(DEPLOY, "haproxy", "haproxy.cfg")
    with open(haproxy_cfg) as f:
        # Directives only, without comments.
        text = "\n".join(line.split("#")[0] for line in f)
    check("the load balancer health-checks /readyz", "option httpchk GET /readyz" in text)
    check("the load balancer keeps WebSockets open (timeout tunnel)", "timeout tunnel" in text)
    check("the load balancer has no sticky sessions",
          "balance roundrobin" in text and "stick" not in text and "cookie" not in text)
    if shutil.which("haproxy"):
        result = run(["haproxy", "-c", "-f", haproxy_cfg])
        check("haproxy -c accepts haproxy.cfg", result.returncode == 0, result.stdout + result.stderr)
    else:
        # A check whose tool is missing fails: it never counts as passed.
        check("haproxy -c accepts haproxy.cfg", False,
              "haproxy is not installed; install Debian's 'haproxy' package (apt-get install haproxy)")


def check_compose_redis_cluster(services):
    """The redis-cluster profile: six nodes that clients can reach by the
    names they announce, made into a cluster once, and a chat of its own
    over it; nothing outside the profile changes or waits for it."""
    profiled = {name for name, service in services.items()
                if "redis-cluster" in service.get("profiles", [])}
    for name in CLUSTER_NODES:
        node = services.get(name)
        check(f"compose's profile redis-cluster has {name}", node is not None and name in profiled)
        if node is None:
            continue
        command = " ".join(node.get("command", []))
        check(f"{name} runs with cluster-enabled", "--cluster-enabled yes" in command, command)
        check(f"{name} announces its service name and sends clients to names",
              '--cluster-announce-hostname "$$REDIS_NODE"' in command
              and node.get("environment", {}).get("REDIS_NODE") == name
              and "--cluster-preferred-endpoint-type hostname" in command, command)
        check(f"{name} keeps nodes.conf and its data in a volume",
              any(v.endswith(":/data") for v in node.get("volumes", [])))
        check(f"{name} has a health check", "healthcheck" in node)
    create = services.get("redis-cluster-create", {})
    script = " ".join(create.get("command", []))
    check("redis-cluster-create makes 3 masters with a replica each of the six nodes, unattended",
          "redis-cli --cluster create" in script and "--cluster-replicas 1" in script
          and "--cluster-yes" in script and all(f"{n}:6379" in script for n in CLUSTER_NODES), script)
    check("redis-cluster-create waits for every node to be healthy",
          {n: {"condition": "service_healthy"} for n in CLUSTER_NODES}.items()
          <= create.get("depends_on", {}).items())
    check("redis-cluster-create runs once, in the profile",
          create.get("restart") == "no" and "redis-cluster-create" in profiled)
    plain = services.get("worker-1", {}).get("environment", {})
    for name in ("cluster-gateway-1", "cluster-gateway-2", "cluster-worker-1", "cluster-worker-2"):
        service = services.get(name, {})
        env = service.get("environment", {})
        seeds = env.get("REDIS_CLUSTER_NODES", "")
        check(f"{name} is in the profile and seeds from every node",
              name in profiled and seeds.split(",") == [f"{n}:6379" for n in CLUSTER_NODES], seeds)
        check(f"{name} has no REDIS_URL beside REDIS_CLUSTER_NODES", "REDIS_URL" not in env)
        check(f"{name} keeps its records apart from the chat over one Redis",
              env.get("DATABASE_URL", "").rsplit("/", 1)[0] == plain.get("DATABASE_URL", "").rsplit("/", 1)[0]
              and env.get("DATABASE_URL") != plain.get("DATABASE_URL"), env.get("DATABASE_URL", ""))
        check(f"{name} starts once the cluster is made",
              service.get("depends_on", {}).get("redis-cluster-create")
              == {"condition": "service_completed_successfully"})
        networks = service.get("networks", [])
        check(f"{name} reaches the cluster's network and PostgreSQL's",
              {"default", "redis-cluster"} <= set(networks), str(networks))
    lb = services.get("cluster-lb", {})
    check("cluster-lb sees only the cluster's network, where gateway-1/2 are the profile's",
          lb.get("networks") == ["redis-cluster"]
          and all(services.get(f"cluster-gateway-{i}", {}).get("networks", {}).get("redis-cluster", {})
                  .get("aliases") == [f"gateway-{i}"] for i in (1, 2)))
    outside = {name: service for name, service in services.items() if name not in profiled}
    check("services outside the profile name none of it",
          all(not (set(service.get("depends_on", {})) & profiled)
              and "redis-cluster" not in service.get("networks", []) for service in outside.values()),
          str(sorted(outside)))


# ---------------------------------------------------------------- Kubernetes


def check_kubernetes(alert_groups):
    result = run(["kubectl", "kustomize", K8S])
    check("kubectl kustomize k8s renders", result.returncode == 0, result.stderr)
    if result.returncode != 0:
        return
    rendered = result.stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(rendered)
        path = f.name
    crds = {"ServiceMonitor", "PrometheusRule"}
    for version in K8S_VERSIONS:
        result = run(["kubernetes-validate", "--strict", "--quiet", "--no-warn", "-k", version, path])
        check(f"the rendered objects validate against the Kubernetes {version} schemas (strict)",
              result.returncode == 0, result.stdout + result.stderr)
    os.unlink(path)

    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    for kind in ("Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Ingress",
                 "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule"):
        check(f"k8s renders a {kind}", kind in by_kind)
    unvalidated = sorted({o["kind"] for o in objects if o["kind"] in crds})
    print(f"     note: {', '.join(unvalidated)} are custom resources of the Prometheus Operator; the "
          "validator bundles no schema for them, so they are checked below instead (the rule groups "
          "with promtool and against deploy/, the ServiceMonitor against the Services it selects)")

    rule = by_kind["PrometheusRule"][0]
    check("the PrometheusRule carries exactly the alerts of deploy/prometheus/alerts.yml",
          rule["spec"]["groups"] == alert_groups)
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
        path = f.name
    result = run(["promtool", "check", "rules", path])
    os.unlink(path)
    check("promtool accepts the PrometheusRule's groups", result.returncode == 0, result.stdout + result.stderr)

    monitor = by_kind["ServiceMonitor"][0]
    wanted = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    selected = [s for s in by_kind["Service"]
                if all(s["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
    check("the ServiceMonitor selects the gateway and worker Services",
          sorted(s["metadata"]["name"] for s in selected) == ["chat-gateway", "chat-worker"],
          str([s["metadata"]["name"] for s in selected]))
    for service in selected:
        names = {p["name"] for p in service["spec"]["ports"]}
        check(f"Service {service['metadata']['name']} has the scraped port {sorted(ports)}", ports <= names)

    deployments = {d["metadata"]["name"]: d for d in by_kind["Deployment"]}
    for name, admin in (("chat-gateway", 9090), ("chat-worker", 9091)):
        deployment = deployments[name]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        check(f"{name} listens for admin on {admin}", ports.get("admin") == admin and env.get("ADMIN_PORT") == str(admin))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            check(f"{name}'s {probe} uses the admin port", container[probe]["httpGet"]["port"] == "admin")
        check(f"{name} is ready on /readyz", container["readinessProbe"]["httpGet"]["path"] == "/readyz")
        security = container["securityContext"]
        check(f"{name} runs non-root with a read-only root file system",
              security.get("readOnlyRootFilesystem") is True and pod["securityContext"].get("runAsNonRoot") is True
              and security.get("allowPrivilegeEscalation") is False and security["capabilities"]["drop"] == ["ALL"])
        check(f"{name} has resource requests and limits",
              {"requests", "limits"} <= set(container.get("resources", {})))
        check(f"{name} spreads over nodes and zones",
              {c["topologyKey"] for c in pod.get("topologySpreadConstraints", [])}
              >= {"kubernetes.io/hostname", "topology.kubernetes.io/zone"})
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace = int(env["SHUTDOWN_GRACE_MS"])
        check(f"{name}'s terminationGracePeriodSeconds covers preStop and SHUTDOWN_GRACE_MS",
              pod["terminationGracePeriodSeconds"] * 1000 > pre_stop * 1000 + grace,
              f"{pod['terminationGracePeriodSeconds']} s for {pre_stop} s + {grace} ms")
        if name == "chat-gateway":
            check("the gateway sleeps in preStop while endpoints are updated", pre_stop > 0)
            check("the gateway's drain fits its grace",
                  int(env["DRAIN_DELAY_MS"]) + int(env["DRAIN_WINDOW_MS"]) < grace)

    hpa = by_kind["HorizontalPodAutoscaler"][0]
    check("the HPA is autoscaling/v2", hpa["apiVersion"] == "autoscaling/v2")
    check("the HPA scales down slowly",
          hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300)
    ingress = by_kind["Ingress"][0]
    annotations = ingress["metadata"].get("annotations", {})
    check("the Ingress keeps WebSockets open for an hour",
          int(annotations.get("nginx.ingress.kubernetes.io/proxy-read-timeout", 0)) >= 3600
          and int(annotations.get("nginx.ingress.kubernetes.io/proxy-send-timeout", 0)) >= 3600)
    check("the Ingress has no session affinity",
          not any("affinity" in key or "upstream-hash-by" in key for key in annotations))
    backends = {p["backend"]["service"]["port"]["name"]
                for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    check("the Ingress routes only the public port", backends == {"http"}, str(backends))
    secret = by_kind["Secret"][0]
    check("the example Secret holds only placeholders",
          all("replace-me" in v or "example" in v for v in secret.get("stringData", {}).values()))


def render_validated(directory, label):
    """The objects `kubectl kustomize` renders, after validating them against
    the Kubernetes schemas; None when it does not render."""
    result = run(["kubectl", "kustomize", directory])
    check(f"kubectl kustomize {label} renders", result.returncode == 0, result.stderr)
    if result.returncode != 0:
        return None
    rendered = result.stdout
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(rendered)
        path = f.name
    for version in K8S_VERSIONS:
        result = run(["kubernetes-validate", "--strict", "--quiet", "--no-warn", "-k", version, path])
        check(f"{label}: the rendered objects validate against the Kubernetes {version} schemas (strict)",
              result.returncode == 0, result.stdout + result.stderr)
    os.unlink(path)
    return [o for o in yaml.safe_load_all(rendered) if o]


def check_overlays():
    """Each overlay renders over the base and changes nothing but settings:
    the ConfigMap's values (and so its hashed name) and the Secret's."""
    # The base itself is validated by check_kubernetes.
    result = run(["kubectl", "kustomize", K8S])
    if result.returncode != 0:
        return
    base = [o for o in yaml.safe_load_all(result.stdout) if o]
    rendered = {}
    for overlay in ("redis-cluster", "read-replica"):
        directory = os.path.join(K8S_OVERLAYS, overlay)
        check(f"k8s/overlays/{overlay} says when to use it",
              os.path.exists(os.path.join(directory, "README.md")))
        objects = render_validated(directory, f"k8s/overlays/{overlay}")
        if objects is None:
            continue
        rendered[overlay] = objects
        config_name = next(o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap")
        base_config = next(o["metadata"]["name"] for o in base if o["kind"] == "ConfigMap")

        def others(objs, name):
            text = yaml.safe_dump([o for o in objs if o["kind"] not in ("ConfigMap", "Secret")])
            return text.replace(name, "CHAT-CONFIG")
        check(f"k8s/overlays/{overlay} changes only the ConfigMap and the Secret",
              others(objects, config_name) == others(base, base_config))

    def one(objects, kind):
        return next(o for o in objects if o["kind"] == kind)
    if "redis-cluster" in rendered:
        config = one(rendered["redis-cluster"], "ConfigMap")["data"]
        secret = one(rendered["redis-cluster"], "Secret").get("stringData", {})
        nodes = config.get("REDIS_CLUSTER_NODES", "").split(",")
        check("k8s/overlays/redis-cluster sets REDIS_CLUSTER_NODES to host:port seeds",
              all(re.fullmatch(r"[\w.-]+:\d+", node) for node in nodes), str(nodes))
        check("k8s/overlays/redis-cluster names placeholder nodes", all("example" in n for n in nodes))
        check("k8s/overlays/redis-cluster leaves no REDIS_URL beside REDIS_CLUSTER_NODES",
              "REDIS_URL" not in secret and "REDIS_URL" not in config)
    if "read-replica" in rendered:
        secret = one(rendered["read-replica"], "Secret").get("stringData", {})
        read_url = secret.get("DATABASE_READ_URL", "")

        def sslmode(url):
            found = re.search(r"[?&]sslmode=([^&]+)", url)
            return found.group(1) if found else None
        check("k8s/overlays/read-replica puts DATABASE_READ_URL in the Secret, as DATABASE_URL",
              read_url.startswith("postgres://") and "DATABASE_URL" in secret, read_url)
        check("k8s/overlays/read-replica asks the replica for DATABASE_URL's sslmode",
              sslmode(read_url) == sslmode(secret.get("DATABASE_URL", "")))
        check("k8s/overlays/read-replica holds only a placeholder",
              "replace-me" in read_url or "example" in read_url)


def check_capacity():
    """docs/capacity.md shows what scripts/capacity.py prints now."""
    computed = run([sys.executable, os.path.join(ROOT, "scripts", "capacity.py")])
    printed = computed.stdout.strip()
    with open(os.path.join(ROOT, "docs", "capacity.md")) as f:
        doc = f.read()
    check(
        "docs/capacity.md: the table is what scripts/capacity.py prints",
        computed.returncode == 0 and bool(printed) and printed in doc,
        computed.stderr.strip(),
    )


def main():
    os.chdir(ROOT)
    groups = check_prometheus()
    check_grafana()
    check_docker()
    check_kubernetes(groups)
    check_overlays()
    check_capacity()
    failed = results.count(False)
    if failed:
        print(f"check-deploy: {failed} of {len(results)} checks FAILED")
        return 1
    print(f"check-deploy: all {len(results)} checks hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
