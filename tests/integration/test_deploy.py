"""Deployment files: docker-compose.yml against the Compose spec and its healthchecks run
against the real processes, the Dockerfile read for its layers, health check and init,
.env.example against the settings, and the Procfile run for real under honcho (no Docker engine
needed)."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import json

import pytest
import redis
import requests
from ruamel.yaml import YAML  # comes with check-jsonschema (no PyYAML here)

from worker.client import enqueue_checkout, get_checkout
from worker.config.settings import Settings
from worker.local.redis_server import free_port
from worker.runtime.wiring import Runtime
from worker.waiting import wait_until
from tests.support.processes import Process
from tests.support.stack import APP_SECRET, MERCHANT_NO, payload

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: honcho, check-jsonschema, celery, gunicorn
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
PROCFILE = ROOT / "Procfile"
PROCESS_TYPES = ["web", "worker", "webhooks", "beat", "flower", "sandbox"]
FINAL = ("succeeded", "partially_paid", "failed")


# -- docker-compose.yml -------------------------------------------------------------------------
def schema_check(path: Path) -> subprocess.CompletedProcess:
    """The venv's check-jsonschema with its bundled Compose spec; any network use would fail."""
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": ""}
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def compose() -> dict:
    return YAML(typ="safe", pure=True).load(COMPOSE.read_text())  # anchors and merge keys resolved


