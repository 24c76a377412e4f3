"""deploy/k8s parsed and checked in Python (no kubectl or kustomize here): the kustomize base and
the production overlay build, every object is well-formed, every reference resolves, the probes
hit real routes of the real app, ports agree, and a pod outlives the server's drain."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from layerops.delivery.settings import ServeSettings
from layerops.monitoring.log import LogSettings
from layerops.spec import load_spec
from tests.deploy.conftest import get_paths
from tests.deploy.manifests import (
    BASE,
    PRODUCTION,
    Build,
    Object,
    build,
    kustomization,
    pod_spec,
    workloads,
)
from tests.deploy.stack import yaml_documents

SERVER = ("Deployment", "layerops")


@pytest.fixture(scope="module", params=["base", "production"])
def built(request: pytest.FixtureRequest) -> Build:
    return build(BASE if request.param == "base" else PRODUCTION)


def server_container(objects: Build) -> Object:
    (container,) = pod_spec(objects.get(*SERVER))["containers"]
    return container


def container_port(container: Object, port: int | str) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def option(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def config_value(objects: Build, container: Object, name: str) -> str | None:
    """A variable's value in a container: its `env` entry, else the ConfigMaps of its `envFrom`."""
    for entry in container.get("env", []):
        if entry["name"] == name and "value" in entry:
            return str(entry["value"])
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            data = objects.get("ConfigMap", source["configMapRef"]["name"]).get("data", {})
            if name in data:
                return str(data[name])
    return None


def test_every_document_is_a_well_formed_object(built: Build) -> None:
    assert built.objects
    for item in built.objects:
        assert item.get("apiVersion") and item.get("kind"), item
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", item["metadata"]["name"]), item["metadata"]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in built.objects}
    assert len(kinds) == len(built.objects), "two objects of one kind share a name"
    assert {
        SERVER,
        ("Service", "layerops"),
        ("HorizontalPodAutoscaler", "layerops"),
        ("PodDisruptionBudget", "layerops"),
        ("Deployment", "mlflow"),
        ("Service", "mlflow"),
        ("CronJob", "layerops-retrain-shipping"),
        ("ConfigMap", "layerops-config"),
        ("ConfigMap", "layerops-specs"),
    } <= kinds
    assert len(built.of_kind("Secret")) >= 3


def test_kustomizations_name_files_that_exist_and_patches_that_hit_base_objects() -> None:
    for folder in (BASE, PRODUCTION):
        spec = kustomization(folder)
        assert (spec["apiVersion"], spec["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    # build() asserts every resource, generator file and patch file exists and that each patch's
    # target (by kind and name, or its `target`) is an object of the base, and each replaced path
    assert {path.name for path in build(BASE).files} == {
        path.name for path in BASE.glob("*.yaml") if path.name != "kustomization.yaml"
    }
    production = build(PRODUCTION)
    patches = [p["path"] for p in kustomization(PRODUCTION)["patches"] if "path" in p]
    assert {p.name for p in (PRODUCTION / "patches").glob("*.yaml")} == {Path(p).name for p in patches}
    assert production.get("HorizontalPodAutoscaler", "layerops")["spec"]["minReplicas"] == 3
    assert production.get("ConfigMap", "layerops-config")["data"]["LAYEROPS_LOG_LEVEL"] == "WARNING"
    assert {o["metadata"].get("namespace") for o in production.objects if o["kind"] != "Namespace"} == {
        "layerops"
    }


def test_a_patch_naming_an_object_the_base_lacks_is_refused(tmp_path: Path) -> None:
    """The check above can fail: an overlay patching a Deployment the base does not have."""
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{BASE}]\npatches:\n  - path: typo.yaml\n", encoding="utf-8"
    )
    (tmp_path / "typo.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: layerop}\nspec: {}\n", encoding="utf-8"
    )
    with pytest.raises(AssertionError, match="Deployment/layerop: 0 objects"):
        build(tmp_path)


