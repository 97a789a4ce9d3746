"""deploy/: the Kubernetes manifests, the Grafana dashboard and the image build, checked offline.

* Every YAML document under ``deploy/kubernetes/`` is validated against Kubernetes' OpenAPI
  schemas (kubernetes-validate, strict: unknown fields are errors) for the oldest Kubernetes the
  examples support and the newest the library ships. Custom resources (PodMonitor, ScaledObject,
  TriggerAuthentication) are validated against the OpenAPI schemas of their upstream CRDs,
  vendored in ``tests/unit/crds/`` (see its README), made strict the same way. KEDA's trigger
  metadata is a free map of strings in its CRD, so its keys are checked here against the
  scalers' own parameter lists.
* Every ``poller.toml`` held in a ConfigMap parses and validates as ``poller run`` reads it, and the
  pods that run it agree with it: grace period, probes, metrics port, writable directories.
* Every metric and label the dashboard queries exists in :mod:`poller.observability.catalog`.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from poller.config import PollerConfig, parse_config
from poller.observability.catalog import METRIC_NAMES, METRICS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
CRDS = Path(__file__).resolve().parent / "crds"
DASHBOARD = DEPLOY / "grafana" / "poller-dashboard.json"

#: The oldest Kubernetes the examples are written for (native sidecars, the probes' fields) and
#: the newest whose schemas the installed kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Doc = dict[str, Any]


def _documents() -> list[tuple[str, Doc]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_Loader):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


DOCUMENTS = _documents()
BY_ID = dict(DOCUMENTS)


def test_the_examples_are_found() -> None:
    names = {path.name for path in MANIFESTS}
    assert {
        "worker-deployment.yaml",
        "podmonitor.yaml",
        "keda-sqs.yaml",
        "keda-kafka.yaml",
    } <= names
    assert len(DOCUMENTS) >= 15


# --- Kubernetes' own kinds -------------------------------------------------------------------------

#: The custom resources of the examples and the vendored CRD that defines each.
CUSTOM = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
}


def _is_custom(doc: Doc) -> bool:
    return (doc["apiVersion"], doc["kind"]) in CUSTOM


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "name", [name for name, doc in DOCUMENTS if not _is_custom(doc)], ids=lambda name: name
)
def test_a_manifest_is_valid_kubernetes(name: str, version: str) -> None:
    try:
        kubernetes_validate.validate(BY_ID[name], version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        pytest.fail(f"{name} (Kubernetes {version}): {where}: {error.message}")


def test_the_validation_refuses_a_misspelt_field() -> None:
    deployment = copy.deepcopy(BY_ID["worker-deployment.yaml:Deployment/orders-poller"])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# --- custom resources ------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the API server would prune them."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def _crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    crd = yaml.load((CRDS / CUSTOM[(api_version, kind)]).read_text(), Loader=_Loader)
    group, _, version = api_version.rpartition("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    served = {v["name"]: v for v in crd["spec"]["versions"] if v["served"]}
    schema: dict[str, Any] = _strict(served[version]["schema"]["openAPIV3Schema"])
    return schema


@pytest.mark.parametrize(
    "name", [name for name, doc in DOCUMENTS if _is_custom(doc)], ids=lambda name: name
)
def test_a_custom_resource_matches_its_crd(name: str) -> None:
    doc = BY_ID[name]
    validator = jsonschema.Draft7Validator(_crd_schema(doc["apiVersion"], doc["kind"]))
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(doc)
    ]
    assert not errors, f"{name}: " + "; ".join(errors)
    # The CRD says only "object" for metadata: check it as the ObjectMeta it is.
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]},
        KUBERNETES_VERSIONS[0],
        strict=True,
    )


def test_the_crd_validation_refuses_a_misspelt_field() -> None:
    monitor = copy.deepcopy(BY_ID["podmonitor.yaml:PodMonitor/poller"])
    monitor["spec"]["podMetricsEndpoints"][0]["paht"] = "/metrics"
    schema = _crd_schema(monitor["apiVersion"], monitor["kind"])
    assert not jsonschema.Draft7Validator(schema).is_valid(monitor)


#: KEDA v2.20's parameters (pkg/scalers: aws_sqs_queue_scaler.go, kafka_scaler.go,
#: aws/aws_common.go): trigger metadata keys, required ones, and authentication parameters.
#: ``<name>FromEnv`` reads a parameter from the scale target's environment.
KEDA_TRIGGERS: dict[str, dict[str, frozenset[str]]] = {
    "aws-sqs-queue": {
        "metadata": frozenset(
            {
                "queueURL",
                "queueURLFromEnv",
                "queueLength",
                "activationQueueLength",
                "awsRegion",
                "awsEndpoint",
                "scaleOnInFlight",
                "scaleOnDelayed",
                "identityOwner",
            }
        ),
        "required": frozenset({"queueURL", "awsRegion", "queueLength"}),
        "auth": frozenset(
            {"awsRoleArn", "awsAccessKeyID", "awsSecretAccessKey", "awsSessionToken", "awsRegion"}
        ),
    },
    "kafka": {
        "metadata": frozenset(
            {
                "bootstrapServers",
                "bootstrapServersFromEnv",
                "consumerGroup",
                "consumerGroupFromEnv",
                "topic",
                "topicFromEnv",
                "partitionLimitation",
                "lagThreshold",
                "activationLagThreshold",
                "offsetResetPolicy",
                "allowIdleConsumers",
                "excludePersistentLag",
                "scaleToZeroOnInvalidOffset",
                "limitToPartitionsWithLag",
                "ensureEvenDistributionOfPartitions",
                "version",
                "tls",
                "unsafeSsl",
                "sasl",
                "saslTokenProvider",
                "awsRegion",
            }
        ),
        "required": frozenset({"bootstrapServers", "consumerGroup", "topic", "lagThreshold"}),
        "auth": frozenset(
            {
                "tls",
                "ca",
                "cert",
                "key",
                "keyPassword",
                "sasl",
                "username",
                "password",
                "saslTokenProvider",
                "scopes",
                "oauthTokenEndpointUri",
                "oauthExtensions",
                "keytab",
                "realm",
                "kerberosConfig",
                "kerberosServiceName",
                "kerberosDisableFAST",
            }
        ),
    },
}
KEDA_ENUMS = {
    "offsetResetPolicy": {"latest", "earliest"},
    "tls": {"enable", "disable"},
    "sasl": {"none", "plaintext", "scram_sha256", "scram_sha512", "oauthbearer", "gssapi"},
}


def _in_file(name: str, kind: str) -> dict[str, Doc]:
    """The documents of ``kind`` in the same file as ``name``, by their names."""
    file = name.partition(":")[0]
    return {
        doc["metadata"]["name"]: doc
        for other, doc in DOCUMENTS
        if other.startswith(file + ":") and doc["kind"] == kind
    }


SCALED_OBJECTS = [name for name, doc in DOCUMENTS if doc["kind"] == "ScaledObject"]


@pytest.mark.parametrize("name", SCALED_OBJECTS)
def test_a_scaled_object_uses_keda_s_parameters_and_matches_its_workers(name: str) -> None:
    spec = BY_ID[name]["spec"]
    deployments = _in_file(name, "Deployment")
    target = deployments[spec["scaleTargetRef"]["name"]]
    assert "replicas" not in target["spec"], "KEDA sets the replicas; apply would reset them"
    config = _pod_config(target)
    mapping = config.mappings[0]
    for trigger in spec["triggers"]:
        known = KEDA_TRIGGERS[trigger["type"]]
        metadata = trigger["metadata"]
        assert set(metadata) <= known["metadata"], set(metadata) - known["metadata"]
        assert known["required"] <= set(metadata), known["required"] - set(metadata)
        for key, allowed in KEDA_ENUMS.items():
            assert metadata.get(key, next(iter(allowed))) in allowed, key
        auth = _in_file(name, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]
        parameters = {ref["parameter"] for ref in auth["spec"].get("secretTargetRef", [])}
        assert parameters <= known["auth"], parameters - known["auth"]
        if trigger["type"] == "aws-sqs-queue":
            assert mapping.event_source_arn is not None
            assert (
                metadata["queueURL"].rsplit("/", 1)[1] == mapping.event_source_arn.rsplit(":")[-1]
            )
        else:
            raw = tomllib.loads(_toml_of(target))["mappings"][0]
            assert (
                metadata["consumerGroup"]
                == (raw["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"])
            )
            assert metadata["topic"] == raw["Topics"][0]
            reset = {"TRIM_HORIZON": "earliest", "LATEST": "latest"}[raw["StartingPosition"]]
            assert metadata.get("offsetResetPolicy", "latest") == reset


# --- the worker's config and the pods that run it --------------------------------------------------


def _config_maps() -> dict[str, Doc]:
    return {
        doc["metadata"]["name"]: doc
        for _, doc in DOCUMENTS
        if doc["kind"] == "ConfigMap" and "poller.toml" in doc.get("data", {})
    }


def _pods() -> list[tuple[str, Doc]]:
    """The workloads that run poller: a container mounts a ConfigMap holding poller.toml."""
    return [
        (name, doc)
        for name, doc in DOCUMENTS
        if doc["kind"] in ("Deployment", "StatefulSet") and list(_poller_containers(doc))
    ]


def _config_volume(workload: Doc) -> str | None:
    maps = _config_maps()
    for volume in workload["spec"]["template"]["spec"].get("volumes", []):
        if volume.get("configMap", {}).get("name") in maps:
            return str(volume["name"])
    return None


def _poller_containers(workload: Doc) -> Iterator[Doc]:
    volume = _config_volume(workload)
    for container in workload["spec"]["template"]["spec"]["containers"]:
        if any(mount["name"] == volume for mount in container.get("volumeMounts", [])):
            yield container


def _toml_of(workload: Doc) -> str:
    volume = _config_volume(workload)
    for item in workload["spec"]["template"]["spec"]["volumes"]:
        if item["name"] == volume:
            return str(_config_maps()[item["configMap"]["name"]]["data"]["poller.toml"])
    raise AssertionError("no config volume")


def _pod_config(workload: Doc) -> PollerConfig:
    return _parse(_toml_of(workload))


def _parse(text: str) -> PollerConfig:
    """The config validated as ``poller run`` does (``load_config``: the TOML, then this)."""
    # ${NAME} in Headers must be set in the worker's environment (the pod sets it from a Secret).
    with pytest.MonkeyPatch.context() as patch:
        for variable in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)):
            patch.setenv(variable, "set-in-the-pod")
        return parse_config(tomllib.loads(text))


@pytest.mark.parametrize("name", sorted(_config_maps()))
def test_a_config_map_holds_a_valid_config_with_the_operators_endpoint(name: str) -> None:
    config = _parse(_config_maps()[name]["data"]["poller.toml"])
    assert config.mappings, "a worker config with no mapping"
    assert config.http.listen is not None, "[http] listen: the probes and /metrics need it"
    assert config.http.host_and_port == ("0.0.0.0", 9464)


def _writable_mounts(container: Doc, workload: Doc) -> list[PurePosixPath]:
    """Where the container may write despite its read-only root: emptyDirs and volume claims."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
    paths = []
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        writable_kind = "emptyDir" in volume or "persistentVolumeClaim" in volume
        if not mount.get("readOnly") and (writable_kind or mount["name"] in claims):
            paths.append(PurePosixPath(mount["mountPath"]))
    return paths


