"""The Kubernetes manifests of deploy/k8s, read the way kustomize reads them (no kustomize binary
here): a kustomization's resources, generated ConfigMaps, and an overlay's strategic-merge and JSON
patches applied to its base."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.stack import DEPLOY, yaml_documents

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
Object = dict[str, Any]


@dataclass
class Build:
    """What a kustomization produces: its objects, and the patches it applied (for the tests)."""

    objects: list[Object] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    """Every manifest file read (resources and patches)."""

    def get(self, kind: str, name: str) -> Object:
        """The one object of `kind` named `name` (AssertionError when absent)."""
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} objects"
        return found[0]

    def of_kind(self, kind: str) -> list[Object]:
        return [o for o in self.objects if o["kind"] == kind]


def kustomization(folder: Path) -> dict[str, Any]:
    (loaded,) = yaml_documents(folder / "kustomization.yaml")
    return loaded


def build(folder: Path) -> Build:
    """The objects of the kustomization in `folder`, with its patches applied and its namespace set."""
    spec = kustomization(folder)
    result = Build()
    for resource in spec.get("resources", []):
        path = (folder / resource).resolve()
        assert path.exists(), f"{folder / 'kustomization.yaml'}: resource {resource} does not exist"
        if path.is_dir():
            inner = build(path)
            result.objects += inner.objects
            result.files += inner.files
        else:
            result.objects += yaml_documents(path)
            result.files.append(path)
    for generator in spec.get("configMapGenerator", []):
        data = {}
        for source in generator.get("files", []):
            path = folder / source
            assert path.is_file(), f"configMapGenerator {generator['name']}: {source} does not exist"
            data[path.name] = path.read_text(encoding="utf-8")
        result.objects.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data}
        )
    for patch in spec.get("patches", []):
        apply_patch(result, folder, patch)
    if "namespace" in spec:
        for item in result.objects:
            if item["kind"] != "Namespace":
                item["metadata"]["namespace"] = spec["namespace"]
    return result


def apply_patch(result: Build, folder: Path, patch: dict[str, Any]) -> None:
    """A strategic-merge patch (a file naming its target by kind and name) or a JSON patch with a
    `target`; the target must exist (AssertionError otherwise)."""
    if "path" in patch:
        path = folder / patch["path"]
        assert path.is_file(), f"patch {patch['path']} does not exist"
        result.files.append(path)
        for document in yaml_documents(path):
            target = result.get(document["kind"], document["metadata"]["name"])
            merged = merge(target, document)
            target.clear()
            target.update(merged)
        return
    target = result.get(patch["target"]["kind"], patch["target"]["name"])
    for operation in yaml.safe_load(patch["patch"]):
        *parents, last = operation["path"].strip("/").split("/")
        node = target
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if operation["op"] in ("replace", "remove"):
            assert last in node, f"JSON patch {operation}: {operation['path']} does not exist in the target"
        if operation["op"] == "remove":
            del node[last]
        else:
            node[last] = operation["value"]


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for these manifests: maps merge key by key; lists of
    named items (containers, ports, volumes) merge by name, and a patch may not name an item the
    base lacks; other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in patch)
    ):
        merged_list = copy.deepcopy(base)
        names = [item.get("name") for item in base]
        for item in patch:
            assert item["name"] in names, f"the patch names {item['name']!r}, which the base does not have"
            index = names.index(item["name"])
            merged_list[index] = merge(base[index], item)
        return merged_list
    return copy.deepcopy(patch)


def pod_spec(item: Object) -> Object:
    """The pod template's spec of a Deployment or a CronJob."""
    if item["kind"] == "CronJob":
        spec: Object = item["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    template: Object = item["spec"]["template"]["spec"]
    return template


def workloads(objects: Build) -> list[Object]:
    return [o for o in objects.objects if o["kind"] in ("Deployment", "CronJob")]
