"""The monitoring profile's files agree with each other: Grafana's provisioning, its dashboards,
Prometheus's configuration, and the compose services that mount them."""

from __future__ import annotations

import json

from tests.helpers import ROOT
from tests.operations.conftest import DASHBOARDS, DEPLOY, load_yaml
from tests.operations.queries import dashboard_exprs, metric_names

GRAFANA = DEPLOY / "grafana"


def compose_services() -> dict[str, dict]:
    return load_yaml(ROOT / "docker-compose.yml")["services"]


def test_the_query_reader_finds_series_not_functions_labels_or_durations() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route!~"/x{1}"}[5m])))'
        " > 1e3 unless on(job) b offset 30m and c:recorded or absent(d{job='api'} == 1)"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c:recorded", "d"}


def test_every_panel_queries_the_provisioned_datasource() -> None:
    (datasource,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")[
        "datasources"
    ]
    titles = {path.stem: json.loads(path.read_text()) for path in DASHBOARDS}
    assert set(titles) == {"api", "workers", "trading", "binance", "llm", "events"}
    assert len({dashboard["uid"] for dashboard in titles.values()}) == len(titles)
    for dashboard in titles.values():
        assert dashboard["panels"], dashboard["title"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
            assert panel["targets"], panel["title"]
    assert all(metric_names(expr) for expr in dashboard_exprs().values())


def test_the_monitoring_profile_mounts_these_files_and_publishes_grafana_on_loopback() -> None:
    services = compose_services()
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    # Nothing else needs them: a plain `docker compose up` starts no monitoring.
    assert [name for name, s in services.items() if "profiles" in s] == ["prometheus", "grafana"]
    assert "metrics" in prometheus["networks"] and "ports" not in prometheus
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    for service in (prometheus, grafana):
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    # The admin password comes from the environment, and Grafana refuses to start without it.
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-}"
    assert 'test -n "$$GF_SECURITY_ADMIN_PASSWORD"' in grafana["entrypoint"][-1]
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "botmarket.yml")
    dashboards_mount = next(v for v in grafana["volumes"] if "grafana/dashboards" in v)
    assert dashboards_mount.split(":")[1] == provider["providers"][0]["options"]["path"]


def test_prometheus_scrapes_the_exposed_metrics_ports() -> None:
    services = compose_services()
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    targets = {
        job["job_name"]: (name, sd["port"])
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
        for name in sd["names"]
    }
    assert targets == {"api": ("api", 9100), "worker": ("worker", 9101)}
    for service, port in targets.values():
        assert str(port) in services[service]["expose"]
        assert "metrics" in services[service]["networks"]
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert set(config["rule_files"]) <= mounted