def test_compose_file_matches_the_compose_spec():
    result = schema_check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services(compose):
    assert "version" not in compose
    services = compose["services"]
    assert set(services) >= {"redis", "worker", "beat", "web", "flower", "sandbox"}

    redis_svc = services["redis"]
    assert redis_svc["image"].startswith("redis:7")
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert flag in redis_svc["command"]
    assert any(str(v).endswith(":/data") for v in redis_svc["volumes"])
    named = str(redis_svc["volumes"][0]).split(":")[0]
    assert named in (compose.get("volumes") or {}), "redis data must be a named volume"
    assert "redis-cli" in " ".join(redis_svc["healthcheck"]["test"])

    app_services = ["worker", "webhooks", "beat", "web", "flower", "sandbox"]
    for name in app_services:
        svc = services[name]
        assert svc["image"] == "vexora-checkout:latest", name
        assert svc["env_file"] == ".env", name
        assert interpolated(svc["environment"]["REDIS_URL"]) == "redis://redis:6379/0", name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name

    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert "-Q checkout,callbacks,reconcile " in worker["command"] and "--pool threads" in worker["command"]
    assert "-Q webhooks " in services["webhooks"]["command"]  # deliveries never take a checkout thread
    assert worker["stop_grace_period"]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert services["web"]["command"].startswith("gunicorn worker.web:app")
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    # Flower's login: in its environment (Flower reads FLOWER_BASIC_AUTH itself), never on its
    # command line, and compose refuses to start without it
    flower = services["flower"]
    assert "basic-auth" not in flower["command"] and "FLOWER_BASIC_AUTH" not in flower["command"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")

    assert services["sandbox"]["profiles"] == ["dev"]
    # everything else runs on a plain `up`; the monitoring services only with their profile
    assert {n: svc["profiles"] for n, svc in services.items() if svc.get("profiles")} == {
        "sandbox": ["dev"], "prometheus": ["monitoring"], "grafana": ["monitoring"],
        "redis-replica": ["ha"], "sentinel-1": ["ha"], "sentinel-2": ["ha"], "sentinel-3": ["ha"],
        "rabbitmq": ["rabbitmq"]}
    # with the rabbitmq profile the app waits for the broker; without it, for Redis only
    for name in app_services:
        assert services[name]["depends_on"]["rabbitmq"] == {"condition": "service_healthy", "required": False}, name
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.13")


# what gunicorn.conf.py sets: never repeated where the web is started
CONF_FLAGS = ("--worker-class", "--threads", "--workers", "--no-control-socket", "--log-config")


def test_the_web_is_started_with_gunicorn_conf_everywhere(compose):
    procfile_web = next(line.split(":", 1)[1].strip() for line in PROCFILE.read_text().splitlines()
                        if line.startswith("web:"))
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(next(line for line in dockerfile.splitlines() if line.startswith("CMD "))[4:])
    commands = {
        "Procfile": procfile_web.split(),  # honcho runs it from the repository: a relative path
        "compose": compose["services"]["web"]["command"].split(),
        "Dockerfile CMD": cmd,
    }
    for where, argv in commands.items():
        assert argv[:2] == ["gunicorn", "worker.web:app"], where
        assert "-c" in argv and argv[argv.index("-c") + 1].endswith("gunicorn.conf.py"), where
        assert not [flag for flag in argv if flag.split("=")[0] in CONF_FLAGS], where
        assert "--bind" not in argv, f"{where}: the file binds 0.0.0.0:$PORT"
    # the image has the file where compose and CMD point, and the PORT it binds
    assert "WORKDIR /app" in dockerfile and "COPY gunicorn.conf.py ./" in dockerfile
    assert commands["compose"][commands["compose"].index("-c") + 1] == "/app/gunicorn.conf.py"
    assert "PORT=8000" in dockerfile and "8000:8000" in compose["services"]["web"]["ports"]


HEALTHCHECKED = ["worker", "webhooks", "beat", "web", "flower", "sandbox"]


def node_name(command: str) -> str:
    """The Celery node name a worker command gives itself (``-n``; default ``celery@%h``)."""
    args = shlex.split(command)
    for flag in ("-n", "--hostname"):
        if flag in args:
            return args[args.index(flag) + 1]
    named = [a.split("=", 1)[1] for a in args if a.startswith("--hostname=")]
    return named[0] if named else "celery@%h"


def test_compose_healthchecks(compose):
    services = compose["services"]
    for name in HEALTHCHECKED:
        check = services[name].get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL") and not check.get("disable"), name
        assert all(check.get(k) for k in ("interval", "timeout", "retries")), name
    for name in ("worker", "webhooks"):
        test = services[name]["healthcheck"]["test"]
        # the node the command names, with Celery's %h as the container's $HOSTNAME
        wanted = node_name(services[name]["command"]).replace("%h", "$${HOSTNAME}")
        assert test[0] == "CMD-SHELL" and f"celery -A worker inspect ping -d {wanted} " in test[1], (name, test)
    assert node_name(services["webhooks"]["command"]) == "webhooks@%h"
    beat = services["beat"]
    schedule = shlex.split(beat["command"])[shlex.split(beat["command"]).index("--schedule") + 1]
    assert beat["healthcheck"]["test"][1:5] == ["python", "-m", "worker.ops.healthcheck", "beat"]
    assert beat["healthcheck"]["test"][5] == schedule
    flower = services["flower"]
    port = re.search(r"--port=(\d+)", flower["command"]).group(1)
    assert flower["healthcheck"]["test"][-1] == f"http://127.0.0.1:{port}/healthcheck"
    assert services["sandbox"]["healthcheck"]["test"][-1].startswith("http://127.0.0.1:8900/")


def interpolated(text: str) -> str:
    """What Compose makes of a string: ``$$`` is ``$``, ``${VAR:-default}`` its default."""
    text = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text.replace("$$", "\0"))
    return text.replace("\0", "$")