def _store_directory(config: PollerConfig) -> PurePosixPath | None:
    """Where a SQLite store lives in the image: relative paths start at /app, whose .poller
    is a link to /var/lib/poller (deploy/Dockerfile)."""
    if not config.store.url.startswith("sqlite:///"):
        return None
    path = PurePosixPath("/app") / config.store.url.removeprefix("sqlite:///")
    parts = list(path.parts)
    if parts[:3] == ["/", "app", ".poller"]:
        parts = ["/", "var", "lib", "poller", *parts[3:]]
    return PurePosixPath(*parts).parent


def _runs_processes(config: PollerConfig) -> bool:
    functions = any(
        (f.handler is not None and f.isolation == "process") or f.command for f in config.functions
    )
    return functions or any(mapping.handler is not None for mapping in config.mappings)


@pytest.mark.parametrize("name", [name for name, _ in _pods()])
def test_a_poller_pod_agrees_with_its_config(name: str) -> None:
    workload = BY_ID[name]
    pod = workload["spec"]["template"]["spec"]
    config = _pod_config(workload)
    labels = workload["spec"]["template"]["metadata"]["labels"]

    # SIGTERM: the drain must end before the kubelet's SIGKILL (Kubernetes' default grace is 30).
    grace = pod.get("terminationGracePeriodSeconds", 30)
    assert grace > config.worker.shutdown_grace_seconds, (
        f"terminationGracePeriodSeconds {grace} must be longer than shutdown_grace_seconds "
        f"{config.worker.shutdown_grace_seconds}"
    )
    assert labels.get("poller/metrics") == "true", "podmonitor.yaml selects this label"
    _, port = config.http.host_and_port
    for container in _poller_containers(workload):
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        assert ports.get("metrics") == port, "a container port named metrics, the [http] port"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
        if "startupProbe" in container:
            assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}

        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True
        assert context.get("runAsUser") == 10001, "the image's uid (deploy/Dockerfile)"
        assert context.get("allowPrivilegeEscalation") is False
        assert context.get("readOnlyRootFilesystem") is True
        writable = _writable_mounts(container, workload)
        store = _store_directory(config)
        if store is not None:
            assert any(store.is_relative_to(m) for m in writable), f"{store} is not writable"
        if _runs_processes(config):
            assert PurePosixPath("/tmp") in writable, "process environments need a writable /tmp"


