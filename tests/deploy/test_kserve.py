"""deploy/kserve: the serving runtimes and InferenceServices, checked against KServe's own CRDs.

The CRDs are KServe v0.20.0's (deploy/kserve/crds/README.md). Each manifest is
validated against its kind's ``openAPIV3Schema``, strictly: an unknown field
fails, as the API server's strict field validation (kubectl's default) refuses
it. The runtime's command line is then parsed by batchserve's own CLI.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import tritonclient.grpc as tg
import yaml

from loadtest.process import free_port
from server.cli.main import build_parser, with_default_command
from server.cli.settings import settings_from
from server.config import MODEL_FILE_SUFFIXES, Settings
from server.web.app import ENDPOINTS, create_app
from tests.conftest import make_settings, served
from tests.server.web.grpc.test_service import image_input

ROOT = Path(__file__).parents[2]
KSERVE = ROOT / "deploy" / "kserve"
CRDS = KSERVE / "crds"
KSERVE_VERSION = "v0.20.0"
MANIFESTS = sorted(KSERVE.glob("*.yaml"))


@functools.cache
def _crds() -> dict[str, dict[str, Any]]:
    """Each CRD by its kind (libyaml's loader where built: the InferenceService's is 2 MB)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    documents = [yaml.load(p.read_text(), Loader=loader) for p in sorted(CRDS.glob("*.yaml"))]
    return {d["spec"]["names"]["kind"]: d for d in documents}


def _crd(kind: str) -> dict[str, Any]:
    return _crds()[kind]


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever Kubernetes would prune them."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        strict.setdefault("additionalProperties", False)
    return strict


def _validate(manifest: dict[str, Any]) -> None:
    """jsonschema's Draft 4 validator: OpenAPI v3's schemas are its dialect (no metaschema run)."""
    jsonschema.Draft4Validator(_schema(manifest["apiVersion"], manifest["kind"])).validate(manifest)


@functools.cache
def _schema(api_version: str, kind: str) -> dict[str, Any]:
    group, version = api_version.split("/")
    crd = _crd(kind)
    assert crd["spec"]["group"] == group
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert served["served"], version
    return dict(_strict(served["schema"]["openAPIV3Schema"]))


def test_the_crds_are_kserves_release() -> None:
    readme = (CRDS / "README.md").read_text()
    assert KSERVE_VERSION in readme
    assert set(_crds()) == {"ServingRuntime", "ClusterServingRuntime", "InferenceService"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_fits_its_crd_strictly(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    _validate(manifest)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    manifest = yaml.safe_load((KSERVE / "servingruntime.yaml").read_text())
    manifest["spec"]["protocolVersion"] = ["v2"]  # protocolVersions
    with pytest.raises(jsonschema.ValidationError, match="protocolVersion"):
        _validate(manifest)


def _runtimes() -> list[dict[str, Any]]:
    return [yaml.safe_load((KSERVE / f).read_text())
            for f in ("servingruntime.yaml", "clusterservingruntime.yaml")]  # fmt: skip


def _settings(container: dict[str, Any]) -> Settings:
    """The container's command line through batchserve's own parser ({{.Name}}: KServe's)."""
    args = [arg.replace("{{.Name}}", "classifier") for arg in container["args"]]
    assert args[:2] == ["batchserve", "serve"]
    parsed = build_parser().parse_args(with_default_command(args[1:]))
    return settings_from(parsed)


def test_the_runtime_serves_the_mounted_models_on_kserves_ports() -> None:
    first, cluster = _runtimes()
    assert first["spec"] == cluster["spec"]
    spec = first["spec"]
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    formats = {f["name"]: f for f in spec["supportedModelFormats"]}
    assert set(formats) == {"onnx", "pytorch", "openvino_ir"}
    assert {".onnx", ".ts", ".pt", ".pt2", ".xml"} == set(MODEL_FILE_SUFFIXES)
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"
    settings = _settings(container)
    assert settings.model_dir == Path("/mnt/models")
    assert (settings.model_name, settings.host) == ("classifier", "0.0.0.0")
    assert (settings.port, settings.grpc_port) == (8080, 9000)
    assert [p["containerPort"] for p in container["ports"]] == [settings.port]
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == settings.port
        assert get["path"] in ENDPOINTS
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["securityContext"]["runAsNonRoot"] is True
    assert spec["annotations"]["prometheus.kserve.io/port"] == str(settings.port)


def test_the_grpc_example_routes_to_the_runtimes_grpc_port() -> None:
    runtime = _settings(_runtimes()[0]["spec"]["containers"][0])
    service = yaml.safe_load((KSERVE / "inferenceservice-grpc.yaml").read_text())
    model = service["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "grpc-v2"
    assert model["ports"] == [
        {"name": "h2c", "containerPort": runtime.grpc_port, "protocol": "TCP"}
    ]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["one-file", "repository"])
def test_the_runtimes_command_serves_what_kserve_mounts(
    layout: str, tiny_files: dict[str, Path], tmp_path: Path
) -> None:
    """The runtime's own settings, /mnt/models a folder here: REST and gRPC both answer."""
    mounted = tmp_path / "mnt"
    model = tiny_files["ts"]
    target = mounted / "tiny.ts" if layout == "one-file" else mounted / "tiny" / "1" / "model.ts"
    target.parent.mkdir(parents=True)
    target.write_bytes(model.read_bytes())
    runtime = _settings(_runtimes()[0]["spec"]["containers"][0])
    from_runtime = runtime.model_dump(exclude_unset=True)
    overrides = {"model_dir": mounted, "host": "127.0.0.1", "grpc_port": free_port()}
    values = {**make_settings().model_dump(), **from_runtime, **overrides}
    settings = Settings.model_validate(values)
    name = "classifier" if layout == "one-file" else "tiny"
    for server in served(create_app(settings)):
        client = tg.InferenceServerClient(f"127.0.0.1:{settings.grpc_port}")
        assert client.is_model_ready(name)
        result = client.infer(name, [image_input("cat.jpg")]).as_numpy("PROBABILITIES")
        assert result is not None
        assert result.shape == (1, 12)
        with server.client() as rest:
            assert rest.get(f"/v2/models/{name}/ready").status_code == 200