def run_check(test: list[str], env: dict, wait: bool = True):
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_compose_healthchecks_pass_on_the_real_processes_and_fail_without_them(compose, redis_url, tmp_path):
    """Each app service's command and healthcheck as compose has them (ports and the schedule
    file moved to free ones), $HOSTNAME set as Docker sets it: healthy while the process runs,
    unhealthy for another node name or once the process is gone."""
    db_url = urlsplit(redis_url)._replace(path="/4").geturl()
    redis.Redis.from_url(db_url).flushdb()
    services = compose["services"]
    port, schedule = str(free_port()), str(tmp_path / "celerybeat-schedule")

    def moved(text: str) -> str:
        return interpolated(text).replace("5555", port).replace("/tmp/celerybeat-schedule", schedule)

    password = secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEXORA_") and k != "REDIS_URL"}
    env.update({"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                "REDIS_URL": db_url, "VEXORA_BASE_URL": "http://127.0.0.1:9", "VEXORA_MERCHANT_NO": MERCHANT_NO,
                "VEXORA_APP_SECRET": APP_SECRET, "VEXORA_NOTIFY_URL": "http://127.0.0.1:9/vexora/notify",
                "HOSTNAME": socket.gethostname(), "FLOWER_BASIC_AUTH": f"ops:{password}"})
    names = ["worker", "webhooks", "beat", "flower"]
    checks = {name: [moved(part) for part in services[name]["healthcheck"]["test"]] for name in names}
    procs = {name: Process(name, shlex.split(moved(services[name]["command"])), env, tmp_path / f"{name}.log")
             for name in names}
    try:
        for proc in procs.values():
            proc.start()

        def healthy(name):
            if not procs[name].alive:
                return "dead"
            return run_check(checks[name], env)[0] == 0
        for name in names:
            wait_until(lambda: healthy(name), timeout=60, interval=1, what=f"{name} healthy")
            assert procs[name].alive, procs[name].log()
        # Flower is up with its login from the environment only
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 401
        assert password not in Path(f"/proc/{procs['flower'].popen.pid}/cmdline").read_text()

        # the node name matters: a check that pings another node fails
        wrong = {**env, "HOSTNAME": "not-" + socket.gethostname()}
        pending = {name: run_check(checks[name], wrong, wait=False) for name in ("worker", "webhooks")}
        for name, proc in pending.items():
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode != 0, (name, out)

        procs["flower"].stop()
        code, out = run_check(checks["flower"], env)
        assert code == 1 and "unhealthy" in out, out
        procs["beat"].stop()  # it writes the file once more as it stops: then make it old
        old = time.time() - 3600
        for suffix in ("", ".db", ".dat", ".bak", ".dir"):
            if os.path.exists(schedule + suffix):
                os.utime(schedule + suffix, (old, old))
        code, out = run_check(checks["beat"], env)
        assert code == 1 and "unhealthy" in out, out
    finally:
        for proc in procs.values():
            proc.stop()
        redis.Redis.from_url(db_url).flushdb()


# -- Dockerfile (no engine here: read, instruction by instruction) -------------------------------
def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order; continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", "", "\n".join(lines))
    return [(m.group(1).upper(), m.group(2).strip())
            for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", joined, re.MULTILINE)]


def test_dockerfile_installs_dependencies_in_a_layer_before_the_source():
    steps = dockerfile()
    index = {i: step for i, step in enumerate(steps)}
    copies = [(i, args) for i, (op, args) in index.items() if op in ("COPY", "ADD")]
    first_copy = copies[0]
    assert first_copy[1].split() == ["pyproject.toml", "./"], "only pyproject.toml before the dependencies"
    deps = next(i for i, (op, args) in index.items() if op == "RUN" and "pip install" in args)
    assert first_copy[0] < deps < copies[1][0], "the dependency layer sits between pyproject.toml and the code"
    source = [args.split()[0] for i, args in copies[1:]]
    assert {"worker", "schemas"} <= set(source) and "." not in source
    package = next(args for i, (op, args) in index.items() if op == "RUN" and i > copies[-1][0]
                   and "pip install" in args)
    assert "--no-deps" in package, "the code layer installs the package alone"

    # the dependency layer installs exactly what pyproject.toml asks for: run its listing here
    script = re.search(r'python -c "(.*?)"\s*>', steps[deps][1]).group(1)  # sh keeps its \\n
    listed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(listed) == set(project["build-system"]["requires"] + project["project"]["dependencies"]
                              + project["project"]["optional-dependencies"]["flower"])


def test_dockerfile_runs_under_tini_as_a_user_with_a_healthcheck():
    steps = dockerfile()
    ops = [op for op, _ in steps]
    assert ops[0] == "FROM"
    assert any(op == "RUN" and "apt-get install" in args and " tini" in args for op, args in steps)
    entrypoint = json.loads(next(args for op, args in steps if op == "ENTRYPOINT"))
    assert entrypoint == ["tini", "--"]
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0") and ops.index("USER") > max(
        i for i, op in enumerate(ops) if op == "RUN"), "nothing after the last USER runs as root"
    check = next(args for op, args in steps if op == "HEALTHCHECK")
    assert " CMD " in f" {check} " and "worker.ops.healthcheck http" in check and "/healthz" in check
    assert "--interval=" in check and "--timeout=" in check