def test_the_pod_monitor_scrapes_every_poller_pod() -> None:
    monitor = BY_ID["podmonitor.yaml:PodMonitor/poller"]["spec"]
    assert monitor["podMetricsEndpoints"][0]["port"] == "metrics"
    assert monitor["podMetricsEndpoints"][0]["path"] == "/metrics"
    wanted = monitor["selector"]["matchLabels"]
    for name, workload in _pods():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert wanted.items() <= labels.items(), name


# --- the dashboard ---------------------------------------------------------------------------------

KINDS = {spec.name: spec.kind for spec in METRICS}
SCOPES = {spec.name: spec.scope for spec in METRICS}
LABELS = {"mapping": {"mapping", "function", "source"}, "worker": {"mapping", "worker"}}
ALLOWED_LABELS = {"mapping", "function", "source", "worker", "le"}
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
#: What an operator looks at first: the dashboard has a panel for each.
SHOWN = {
    "poller_polled_events",
    "poller_invoked_events",
    "poller_failed_invoke_events",
    "poller_dropped_events",
    "poller_invocations",
    "poller_errors",
    "poller_throttles",
    "poller_duration_seconds",
    "poller_iterator_age_milliseconds",
    "poller_offset_lag",
    "poller_concurrent_executions",
    "poller_partitions_owned",
    "poller_partitions_blocked",
    "poller_on_failure_destination_delivered_events",
    "poller_destination_delivery_failures",
    "poller_deleted_events",
}