def test_probes_hit_real_routes_that_answer_without_a_key(built: Build, unstarted_app: TestClient) -> None:
    container = server_container(built)
    probes = {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes == {
        "startupProbe": "/health/live",
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    routes = get_paths(unstarted_app)
    assert set(probes.values()) <= routes, f"not routes of the app: {set(probes.values()) - routes}"
    # the kubelet sends no key: the probes must answer without one (ready: 503 until models load)
    assert unstarted_app.get("/health/live").status_code == 200
    assert unstarted_app.get("/health/ready").status_code == 503
    assert unstarted_app.get("/models").status_code == 401  # while the models route wants a key
    assert unstarted_app.get("/health/alive").status_code == 404  # and a wrong path is no route


def test_ports_agree_between_the_server_its_probes_services_and_scrape_annotation(built: Build) -> None:
    container = server_container(built)
    listens = int(option(container["args"], "--port") or ServeSettings().port)
    assert container["args"][:1] == ["serve"] and option(container["args"], "--host") == "0.0.0.0"
    assert [p["containerPort"] for p in container["ports"]] == [listens]
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container_port(container, container[kind]["httpGet"]["port"]) == listens
    pod_labels = built.get(*SERVER)["spec"]["template"]["metadata"]["labels"]
    for name in ("layerops", "layerops-pods"):
        service = built.get("Service", name)
        assert service["spec"]["selector"].items() <= pod_labels.items()
        (port,) = service["spec"]["ports"]
        assert container_port(container, port["targetPort"]) == listens
    annotations = built.get(*SERVER)["spec"]["template"]["metadata"]["annotations"]
    assert (
        int(annotations["prometheus.io/port"]) == listens and annotations["prometheus.io/path"] == "/metrics"
    )
    mlflow = built.get("Deployment", "mlflow")
    (mlflow_container,) = pod_spec(mlflow)["containers"]
    mlflow_port = int(option(mlflow_container["args"], "--port") or 0)
    assert [p["containerPort"] for p in mlflow_container["ports"]] == [mlflow_port]
    assert container_port(
        mlflow_container, built.get("Service", "mlflow")["spec"]["ports"][0]["targetPort"]
    ) == (mlflow_port)
    tracking = config_value(built, container, "LAYEROPS_TRACKING_URI")
    assert tracking == f"http://mlflow:{built.get('Service', 'mlflow')['spec']['ports'][0]['port']}"


def drain_seconds(settings: ServeSettings) -> float:
    """The longest a server takes to stop after SIGTERM: uvicorn's graceful shutdown (what
    `run_server` passes) and then the prediction log's flush (`LogSettings.close_timeout`)."""
    from layerops.cli.serve import run_server

    graceful = "timeout_graceful_shutdown=max(5, int(settings.request_timeout_seconds) + 5)"
    assert graceful in inspect.getsource(run_server), "run_server's drain changed: update this test"
    return max(5, int(settings.request_timeout_seconds) + 5) + LogSettings().close_timeout


def test_a_pod_outlives_the_drain(built: Build) -> None:
    container = server_container(built)
    timeout = config_value(built, container, "LAYEROPS_REQUEST_TIMEOUT_SECONDS")
    settings = ServeSettings(**({"request_timeout_seconds": float(timeout)} if timeout else {}))
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    grace = pod_spec(built.get(*SERVER))["terminationGracePeriodSeconds"]
    assert grace > drain_seconds(settings) + float(pre_stop[1]), (grace, drain_seconds(settings))


def test_the_autoscaler_and_disruption_budget_govern_the_server(built: Build) -> None:
    deployment = built.get(*SERVER)
    hpa = built.get("HorizontalPodAutoscaler", "layerops")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", *SERVER)
    assert "replicas" not in deployment["spec"], (
        "the HPA owns replicas; a value here resets it at every apply"
    )
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and server_container(built)["resources"]["requests"]["cpu"]
    pdb = built.get("PodDisruptionBudget", "layerops")
    assert pdb["apiVersion"] == "policy/v1"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]  # a drain can always evict one


def references(pod: Object) -> list[tuple[str, str, str | None]]:
    """Every (kind, name, key) a pod's containers and volumes take from ConfigMaps and Secrets."""
    found: list[tuple[str, str, str | None]] = []
    for container in pod["containers"]:
        for source in container.get("envFrom", []):
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source and not source[field].get("optional"):
                    found.append((kind, source[field]["name"], None))
        for entry in container.get("env", []):
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                ref = entry.get("valueFrom", {}).get(field)
                if ref is not None:
                    found.append((kind, ref["name"], ref["key"]))
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            found.append(("ConfigMap", volume["configMap"]["name"], None))
        if "secret" in volume:
            found.append(("Secret", volume["secret"]["secretName"], None))
    return found


def test_every_config_and_secret_a_pod_uses_exists_with_its_key(built: Build) -> None:
    for workload in workloads(built):
        for kind, name, key in references(pod_spec(workload)):
            item = built.get(kind, name)
            if key is not None:
                data = {**item.get("data", {}), **item.get("stringData", {})}
                assert key in data, f"{workload['metadata']['name']}: {kind}/{name} has no key {key}"


def test_secrets_are_placeholders_in_string_data() -> None:
    for secret in build(BASE).of_kind("Secret"):
        assert "data" not in secret and secret["stringData"], secret["metadata"]["name"]
        for key, value in secret["stringData"].items():
            assert "change-me" in value, f"Secret {secret['metadata']['name']}: {key} is not a placeholder"


def test_every_pod_runs_restricted(built: Build) -> None:
    """What the namespace's `restricted` pod-security level enforces."""
    for workload in workloads(built):
        pod = pod_spec(workload)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True
            assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
            assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"]
    if built.of_kind("Namespace"):
        labels = built.get("Namespace", "layerops")["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_mlflow_server_stores_in_postgresql_and_proxies_s3(built: Build) -> None:
    (container,) = pod_spec(built.get("Deployment", "mlflow"))["containers"]
    args: list[Any] = container["args"]
    assert container["command"] == ["mlflow"] and args[0] == "server"
    assert option(args, "--backend-store-uri") == "$(MLFLOW_BACKEND_STORE_URI)"
    assert option(args, "--artifacts-destination") == "$(MLFLOW_ARTIFACTS_DESTINATION)"
    assert "--serve-artifacts" in args and option(args, "--host") == "0.0.0.0"
    store = built.get("Secret", "layerops-database")["stringData"]["mlflow-backend-store-uri"]
    assert store.startswith("postgresql+psycopg://")
    destination = built.get("ConfigMap", "mlflow-config")["data"]["MLFLOW_ARTIFACTS_DESTINATION"]
    assert destination.startswith("s3://")
    # MLflow's own Host check (DNS rebinding): the Service's names and pod addresses pass
    from mlflow.server.security_utils import is_allowed_host_header

    allowed = (option(args, "--allowed-hosts") or "").split(",")
    port = option(args, "--port")
    for host in (
        "mlflow",
        f"mlflow:{port}",
        f"mlflow.layerops.svc.cluster.local:{port}",
        f"10.244.3.7:{port}",
    ):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, "mlflow.attacker.example")


def test_the_retrain_cronjob_trains_with_a_spec_from_its_configmap(built: Build) -> None:
    cronjob = built.get("CronJob", "layerops-retrain-shipping")
    (container,) = pod_spec(cronjob)["containers"]
    command = container["command"]
    assert command[:3] == ["layerops", "retrain", "shipping"] and "--if-drift" in command
    spec_path = Path(option(command, "--spec") or "")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(cronjob)["volumes"]}
    assert str(spec_path.parent) == mounts["specs"]
    assert volumes["specs"]["configMap"]["name"] == "layerops-specs"
    (generator,) = kustomization(BASE)["configMapGenerator"]
    assert spec_path.name in {Path(f).name for f in generator["files"]}
    spec = load_spec(BASE / "specs" / spec_path.name)  # the real spec parser
    assert spec.name == "shipping" and str(spec.data.path).startswith("https://")


def test_the_old_cronjob_path_is_gone_and_the_crontab_stays() -> None:
    assert not (BASE.parent / "retrain-cronjob.yaml").exists()
    assert (BASE.parents[1] / "retrain.crontab").is_file()
    assert yaml_documents(BASE / "retrain-cronjob.yaml")[0]["kind"] == "CronJob"