BREAKAGES = {
    "unknown top-level key": lambda doc: doc.update(servics=doc["services"]),
    "misspelled service key": lambda doc: doc["services"]["worker"].update(depends_onn=["redis"]),
    "restart not a string": lambda doc: doc["services"]["web"].update(restart=5),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_schema_check_rejects_a_broken_compose_file(compose, breakage, tmp_path):
    broken = json.loads(json.dumps(compose))  # a deep copy; YAML 1.2 reads JSON
    assert schema_check(_write(tmp_path / "intact.json", broken)).returncode == 0
    BREAKAGES[breakage](broken)
    result = schema_check(_write(tmp_path / "broken.json", broken))
    assert result.returncode != 0, result.stdout


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path


# -- .env.example -------------------------------------------------------------------------------
def example_lines() -> dict[str, tuple[str, bool]]:
    """``NAME -> (value, commented)`` for every ``NAME=value`` or ``# NAME=value`` line."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            found[m.group(2)] = (m.group(3), bool(m.group(1)))
    return found


def test_env_example_names_every_setting():
    names = example_lines()
    env_vars = [var for var, _ in Settings.ENV.values()]
    missing = [var for var in [*env_vars, "VEXORA_APP_SECRET_FILE"] if var not in names]
    assert not missing, f".env.example lacks {missing}"
    required = {"REDIS_URL", "VEXORA_BASE_URL", "VEXORA_MERCHANT_NO", "VEXORA_APP_SECRET",
                "VEXORA_NOTIFY_URL", "VEXORA_API_TOKEN", "FLOWER_BASIC_AUTH", "WORKER_CONCURRENCY",
                "WEBHOOK_CONCURRENCY"}
    assert not [var for var in required if names[var][1]], "the variables a deployment sets are not commented out"


def test_env_example_shows_the_real_defaults():
    names = example_lines()
    defaults = Settings()
    for field_name, (var, _) in Settings.ENV.items():
        value, commented = names[var]
        if commented:  # a tunable, shown with its default
            parsed = Settings.from_env({var: value})
            assert getattr(parsed, field_name) == getattr(defaults, field_name), f"{var}={value}"


def test_env_example_names_every_interpolated_variable():
    # ``$${NAME}`` is Compose's escape: the container's shell expands it, Compose does not
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text() + PROCFILE.read_text()))
    assert used, "expected ${...} in docker-compose.yml and the Procfile"
    missing = sorted(used - set(example_lines()) - {"PORT"})  # honcho sets PORT itself
    assert not missing, f".env.example lacks {missing}"


# -- Procfile under honcho ----------------------------------------------------------------------
def test_procfile_process_types():
    types = [line.split(":", 1)[0] for line in PROCFILE.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert types == PROCESS_TYPES


def test_procfile_flower_has_no_password_on_its_command_line():
    flower = next(line.split(":", 1)[1] for line in PROCFILE.read_text().splitlines() if line.startswith("flower:"))
    assert "basic-auth" not in flower
    # named once, in the shell's check that it is set; the value never reaches an argument
    check, _, command = flower.partition("&&")
    assert check.strip().startswith(': "${FLOWER_BASIC_AUTH:?') and "FLOWER_BASIC_AUTH" not in command
    assert command.strip().startswith("exec celery -A worker flower")


@pytest.mark.parametrize("auth,starts", [("", False), ("ops:pw", True)])
def test_procfile_flower_refuses_to_start_without_its_login(auth, starts, tmp_path):
    """The Procfile's check, run as honcho runs it (sh -c), with `exec` swapped for `echo`."""
    flower = next(line.split(":", 1)[1] for line in PROCFILE.read_text().splitlines() if line.startswith("flower:"))
    env = {**os.environ, "FLOWER_BASIC_AUTH": auth}
    result = subprocess.run(["sh", "-c", flower.replace("exec celery", "echo celery")], env=env,
                            capture_output=True, text=True, timeout=10)
    assert (result.returncode == 0) == starts, result
    assert ("celery -A worker flower" in result.stdout) == starts
    if not starts:
        assert "set FLOWER_BASIC_AUTH=user:password" in result.stderr


def _marked(marker: bytes) -> list[int]:
    """Pids of live processes whose environment carries ``marker``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                if marker in fh.read().split(b"\0"):
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _up(url: str, **kwargs) -> int | None:
    try:
        return requests.get(url, timeout=2, **kwargs).status_code
    except (requests.ConnectionError, requests.Timeout):  # not listening, or still booting
        return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_procfile_runs_the_whole_product_under_honcho(redis_url, tmp_path):
    db_url = urlsplit(redis_url)._replace(path="/5").geturl()  # clear of the other modules' DB 0
    redis.Redis.from_url(db_url).flushdb()
    web_port, sandbox_port, flower_port = free_port(), free_port(), free_port()
    web_url, sandbox_url = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sandbox_port}"
    flower_url = f"http://127.0.0.1:{flower_port}"
    flower_password = secrets.token_urlsafe(12)
    app_env = {
        "REDIS_URL": db_url,
        "VEXORA_BASE_URL": sandbox_url,
        "VEXORA_MERCHANT_NO": MERCHANT_NO,
        "VEXORA_APP_SECRET": APP_SECRET,
        "VEXORA_NOTIFY_URL": f"{web_url}/vexora/notify",
        "SANDBOX_PORT": str(sandbox_port),
        "FLOWER_PORT": str(flower_port),
        "FLOWER_BASIC_AUTH": f"u:{flower_password}",
        "BEAT_SCHEDULE_FILE": str(tmp_path / "beat-schedule"),
        "WORKER_CONCURRENCY": "4",
        "WEBHOOK_CONCURRENCY": "2",
    }
    env_file = tmp_path / "deploy.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in app_env.items()))

    # honcho and everything it starts inherit the marker; nothing else on the machine has it
    marker = f"VEXORA_DEPLOY_TEST_RUN={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEXORA_") and k != "REDIS_URL"}
    env.update({"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                marker.split("=")[0]: marker.split("=")[1]})
    # honcho gives PORT = base + 100 * position: web is listed first, so -p is its port
    honcho = Process("honcho", [str(BIN / "honcho"), "start", "--no-colour", "-f", str(PROCFILE),
                                "-d", str(ROOT), "-e", str(env_file), "-p", str(web_port), *PROCESS_TYPES],
                     env, tmp_path / "honcho.log").start()
    try:
        def ready(check):
            return lambda: check() or not honcho.alive

        wait_until(ready(lambda: _up(web_url + "/healthz") == 200), timeout=30, what="web /healthz")
        wait_until(ready(lambda: _up(sandbox_url + "/_sandbox/stats") == 200), timeout=30, what="sandbox")
        wait_until(ready(lambda: _up(flower_url + "/", auth=("u", flower_password)) == 200), timeout=30,
                   what="flower")
        wait_until(ready(lambda: "beat: Starting" in honcho.log()), timeout=30, what="beat")
        assert honcho.alive, honcho.log()
        assert _up(flower_url + "/") == 401, "flower must require its basic auth"
        shown = [pid for pid in _marked(marker.encode()) if flower_password.encode() in _cmdline(pid)]
        assert not shown, f"Flower's password on the command line of {shown}"

        runtime = Runtime(Settings.from_env(app_env))
        trade_no = enqueue_checkout(payload(), runtime=runtime)

        def paying():
            record = get_checkout(trade_no, runtime=runtime)
            return record if record and record.get("paymentLink") and record["state"] in ("paying", *FINAL) else None
        record = wait_until(paying, timeout=40, what=f"{trade_no} to be paying")
        assert record["paymentLink"].startswith(sandbox_url)
        # the sandbox's autopay calls the web back at VEXORA_NOTIFY_URL; a worker applies it
        wait_until(lambda: get_checkout(trade_no, runtime=runtime)["state"] in FINAL, timeout=30,
                   what=f"{trade_no} to settle by callback")
        states = [entry["to"] for entry in get_checkout(trade_no, runtime=runtime)["history"]]
        assert "paying" in states, states

        def workers() -> dict:
            inspect = runtime.celery.control.inspect(timeout=2)
            stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
            return {",".join(sorted(q["name"] for q in queues.get(name, []))): s["pool"]["max-concurrency"]
                    for name, s in stats.items()}
        # WORKER_CONCURRENCY and WEBHOOK_CONCURRENCY; webhooks have a worker of their own
        wanted = {"callbacks,checkout,reconcile": 4, "webhooks": 2}
        wait_until(lambda: workers() == wanted, timeout=30, what=f"workers {wanted}")

        assert len(_marked(marker.encode())) >= len(PROCESS_TYPES) + 1
        honcho.kill(signal.SIGTERM)  # to honcho's process group; it stops the process types
        wait_until(lambda: not honcho.alive, timeout=20, what="honcho to exit")
        wait_until(lambda: not _marked(marker.encode()), timeout=10, what="every started process to be gone")
        assert all(_up(url) is None for url in (web_url + "/healthz", sandbox_url + "/", flower_url + "/"))
    finally:
        honcho.stop()
        for pid in _marked(marker.encode()):  # only if the test failed: ours, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        redis.Redis.from_url(db_url).flushdb()


def test_compose_ha_profile_runs_sentinels_that_find_the_master(compose, tmp_path):
    """The `ha` profile's Sentinel command, as compose has it (the `redis` host and the ports
    moved to this machine's), monitors a real master: it names it, and finds its replica."""
    from worker.local.redis_server import RedisServer, find_binary
    services = compose["services"]
    ha = {name for name, service in services.items() if "ha" in (service.get("profiles") or [])}
    assert ha == {"redis-replica", "sentinel-1", "sentinel-2", "sentinel-3"}
    assert all(services[n]["command"] == services["sentinel-1"]["command"] for n in ("sentinel-2", "sentinel-3"))
    # every app service is pointed at the Sentinels by the same two variables
    for name in ("worker", "webhooks", "beat", "web", "flower"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == "${COMPOSE_REDIS_URL:-redis://redis:6379/0}", name
        assert env["VEXORA_REDIS_SENTINEL_MASTER"] == "${COMPOSE_SENTINEL_MASTER:-}", name
    master = RedisServer().start()
    replica = RedisServer(replica_of=master.port).start()
    port, conf = free_port(), str(tmp_path / "sentinel.conf")
    argv = [part.replace("redis 6379", f"127.0.0.1 {master.port}").replace("port 26379", f"port {port}")
            .replace("/tmp/sentinel.conf", conf).replace("exec redis-server", f"exec {find_binary()}")
            for part in services["sentinel-1"]["command"]]
    proc = Process("sentinel", argv, dict(os.environ), tmp_path / "sentinel.log").start()
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        def knows() -> bool:
            try:
                return client.sentinel_master("vexora")["num-slaves"] >= 1
            except redis.exceptions.RedisError:
                return False
        wait_until(knows, timeout=30, what="the sentinel to find the master and its replica")
        assert int(client.sentinel_get_master_addr_by_name("vexora")[1]) == master.port
    finally:
        proc.stop()
        replica.cleanup()
        master.cleanup()