def _dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return board


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in board["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return panels


def _expressions(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in _panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
            exprs.append(variable["query"]["query"])
    return exprs


def _family(series: str) -> str:
    """The catalog name of a series: counters end in _total, a histogram's in _bucket etc."""
    if series.endswith("_total") and KINDS.get(series.removesuffix("_total")) == "counter":
        return series.removesuffix("_total")
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if series.endswith(suffix) and KINDS.get(base) == "histogram":
            return base
    assert KINDS.get(series) == "gauge", f"{series} is not a series poller exposes"
    return series


def test_the_dashboard_is_a_dashboard() -> None:
    board = _dashboard()
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36
    panels = _panels(board)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for name in ("mapping", "function"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["definition"].startswith("label_values(")
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_dashboard_queries_only_metrics_and_labels_poller_exposes() -> None:
    board = _dashboard()
    used: set[str] = set()
    for expr in _expressions(board):
        series = re.findall(r"\bpoller_[a-z_]+", expr)
        assert series, expr
        for name in series:
            family = _family(name)
            assert family in METRIC_NAMES, name
            used.add(family)
        for name, matchers in re.findall(r"\b(poller_[a-z_]+)\{([^}]*)\}", expr):
            family = _family(name)
            allowed = LABELS[SCOPES[family]] | ({"le"} if name.endswith("_bucket") else set())
            labels = set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers))
            assert labels <= allowed, f"{name}: {labels - allowed}"
        grouped = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        grouped += re.findall(r"label_values\(.*,\s*([a-z_]+)\)", expr)
        for labels in grouped:
            names = {label.strip() for label in labels.split(",") if label.strip()}
            assert names <= ALLOWED_LABELS, f"{expr}: {names - ALLOWED_LABELS}"
    for panel in _panels(board):
        for target in panel.get("targets", []):
            legend = set(re.findall(r"\{\{\s*([a-z_]+)\s*\}\}", target.get("legendFormat", "")))
            assert legend <= ALLOWED_LABELS, panel["title"]
    assert SHOWN <= METRIC_NAMES
    missing = SHOWN - used
    assert not missing, f"no panel shows {sorted(missing)}"


# --- the image ---------------------------------------------------------------------------------------


def test_the_image_runs_the_python_the_project_is_checked_on() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    image = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)-slim$", dockerfile, re.M)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert image is not None
    assert image.group(1) == pyproject["tool"]["mypy"]["python_version"]


def test_the_build_context_sends_what_the_dockerfile_copies_and_no_more() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split("\n")
    patterns = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "an allowlist: everything is left out unless named"
    sent = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    copied = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M):
        copied.update(part.rstrip("/") for part in line.split()[:-1])
    assert copied == sent
