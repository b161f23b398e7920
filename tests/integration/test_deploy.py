"""Deployment files are checked with the real tools: docker-compose, promtool, Prometheus."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.conftest import REPO, free_port, wait_for

PROM_DIR = REPO / "deploy" / "prometheus"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; `make setup` installs it")
    return path


def test_docker_compose_config_is_valid():
    res = subprocess.run(
        [_tool("docker-compose"), "-f", str(REPO / "docker-compose.yml"), "config"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    # The services the README promises are there.
    for service in ("kafka:", "clickhouse:", "worker:", "serve:", "simulator:", "prometheus:"):
        assert f"  {service}" in res.stdout


def test_prometheus_rules_check_and_unit_tests_pass():
    check = subprocess.run([_tool("promtool"), "check", "rules", "rules.yml"], cwd=PROM_DIR, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run([_tool("promtool"), "test", "rules", "rules_test.yml"], cwd=PROM_DIR, capture_output=True, text=True)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_prometheus_configs_are_valid():
    for name in ("prometheus.yml", "prometheus.docker.yml"):
        res = subprocess.run([_tool("promtool"), "check", "config", name], cwd=PROM_DIR, capture_output=True, text=True)
        assert res.returncode == 0, name + res.stdout + res.stderr


def run_prometheus(tmp_path: Path, targets: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """A real Prometheus scraping ``targets`` ({process: host:port}) every second."""
    port = free_port()
    static = "\n".join(f'      - targets: ["{t}"]\n        labels: {{process: {p}}}' for p, t in targets.items())
    (tmp_path / "rules.yml").write_bytes((PROM_DIR / "rules.yml").read_bytes())
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [rules.yml]\n"
        f"scrape_configs:\n  - job_name: learnpulse\n    static_configs:\n{static}\n"
    )
    proc = subprocess.Popen(
        [_tool("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT,
    )
    return proc, port


def prom_query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return orjson.loads(resp.read())["data"]["result"]
    except OSError:
        return []


@pytest.mark.kafka
def test_prometheus_scrapes_every_pipeline_process(settings, spawn, tmp_path):
    """Worker, simulator and the serve process (sinks + web) all answer a real Prometheus scrape."""
    worker_port, sim_port = free_port(), free_port()
    spawn(["worker"], settings, "worker", {"LEARNPULSE_METRICS_PORT": str(worker_port)})
    spawn(["simulate", "--rate", "100"], settings, "simulator", {"LEARNPULSE_METRICS_PORT": str(sim_port)})
    spawn(["serve"], settings, "serve")
    prom, port = run_prometheus(
        tmp_path,
        {"worker": f"127.0.0.1:{worker_port}", "simulator": f"127.0.0.1:{sim_port}", "serve": f"127.0.0.1:{settings.web_port}"},
    )
    try:
        up = wait_for(
            lambda: (r := prom_query(port, 'up{job="learnpulse"} == 1')) and len(r) == 3 and r,
            90, "all three processes up in Prometheus",
        )
        assert {r["metric"]["process"] for r in up} == {"worker", "simulator", "serve"}
        # Real traffic shows up in the scraped series: produced, consumed by the worker, written by sinks.
        for expr in (
            'sum(learnpulse_statements_produced_total{process="simulator"}) > 0',
            'sum(learnpulse_messages_in_total{process="worker"}) > 0',
            'sum(learnpulse_rows_written_total{process="serve",table="statements"}) > 0',
        ):
            wait_for(lambda e=expr: prom_query(port, e), 90, expr)
    finally:
        prom.terminate()
        prom.wait(20)


def test_haproxy_accepts_the_rendered_balancer_config(tmp_path):
    from learnpulse.balancer import TEMPLATE, render_config

    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_config(TEMPLATE.read_text(), "127.0.0.1:8087", ["127.0.0.1:8088", "127.0.0.1:8089"]))
    res = subprocess.run([_tool("haproxy"), "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _without_cluster_secret() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LEARNPULSE_CLUSTER_SECRET"}


CLUSTER_ENV = {**_without_cluster_secret(), "LEARNPULSE_CLUSTER_SECRET": "a-test-secret"}


def test_docker_compose_cluster_file_is_valid_and_its_balancer_config_passes_haproxy(tmp_path):
    compose = [_tool("docker-compose"), "-f", str(REPO / "docker-compose.cluster.yml")]
    # No default for the replicas' shared secret: without one, compose refuses the file.
    refused = subprocess.run([*compose, "config"], cwd=REPO, capture_output=True, text=True, env=_without_cluster_secret())
    assert refused.returncode != 0 and "LEARNPULSE_CLUSTER_SECRET" in refused.stderr
    res = subprocess.run([*compose, "config"], cwd=REPO, capture_output=True, text=True, env=CLUSTER_ENV)
    assert res.returncode == 0, res.stderr
    listed = subprocess.run([*compose, "config", "--services"], cwd=REPO, capture_output=True, text=True, env=CLUSTER_ENV)
    services = set(listed.stdout.split())
    assert {"kafka-1", "kafka-2", "kafka-3", "gateway-1", "gateway-2", "balancer", "worker-1", "worker-2",
            "sink-1", "sink-2", "dashboard", "postgres", "keeper", "clickhouse-1", "clickhouse-2"} <= services, services  # fmt: skip
    assert "KAFKA_MIN_INSYNC_REPLICAS: '2'" in res.stdout or "KAFKA_MIN_INSYNC_REPLICAS: 2" in res.stdout
    # The balancer's entrypoint renders deploy/haproxy/haproxy.cfg: run it here (gateway
    # names as loopback addresses, haproxy -c instead of starting) and let haproxy judge it.
    text = (REPO / "docker-compose.cluster.yml").read_text()
    block = text.split("- >-\n", 1)[1].split("\n    volumes:", 1)[0]
    script = " ".join(line.strip() for line in block.splitlines())
    script = script.replace("/etc/learnpulse/haproxy.cfg", str(REPO / "deploy" / "haproxy" / "haproxy.cfg"))
    script = script.replace("/tmp/haproxy.cfg", str(tmp_path / "haproxy.cfg"))
    script = script.replace("gateway-1:8088", "127.0.0.1:8088").replace("gateway-2:8088", "127.0.0.1:8089")
    assert "exec haproxy -W -db -f" in script, script
    script = script.replace("exec haproxy -W -db -f", f"{_tool('haproxy')} -c -f")
    check = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "server gateway-2 127.0.0.1:8089" in (tmp_path / "haproxy.cfg").read_text()


def test_docker_compose_cluster_replicas_name_themselves_and_meet_in_keeper():
    """The ClickHouse cluster of docker-compose.cluster.yml: every replica in remote_servers is a
    service that names itself ({replica}) distinctly, Keeper is a service, and the pipeline's
    cluster setting names the cluster of remote_servers."""
    import xml.etree.ElementTree as ET

    import yaml

    res = subprocess.run([_tool("docker-compose"), "-f", str(REPO / "docker-compose.cluster.yml"), "config"],
                         cwd=REPO, capture_output=True, text=True, env=CLUSTER_ENV)  # fmt: skip
    assert res.returncode == 0, res.stderr
    services = yaml.safe_load(res.stdout)["services"]
    cluster = ET.parse(REPO / "deploy" / "clickhouse" / "cluster" / "cluster.xml").getroot()
    (name,) = [c.tag for c in cluster.find("remote_servers")]
    hosts = [r.findtext("host") for r in cluster.iter("replica") if r.findtext("host")]
    assert hosts and len(set(hosts)) == len(hosts)
    for host in hosts:
        env = services[host]["environment"]
        assert env["LEARNPULSE_REPLICA"] == host, host
        assert any("cluster.xml" in str(v) for v in services[host]["volumes"]), host
    assert cluster.find("macros/replica").get("from_env") == "LEARNPULSE_REPLICA"
    (keeper_host,) = [n.findtext("host") for n in cluster.find("zookeeper")]
    keeper = ET.parse(REPO / "deploy" / "clickhouse" / "cluster" / "keeper.xml").getroot()
    assert keeper_host in services and keeper.findtext("keeper_server/tcp_port") == cluster.findtext("zookeeper/node/port")
    assert [s.findtext("hostname") for s in keeper.iter("server")] == [keeper_host]
    for process in ("setup", "sink-1", "sink-2", "worker-1", "dashboard"):
        env = services[process]["environment"]
        assert env["LEARNPULSE_CLICKHOUSE__CLUSTER__NAME"] == name, process
    # Each sink writes to a replica of the cluster, and the two to different ones.
    sinks = {services[s]["environment"]["LEARNPULSE_CLICKHOUSE__URL"].split("@")[1].split(":")[0] for s in ("sink-1", "sink-2")}
    assert sinks == set(hosts)
