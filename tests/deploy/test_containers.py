"""deploy/Dockerfile and deploy/docker-compose.yml parsed and checked in Python (no Docker engine,
compose plugin or hadolint here): a multi-stage build of the locked dependencies into a slim,
unprivileged runtime that serves on 0.0.0.0 and checks a real liveness route; and a compose stack
whose services, mounts, secrets and URLs fit together."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.deploy.conftest import get_paths
from tests.deploy.promql import DASHBOARD
from tests.deploy.stack import DEPLOY, ROOT, yaml_documents

DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
Instruction = tuple[str, str]
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def instructions(path: Path) -> list[Instruction]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continued lines joined."""
    lines, current = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        lines.append(current + line)
        current = ""
    assert not current, "a continued line at the end of the Dockerfile"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM."""
    found: list[list[Instruction]] = []
    for instruction in parsed:
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def exec_form(arguments: str) -> list[str]:
    form = json.loads(arguments)
    assert isinstance(form, list), f"not the exec form: {arguments}"
    return [str(part) for part in form]


def test_the_dockerfile_builds_in_stages_with_uv_from_the_lock() -> None:
    parsed = instructions(DOCKERFILE)
    builds = stages(parsed)
    assert len(builds) >= 3  # uv's image, the builder, the runtime
    names = {s[0][1].split()[-1] for s in builds if " AS " in s[0][1].upper()}
    assert {"builder", "runtime"} <= names
    builder = next(s for s in builds if s[0][1].endswith("AS builder"))
    runs = " ".join(args for kind, args in builder if kind == "RUN")
    assert "uv sync --frozen --no-dev --compile-bytecode" in runs
    copies = [args for kind, args in builder if kind == "COPY" and not args.startswith("--from")]
    assert "pyproject.toml uv.lock ./" in copies  # the lock before the sources: a cached layer
    runtime = builds[-1]
    assert runtime[0][1].endswith("AS runtime")
    assert any(args.startswith("--from=builder ") for kind, args in runtime if kind == "COPY")
    assert not any("uv " in args for kind, args in runtime if kind == "RUN"), "no uv in the runtime stage"
    arguments = dict(args.split("=", 1) for kind, args in parsed if kind == "ARG" and "=" in args)
    assert arguments["PYTHON_IMAGE"].endswith("-slim-bookworm") or "-slim" in arguments["PYTHON_IMAGE"]


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    """Every COPY from the context passes deploy/Dockerfile.dockerignore (BuildKit's per-Dockerfile
    ignore file: `*`, then `!path` exceptions) and exists in the repository."""
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                keep = negated
        return keep

    for kind, args in instructions(DOCKERFILE):
        if kind == "COPY" and not args.startswith("--from"):
            *sources, _ = shlex.split(args)
            for source in sources:
                assert (ROOT / source).exists(), source
                assert included(source.rstrip("/")), f"the build context leaves out {source}"
    assert not included(".venv") and not included(".git") and not included("tests")


def test_the_runtime_image_serves_as_a_user_on_all_interfaces(unstarted_app: TestClient) -> None:
    runtime = stages(instructions(DOCKERFILE))[-1]
    last = dict(runtime)  # the last of each instruction wins
    user = last["USER"].split(":")[0]
    assert user not in {"root", "0"}
    assert f"--uid {user}" in " ".join(args for kind, args in runtime if kind == "RUN")
    command = exec_form(last["ENTRYPOINT"]) + exec_form(last["CMD"])
    assert command[:2] == ["layerops", "serve"]
    host = command[command.index("--host") + 1] if "--host" in command else None
    environment = dict(re.findall(r"(\w+)=(\S+)", last["ENV"]))
    assert (host or environment.get("LAYEROPS_HOST")) == "0.0.0.0"
    port = environment["LAYEROPS_PORT"]
    assert last["EXPOSE"] == port
    healthcheck = last["HEALTHCHECK"]
    probe = exec_form(healthcheck.split(" CMD ", 1)[1])
    assert probe[0] == "python"  # in the image; curl is not
    (path,) = re.findall(r"/health/\w+", probe[-1])
    assert path == "/health/live" and f"'{port}'" in probe[-1]  # LAYEROPS_PORT's default
    assert path in get_paths(unstarted_app) and unstarted_app.get(path).status_code == 200


def interpolate(text: str, environment: dict[str, str]) -> str:
    """Compose's variable substitution: `${VAR}`, `${VAR:-default}`, `${VAR:?error}`."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if environment.get(name):
            return environment[name]
        assert op != ":?", f"{name} is required ({arg}) and deploy/.env.example does not set it"
        return arg if op == ":-" else ""

    return _VARIABLE.sub(value, text)


