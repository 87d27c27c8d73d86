"""Monitoring files: the Prometheus alert rules and their promtool unit tests, the scrape config,
the Grafana dashboard and its provisioning, and docker-compose's `monitoring` profile.

No Redis. The promtool tests skip only when promtool is not installed (``scripts/test``
installs Debian's ``prometheus`` as root); the rest always runs.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from worker.waiting import wait_until
import requests
from ruamel.yaml import YAML  # comes with check-jsonschema (no PyYAML here)

from worker.domain import states
from worker.local.redis_server import free_port
from worker.ops.metrics import ENDPOINT_STATES

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROM = ROOT / "deploy" / "prometheus"
ALERTS, ALERTS_TEST, PROM_CONFIG = PROM / "alerts.yml", PROM / "alerts_test.yml", PROM / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "vexora.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "vexora.yml"
COMPOSE = ROOT / "docker-compose.yml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian: apt-get install prometheus; scripts/test does it as root)")

# The web app's GET /metrics (worker/ops/metrics.py), exactly these names; the histogram as exposed.
VEXORA_METRICS = {
    "vexora_jobs", "vexora_jobs_needing_review", "vexora_oldest_job_age_seconds", "vexora_transitions_total",
    "vexora_gateway_requests_total", "vexora_callbacks_total", "vexora_reconcile_total",
    "vexora_reconcile_last_pass_timestamp_seconds",
    "vexora_stream_unread_entries", "vexora_stream_oldest_unread_age_seconds",
    "vexora_webhook_deliveries_total", "vexora_webhook_endpoints",  # issue 22
    *(f"vexora_gateway_request_duration_seconds_{s}" for s in ("bucket", "sum", "count")),
}
OPEN_STATES = {"queued", "submitting", "paying", "partially_paid", "unknown"}
ALL_STATES = OPEN_STATES | {"succeeded", "failed", "rejected", "declined"}
# label values the expressions may name, by label (a regex matcher's alternatives each count)
LABEL_VALUES = {
    "state": OPEN_STATES | set(ENDPOINT_STATES),  # jobs' open states; vexora_webhook_endpoints
    "from": ALL_STATES | {"new"},
    "to": ALL_STATES,
    "op": {"checkout", "query"},
    "outcome": {"ok", "declined", "not_found", "refused", "5000", "other_code", "http_429", "http_4xx", "http_5xx",
                "timeout", "connection", "invalid_answer"},
    "result": {"accepted", "bad_signature", "invalid", "refused_source", "too_large", "unavailable",  # callbacks
               "refused_fields", "platform_mismatch", "refused_merchant", "account_mismatch",
               "resent", "redriven", "lease_live", "unchanged", "not_known", "check_failed", "needs_review",
               "query_refused", "refused_needs_review",
               "deferred", "skipped", *(f"settled_{s}" for s in ALL_STATES),  # the reconciler
               "delivered", "delivered_after_retry", "gone", "retry", "failed"},  # webhook deliveries
    "job": {"vexora-web", "flower"},
    "stream": {"webhooks", "events"},
}
REQUIRED_ALERTS = {  # what the rules must cover (issue 13)
    "VexoraJobsStuckUnknown", "VexoraJobsStuckSubmitting", "VexoraReviewQueueNotEmpty",
    "VexoraGatewayErrorRatioHigh", "VexoraCallbackBadSignatures", "VexoraReconcilerNoRecentPass",
    "VexoraReconcilerMetricMissing", "VexoraWebDown",
    "VexoraWebhookOutboxLagging",  # issue 20: the outbox's lag
    "VexoraCallbackResplitRefused",  # issue 20: a genuine signature on other fields
    "VexoraWebhookDeliveriesFailing", "VexoraWebhookEndpointDisabled",  # issue 22
}


def _yaml(path: Path):
    return YAML(typ="safe", pure=True).load(path.read_text())


def _dump(doc, path: Path) -> Path:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with path.open("w") as fh:
        yaml.dump(doc, fh)
    return path


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def rules(doc: dict | None = None) -> dict[str, dict]:
    doc = doc if doc is not None else _yaml(ALERTS)
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


# -- PromQL: the metric names and label values an expression uses ---------------------------------
_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "offset", "inf", "nan"}
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: every identifier that is not a function or an
    aggregation (followed by ``(``), a keyword, a label (in ``{}`` or a grouping clause), a
    string, a duration or a number."""
    e = re.sub(_STRING, '""', expr)
    e = re.sub(r"\{[^}]*\}", "{}", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\boffset\s+-?[\w$]+", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?", e):
        if not m.group(2) and m.group(1).lower() not in _KEYWORDS:
            names.add(m.group(1))
    return names