def example_environment() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return dict(pairs)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as compose reads it with deploy/.env copied from .env.example."""
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(
        interpolate(COMPOSE.read_text(encoding="utf-8"), example_environment())
    )
    return loaded


def test_the_stack_has_its_services_and_the_files_it_mounts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "s3", "mlflow", "layerops", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on a service that does not exist: {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert context == ROOT and (context / service["build"]["dockerfile"]) == DOCKERFILE


def test_every_secret_comes_from_the_env_file_as_a_placeholder() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    required = {m["name"] for m in _VARIABLE.finditer(text) if m["op"] == ":?"}
    example = example_environment()
    assert required <= set(example)
    secrets = {name for name in required if re.search("PASSWORD|SECRET|KEY", name)}
    assert secrets >= {"POSTGRES_PASSWORD", "LAYEROPS_API_KEYS", "LAYEROPS_ADMIN_API_KEYS"}
    for name in secrets:
        assert "change-me" in example[name], f"{name} in .env.example is not a change-me placeholder"
    assert (DEPLOY / ".gitignore").read_text(encoding="utf-8").splitlines()[-1] == ".env"


def test_the_servers_find_each_other(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mlflow = services["mlflow"]
    assert mlflow["entrypoint"] == ["mlflow"] and mlflow["image"] == services["layerops"]["image"]
    args = [str(a) for a in mlflow["command"]]

    def option(flag: str) -> str:
        return args[args.index(flag) + 1]

    store = urlsplit(option("--backend-store-uri"))
    assert store.scheme == "postgresql+psycopg" and store.hostname == "postgres"
    assert (
        store.path == "/mlflow"
        and "CREATE DATABASE mlflow" in (DEPLOY / "postgres" / "init-databases.sql").read_text()
    )
    bucket = urlsplit(option("--artifacts-destination"))
    assert (
        bucket.scheme == "s3" and f"local/{bucket.hostname}" in (DEPLOY / "s3" / "init-bucket.sh").read_text()
    )
    assert "--serve-artifacts" in args and option("--host") == "0.0.0.0"
    assert urlsplit(mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"]).hostname == "s3"
    server = services["layerops"]["environment"]
    tracking = urlsplit(server["LAYEROPS_TRACKING_URI"])
    assert (tracking.hostname, tracking.port) == ("mlflow", int(option("--port")))
    from mlflow.server.security_utils import is_allowed_host_header  # MLflow's own Host check

    assert is_allowed_host_header(option("--allowed-hosts").split(","), f"mlflow:{option('--port')}")
    log = urlsplit(server["LAYEROPS_PREDICTION_LOG"])
    assert log.scheme == "postgresql" and log.hostname == "postgres" and log.path == "/layerops"
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "layerops"
    assert services["layerops"]["command"][:1] == ["serve"]
    grace = int(services["layerops"]["stop_grace_period"].rstrip("s"))
    assert grace > 30 + 5 + 10  # the default request timeout + 5 s of drain, + 10 s of log flush


def test_prometheus_and_grafana_get_their_config(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    mounts = dict(v.split(":")[:2] for v in prometheus["volumes"] if v.startswith("."))
    assert mounts["./prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    (config,) = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")
    for rule_file in config["rule_files"]:  # relative to the config file, in the container too
        assert f"/etc/prometheus/{rule_file}" in mounts.values()
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "layerops"]
    (key_file,) = prometheus["configs"]
    assert job["authorization"]["credentials_file"] == key_file["target"]
    assert compose["configs"][key_file["source"]]["content"] == example_environment()["METRICS_API_KEY"]
    keys = services["layerops"]["environment"]["LAYEROPS_API_KEYS"].split(",")
    assert example_environment()["METRICS_API_KEY"] in keys  # the server accepts Prometheus' key
    assert job["dns_sd_configs"][0]["names"] == ["layerops"] and "layerops" in services

    grafana = services["grafana"]
    grafana_mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    (datasources,) = yaml_documents(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    assert urlsplit(source["url"]).hostname == "prometheus" and source["type"] == "prometheus"
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = {p["datasource"]["uid"] for p in board["panels"] if "datasource" in p}
    assert used == {source["uid"]}
    (providers,) = yaml_documents(DEPLOY / "grafana" / "provisioning" / "dashboards" / "layerops.yml")
    (provider,) = providers["providers"]
    assert grafana_mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert grafana_mounts["./grafana/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    assert grafana_mounts["./grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"


def test_the_image_has_what_the_mlflow_service_imports(compose: dict[str, Any]) -> None:
    import tomllib

    from tests.deploy.manifests import BASE

    k8s_args = yaml_documents(BASE / "mlflow.yaml")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        "--expose-prometheus" in compose["services"]["mlflow"]["command"]
        and "--expose-prometheus" in k8s_args
    )
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    (project,) = [p for p in lock["package"] if p["name"] == "layerops"]
    locked = {d["name"] for d in project["dependencies"]}  # the image's: `uv sync --no-dev`
    assert {"mlflow", "psycopg", "boto3"} <= locked  # backend store and S3 artifacts
    assert "prometheus-flask-exporter" in locked