def label_matchers(expr: str) -> list[tuple[str, str, str]]:
    """``(label, operator, value)`` for every matcher inside ``{...}``."""
    found = []
    for braces in re.findall(r"\{((?:[^}\"]|\"(?:[^\"\\]|\\.)*\")*)\}", expr):
        found += re.findall(r"([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"", braces)
    return found


def test_the_promql_helpers_find_what_they_should():
    assert OPEN_STATES == set(states.OPEN) and ALL_STATES == set(states.ALL)
    expr = ('sum by (op, le) (rate(vexora_gateway_request_duration_seconds_bucket{op="a b", le!="x"}[5m] offset 1h))'
            ' / on() group_left(state) max(vexora_jobs) > bool 1e3 and up{job=~"vexora-web|flower"}'
            ' unless absent(vexora_reconcile_total) or histogram_quantile(0.5, x:y_z[$__rate_interval])'
            ' - time() + sum(flower_events_total) without (worker)')
    assert metric_names(expr) == {"vexora_gateway_request_duration_seconds_bucket", "vexora_jobs", "up",
                                  "vexora_reconcile_total", "x:y_z", "flower_events_total"}
    assert label_matchers(expr) == [("op", "=", "a b"), ("le", "!=", "x"), ("job", "=~", "vexora-web|flower")]


def check_expression(where: str, expr: str) -> list[str]:
    """What is wrong with one expression's names and label values (empty: nothing)."""
    problems = []
    for name in sorted(metric_names(expr)):
        if name not in VEXORA_METRICS and name != "up" and not name.startswith("flower_"):
            problems.append(f"{where}: unknown metric {name!r} in {expr!r}")
    for label, op, value in label_matchers(expr):
        if label in LABEL_VALUES:
            values = value.split("|") if op in ("=~", "!~") else [value]
            unknown = [v for v in values if v not in LABEL_VALUES[label]]
            if unknown:
                problems.append(f"{where}: {label} {op} {value!r}: unknown {unknown} in {expr!r}")
    return problems


# -- alerts.yml -----------------------------------------------------------------------------------
@needs_promtool
def test_alert_rules_pass_promtool_check():
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout, result.stdout


def test_alert_rules_cover_the_issue_and_say_what_to_do():
    found = rules()
    assert REQUIRED_ALERTS <= set(found), sorted(REQUIRED_ALERTS - set(found))
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["annotations"]["summary"].strip(), name
        description = rule["annotations"]["description"]
        assert 'README: "Operate"' in description, f"{name}: no runbook pointer"
    assert found["VexoraWebDown"]["labels"]["severity"] == "page"
    assert "vexora_jobs_needing_review" in found["VexoraReviewQueueNotEmpty"]["expr"]
    assert found["VexoraReviewQueueNotEmpty"]["for"] == "5m"
    assert 'state="unknown"' in found["VexoraJobsStuckUnknown"]["expr"]
    assert 'state="submitting"' in found["VexoraJobsStuckSubmitting"]["expr"]
    assert "time() - " in found["VexoraReconcilerNoRecentPass"]["expr"]
    assert "absent(vexora_reconcile_last_pass_timestamp_seconds)" in found["VexoraReconcilerMetricMissing"]["expr"]
    assert 'up{job="vexora-web"} == 0' in found["VexoraWebDown"]["expr"]


def test_alert_rules_use_only_the_exposed_metrics():
    problems = []
    for name, rule in rules().items():
        assert metric_names(rule["expr"]), f"{name}: no metric in {rule['expr']!r}"
        problems += check_expression(name, rule["expr"])
    assert not problems, "\n".join(problems)


# -- alerts_test.yml ------------------------------------------------------------------------------
@needs_promtool
def test_alert_rule_unit_tests_pass():
    result = promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rule_unit_tests_cover_every_alert_firing_and_quiet():
    doc = _yaml(ALERTS_TEST)
    assert doc["rule_files"] == ["alerts.yml"]
    fired, quiet = set(), set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fired == set(rules()), f"never seen firing: {sorted(set(rules()) - fired)}"
    assert quiet >= REQUIRED_ALERTS, f"never seen quiet: {sorted(REQUIRED_ALERTS - quiet)}"


def _drop(name):
    def breakage(doc):
        for group in doc["groups"]:
            group["rules"] = [r for r in group["rules"] if r.get("alert") != name]
    return breakage


def _set(name, key, value):
    return lambda doc: rules(doc)[name].update({key: value})


def _expr(name, old, new):
    def breakage(doc):
        rule = rules(doc)[name]
        assert old in rule["expr"], (name, old)
        rule["expr"] = rule["expr"].replace(old, new)
    return breakage


def _label(name, key, value):
    return lambda doc: rules(doc)[name]["labels"].update({key: value})


BREAKAGES = {
    "review alert without its 5 minutes": _set("VexoraReviewQueueNotEmpty", "for", "0m"),
    "review alert on an empty queue": _expr("VexoraReviewQueueNotEmpty", "> 0", ">= 0"),
    "stuck unknown after an hour": _expr("VexoraJobsStuckUnknown", "> 1800", "> 3600"),
    "stuck unknown on any state": _expr("VexoraJobsStuckUnknown", 'state="unknown"', 'state=~".+"'),
    "stuck submitting after 5 minutes": _expr("VexoraJobsStuckSubmitting", "> 120", "> 300"),
    "no reconciler-pass alert": _drop("VexoraReconcilerNoRecentPass"),
    "reconciler allowed 50 minutes": _expr("VexoraReconcilerNoRecentPass", "> 300", "> 3000"),
    "signature alert on accepted callbacks": _expr("VexoraCallbackBadSignatures", "bad_signature", "accepted"),
    "declines counted as errors": _expr("VexoraGatewayErrorRatioHigh", "ok|declined|not_found", "ok"),
    "no minimum traffic": _expr("VexoraGatewayErrorRatioHigh", ">= 20", ">= 0"),
    "secret-mismatch page ignores accepted callbacks": _expr("VexoraCallbacksAllBadSignature", "unless", "or"),
    "web down only when absent": _expr("VexoraWebDown", 'up{job="vexora-web"} == 0 or ', ""),
    "web down as a ticket": _label("VexoraWebDown", "severity", "ticket"),
    "outbox alert on the job events": _expr("VexoraWebhookOutboxLagging", 'stream="webhooks"', 'stream=~".+"'),
    "outbox alert after an hour": _expr("VexoraWebhookOutboxLagging", "> 300", "> 3600"),
    "delivery alert on refusals only": _expr("VexoraWebhookDeliveriesFailing", 'result=~"retry|failed|gone"',
                                             'result="failed"'),
    "delivery alert without minimum traffic": _expr("VexoraWebhookDeliveriesFailing", ">= 10", ">= 0"),
    "delivery alert at 60 %": _expr("VexoraWebhookDeliveriesFailing", "> 0.25", "> 0.6"),
    "disabled alert counts the operator's": _expr("VexoraWebhookEndpointDisabled", 'state="disabled"',
                                                  'state=~"disabled.*"'),
    "disabled alert as a ticket": _label("VexoraWebhookEndpointDisabled", "severity", "ticket"),
}


@pytest.fixture(scope="module")
def rewritten_rules(tmp_path_factory) -> dict:
    """alerts.yml as parsed, after checking that the same rules written back still pass."""
    doc, tmp = _yaml(ALERTS), tmp_path_factory.mktemp("intact")
    shutil.copy(ALERTS_TEST, tmp / "alerts_test.yml")
    _dump(doc, tmp / "alerts.yml")
    intact = promtool("test", "rules", "alerts_test.yml", cwd=tmp)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    return doc


@needs_promtool
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_alert_rule_unit_tests_fail_on_a_broken_rule(rewritten_rules, breakage, tmp_path):
    shutil.copy(ALERTS_TEST, tmp_path / "alerts_test.yml")
    broken = copy.deepcopy(rewritten_rules)
    BREAKAGES[breakage](broken)
    assert broken != rewritten_rules
    _dump(broken, tmp_path / "alerts.yml")
    result = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0, f"{breakage}: promtool test rules still passes\n{result.stdout}"


@needs_promtool
def test_promtool_check_rejects_a_syntax_error(tmp_path):
    text = ALERTS.read_text()
    broken = text.replace("max(vexora_jobs_needing_review) > 0", "max(vexora_jobs_needing_review > 0", 1)
    assert broken != text
    (tmp_path / "alerts.yml").write_text(broken)
    result = promtool("check", "rules", str(tmp_path / "alerts.yml"))
    assert result.returncode != 0, result.stdout


# -- prometheus.yml -------------------------------------------------------------------------------
def _scrape_jobs() -> dict[str, dict]:
    return {job["job_name"]: job for job in _yaml(PROM_CONFIG)["scrape_configs"]}


@needs_promtool
def test_prometheus_config_passes_promtool_check(tmp_path):
    # checked as mounted: alerts.yml beside it; the token file the compose entrypoint writes
    # exists only in the container, so it is pointed at an empty one here
    token_file = tmp_path / "metrics_token"
    token_file.write_text("")
    text = PROM_CONFIG.read_text()
    assert text.count("/run/vexora/metrics_token") == 1
    (tmp_path / "prometheus.yml").write_text(text.replace("/run/vexora/metrics_token", str(token_file)))
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout + result.stderr

    (tmp_path / "alerts.yml").write_text("groups: [{name: x, rules: [{alert: A, expr: 'up ==='}]}]\n")
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode != 0, "the rule file is not checked with the config"


def test_prometheus_scrapes_the_compose_services():
    config = _yaml(PROM_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    jobs = _scrape_jobs()
    web, flower = jobs["vexora-web"], jobs["flower"]
    assert web.get("metrics_path", "/metrics") == "/metrics"
    assert [c["targets"] for c in web["static_configs"]] == [["web:8000"]]
    assert flower.get("metrics_path", "/metrics") == "/metrics"
    assert [c["targets"] for c in flower["static_configs"]] == [["flower:5555"]]
    assert "basic_auth" not in flower  # Flower's /metrics is open: see the Flower test below

    services = _yaml(COMPOSE)["services"]
    # the web listens on 0.0.0.0:$PORT (gunicorn.conf.py), PORT=8000 in the image
    assert "-c /app/gunicorn.conf.py" in services["web"]["command"]
    assert "PORT=8000" in (ROOT / "Dockerfile").read_text()
    assert "--port=5555" in services["flower"]["command"]
    # the bearer token for VEXORA_METRICS_TOKEN: the file the prometheus entrypoint writes, on its tmpfs
    token_file = web["authorization"]["credentials_file"]
    prometheus = services["prometheus"]
    assert token_file in " ".join(prometheus["entrypoint"])
    assert "$$VEXORA_METRICS_TOKEN" in COMPOSE.read_text()
    assert str(Path(token_file).parent) in prometheus["tmpfs"]
    assert prometheus["environment"]["VEXORA_METRICS_TOKEN"] == "${VEXORA_METRICS_TOKEN:-}"


@pytest.mark.integration
def test_flower_serves_metrics_without_its_basic_auth(tmp_path):
    """Why the flower scrape job has no credentials: with basic auth on (FLOWER_BASIC_AUTH, as
    deployed), / is 401 but /metrics answers. Started with an unreachable broker (no Redis needed)."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "VEXORA_BASE_URL": "http://127.0.0.1:9", "VEXORA_ENV": "sandbox",
           "VEXORA_MERCHANT_NO": "m", "VEXORA_APP_SECRET": "s", "VEXORA_NOTIFY_URL": "http://127.0.0.1:9/n",
           "FLOWER_BASIC_AUTH": "u:p"}
    log = (tmp_path / "flower.log").open("w")
    proc = subprocess.Popen([str(BIN / "celery"), "-A", "worker", "flower", f"--port={port}"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        def answering() -> bool:
            assert proc.poll() is None, (tmp_path / "flower.log").read_text()
            try:
                return requests.get(url + "/healthcheck", timeout=1) is not None
            except requests.ConnectionError:
                return False
        wait_until(answering, timeout=30, interval=0.2, what="Flower to answer")
        assert requests.get(url + "/", timeout=5).status_code == 401
        metrics = requests.get(url + "/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "flower_worker_online" in metrics.text and "flower_events_total" in metrics.text
    finally:
        proc.terminate()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:  # it waits for the broker it never reached
            proc.kill()
            proc.wait(10)
        log.close()


# -- Grafana --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    flat = []
    for panel in dashboard["panels"]:
        flat.append(panel)
        flat += panel.get("panels", [])  # a collapsed row keeps its panels inside
    return [p for p in flat if p["type"] != "row"]


def _queries(dashboard: dict) -> list[tuple[str, str]]:
    return [(f"{p['title']} {t['refId']}", t["expr"]) for p in _panels(dashboard) for t in p["targets"]]


def test_dashboard_uses_only_the_exposed_metrics_and_shows_each(dashboard):
    assert dashboard["uid"] and dashboard["title"]
    queries = _queries(dashboard)
    assert all(p.get("targets") for p in _panels(dashboard)), "a panel without a query"
    problems, used = [], set()
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        used |= names
        problems += check_expression(where, expr)
    assert not problems, "\n".join(problems)
    shown = {n.removesuffix("_bucket") for n in used} - {"vexora_gateway_request_duration_seconds_sum",
                                                         "vexora_gateway_request_duration_seconds_count"}
    wanted = {n for n in VEXORA_METRICS if not n.startswith("vexora_gateway_request_duration_seconds_")}
    assert wanted | {"vexora_gateway_request_duration_seconds"} <= shown, sorted(wanted - shown)
    exprs = " ".join(e for _, e in queries)
    for quantile in ("0.5", "0.95"):
        assert f"histogram_quantile({quantile}, sum by (op, le)" in exprs


def test_dashboard_queries_go_through_the_datasource_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    provisioned = _yaml(DATASOURCES)["datasources"]
    assert [d["uid"] for d in provisioned] == [variables["datasource"]["current"]["value"]]
    for panel in _panels(dashboard):
        refs = [panel["datasource"], *(t["datasource"] for t in panel["targets"])]
        assert all(r == {"type": "prometheus", "uid": "${datasource}"} for r in refs), panel["title"]


@needs_promtool
def test_dashboard_queries_are_valid_promql(dashboard, tmp_path):
    """Each query as a recording rule for `promtool check rules`, Grafana's interval macros filled in."""
    macros = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}
    recorded = []
    for i, (where, expr) in enumerate(_queries(dashboard)):
        for macro, value in macros.items():
            expr = expr.replace(macro, value)
        assert "$" not in expr, f"{where}: unknown macro in {expr!r}"
        recorded.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = _dump({"groups": [{"name": "dashboard", "rules": recorded}]}, tmp_path / "dashboard.yml")
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(recorded)} rules found" in result.stdout


def test_grafana_provisioning_matches_compose():
    services = _yaml(COMPOSE)["services"]
    (datasource,) = _yaml(DATASOURCES)["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]
    (provider,) = _yaml(DASHBOARD_PROVIDERS)["providers"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/vexora.json"] == f"{provider['options']['path']}/vexora.json"
    assert mounts["./deploy/grafana/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["./deploy/grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"


# -- docker-compose.yml ---------------------------------------------------------------------------
def test_compose_monitoring_profile_is_prometheus_and_grafana_only():
    services = _yaml(COMPOSE)["services"]
    monitoring = {name for name, svc in services.items() if "monitoring" in (svc.get("profiles") or [])}
    assert monitoring == {"prometheus", "grafana"}
    for name in monitoring:
        assert services[name]["profiles"] == ["monitoring"], name
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"]), f"{name}: localhost only"
        for volume in services[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts a missing {source}"
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    # a plain `docker compose up` starts every service without a profile: the product, no monitoring
    plain = {name for name, svc in services.items() if not svc.get("profiles")}
    assert plain == {"redis", "worker", "webhooks", "beat", "web", "flower"}


# -- the README's metrics table ---------------------------------------------------------------------
def test_the_readme_metrics_table_lists_every_metric():
    """Issue 22: vexora_webhook_deliveries_total was exposed but missing from the README's table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Metrics\n", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| .+ \|$", section, flags=re.M)
    listed = {name for cell in rows for name in re.findall(r"`(vexora_\w+)", cell)}
    exposed = {n for n in VEXORA_METRICS if not n.startswith("vexora_gateway_request_duration_seconds_")}
    assert listed == exposed | {"vexora_gateway_request_duration_seconds"}, sorted(listed ^ exposed)
