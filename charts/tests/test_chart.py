"""The Helm chart (charts/onething), checked offline with the Helm SDK bundled by helm-python-sdk and
the Kubernetes schemas bundled by kubernetes-validate: rendered for every site's values file
(charts/values-<region>.yaml), linted strictly, every manifest validated strictly against one pinned
Kubernetes version; one Deployment per desk, and a desk with nothing but its own broker login; names
within 63 characters; selectors that never select another Deployment's pods; what the processes are
told (their commands, their own credentials, settings config.py reads) in step with the code; the
api probe under TLS run for real against a TLS gRPC server; values the schema or the templates
refuse."""
import copy
import datetime
import functools
import json
import os
import pathlib
import re
import subprocess
import sys
from concurrent import futures

import grpc
import helm_python as helm
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from kubernetes_validate import utils as k8s

from services.catalog.store import read_catalog, read_data_dir
from services.common.registry import SERVICES, broker_user, desk_broker_user

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "onething"
SITE_FILES = sorted((ROOT / "charts").glob("values-*.yaml"))
SITES = [p.name for p in SITE_FILES]
# the Kubernetes version the manifests are validated against (the chart needs >= 1.27)
KUBE_VERSION = "1.30.0"
LONGEST_RELEASE = "onething-" + "x" * 44  # Helm allows release names up to 53 characters


# --- rendering ------------------------------------------------------------------------------------
def site_values(name):
    with open(ROOT / "charts" / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def effective(name):
    """A site's values over the chart's defaults."""
    with open(CHART / "values.yaml", encoding="utf-8") as fh:
        return merged(yaml.safe_load(fh), site_values(name))


def merged(base, override):
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render(values, release):
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=release, namespace="onething")
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


@functools.cache
def _rendered_json(name, release=None):
    values = site_values(name)
    return json.dumps(render(values, release or f"onething-{values['site']['region']}"))


def rendered(name, release=None):
    """The manifests of a site's release (a fresh copy: tests may not share changes)."""
    return json.loads(_rendered_json(name, release))


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def component(doc):
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


def deployments(docs):
    return {component(d): d for d in of_kind(docs, "Deployment")}


def container(deployment):
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(c):
    return {e["name"]: e for e in c.get("env", [])}


def desk_deployments(docs):
    return {k: v for k, v in deployments(docs).items() if k.startswith("desk-")}


def dns(name):
    return name.replace("_", "-")


# --- Helm and Kubernetes say the chart is sound -------------------------------------------------------
@pytest.mark.parametrize("site", SITES)
def test_the_chart_lints_strictly(site):
    report = helm.lint(str(CHART), site_values(site), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("site", SITES)
def test_every_manifest_validates_strictly_against_the_kubernetes_schemas(site):
    docs = rendered(site)
    assert {"Deployment", "Service", "Job", "PodDisruptionBudget"} <= {d["kind"] for d in docs}
    for doc in docs:
        try:
            k8s.validate(doc, KUBE_VERSION, strict=True)
        except k8s.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except k8s.SchemaNotFoundError as exc:
            pytest.fail(exc.message)


def test_a_manifest_with_an_unknown_field_fails_the_strict_validation():
    """The validation above can fail: the same Deployment with one field Kubernetes does not know."""
    api = deployments(rendered(SITES[0]))["catalog-api"]
    k8s.validate(api, KUBE_VERSION, strict=True)
    container(api)["livenessProbes"] = container(api).pop("livenessProbe")
    with pytest.raises(k8s.ValidationError):
        k8s.validate(api, KUBE_VERSION, strict=True)


# --- the sites ------------------------------------------------------------------------------------------
def test_there_is_a_values_file_for_every_site_of_the_topology():
    """Each site of infra/topology.yaml has charts/values-<region>.yaml with its level and name; a
    city links up to its parent, the province down to each of its cities."""
    with open(ROOT / "infra" / "topology.yaml", encoding="utf-8") as fh:
        sites = {s["region"]: s for s in yaml.safe_load(fh)["sites"]}
    files = {p.name: site_values(p.name) for p in SITE_FILES}
    assert set(files) == {f"values-{r}.yaml" for r in sites}
    assert {"440000", "440100", "440300"} <= set(sites)
    for name, values in files.items():
        site = sites[name[len("values-"):-len(".yaml")]]
        assert values["site"]["region"] == site["region"]
        assert values["site"]["level"] == site["level"]
        assert values["site"]["name"] == site["name"]
        up = [link["site"] for link in values.get("federation", {}).get("upstreams", [])]
        down = [link["site"] for link in values.get("federation", {}).get("downstreams", [])]
        assert up == ([site["parent"]] if site.get("parent") else [])
        assert sorted(down) == sorted(r for r, s in sites.items() if s.get("parent") == site["region"])


def _departments_in_city():
    _, packages = read_data_dir(str(ROOT / "services" / "catalog" / "data"))
    return {item["department_code"] for pkg in packages for item in pkg["items"]}


def _departments_of_province(region):
    raw = read_catalog(str(ROOT / "services" / "catalog" / "data"))
    found = set()
    for _, where, overlay in raw["overlays"]:
        if where == region and overlay.get("kind") == "overlay":
            found |= set(overlay.get("implementing_bodies") or {})
            for changes in (overlay.get("packages") or {}).values():
                found |= {i["department_code"] for i in (changes or {}).get("add_items") or []}
    return found


@pytest.mark.parametrize("site", SITES)
def test_the_desks_are_the_departments_of_the_catalog_in_that_region(site):
    """A city runs a desk for every department that implements an item of its packages; the province
    one for each department with a provincial body or a provincial item. Officers decide, except
    where the desk rules file names the department in that region: there it decides item by item
    (a `manual` or `materials_present` would silently stand in for the file)."""
    values = site_values(site)
    region = values["site"]["region"]
    with open(ROOT / "services" / "catalog" / "data" / "departments.yaml", encoding="utf-8") as fh:
        known = set(yaml.safe_load(fh))
    desks = values["desks"]
    departments = [d["department"] for d in desks]
    assert len(departments) == len(set(departments))
    assert set(departments) <= known
    assert {d["region"] for d in desks} == {region}
    if values["site"]["level"] == "province":
        assert set(departments) == _departments_of_province(region)
    else:
        assert set(departments) == _departments_in_city()
    with open(ROOT / "services" / "desk" / "data" / "rules.yaml", encoding="utf-8") as fh:
        rules = yaml.safe_load(fh) or {}
    by_file = {department for department, regions in rules.items() if region in (regions or {})}
    assert {d["department"] for d in desks if d["rule"] == "by_item"} == by_file & set(departments)
    assert {d["rule"] for d in desks if d["department"] not in by_file} <= {"manual"}
    if region == "440100":
        assert by_file  # the demo case's departments decide some items on their materials


# --- desks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("site", SITES)
def test_one_deployment_per_desk(site):
    values = site_values(site)
    desks = desk_deployments(rendered(site))
    assert len(desks) == len(values["desks"])
    for desk in values["desks"]:
        user = desk_broker_user(desk["department"], desk["region"])
        deployment = desks[user]
        c = container(deployment)
        env = env_of(c)
        assert deployment["spec"]["replicas"] == desk["replicas"]
        assert c["command"] == ["python", "-m", "services.desk"]
        assert env["ONETHING_DESK_DEPARTMENT"]["value"] == desk["department"]
        assert env["ONETHING_DESK_REGION"]["value"] == desk["region"]
        if desk["rule"] == "by_item":
            assert "ONETHING_DESK_RULE" not in env  # the rules file decides
        else:
            assert env["ONETHING_DESK_RULE"]["value"] == desk["rule"]


@pytest.mark.parametrize("site", SITES)
def test_a_desk_has_its_own_broker_login_and_nothing_of_the_platform(site):
    """No MongoDB, no S3, no service token, no mounted secret: one secret reference, its password."""
    values = effective(site)
    for user, deployment in desk_deployments(rendered(site)).items():
        pod = deployment["spec"]["template"]["spec"]
        c = container(deployment)
        env = env_of(c)
        assert not [n for n in env if re.search("MONGO|S3|BUCKET|DB_PREFIX|TOKEN|AUTH|GRPC", n)], user
        assert "envFrom" not in c
        assert [v for v in pod.get("volumes", []) if set(v) - {"name", "emptyDir"}] == []
        refs = [e["valueFrom"] for e in env.values() if "valueFrom" in e]
        assert refs == [{"fieldRef": {"fieldPath": "metadata.name"}},  # ONETHING_PROCESS_NAME: the pod's name
                        {"secretKeyRef": {"name": values["deskDefaults"]["passwordSecret"], "key": user}}]
        assert env["ONETHING_AMQP_URI"]["value"].startswith(f"amqp://{user}:$(AMQP_PASSWORD)@")
        assert list(env).index("AMQP_PASSWORD") < list(env).index("ONETHING_AMQP_URI")


def test_the_desk_rules_may_come_from_a_config_map():
    values = merged(site_values("values-440100.yaml"),
                    {"deskDefaults": {"rulesConfigMap": {"name": "desk-rules", "key": "rules.yaml"}}})
    for deployment in desk_deployments(render(values, "onething-440100")).values():
        c = container(deployment)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["rules"]["configMap"] == {"name": "desk-rules", "items": [{"key": "rules.yaml", "path": "rules.yaml"}]}
        mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "rules")
        assert env_of(c)["ONETHING_DESK_RULES_FILE"]["value"] == f"{mount}/rules.yaml"
        assert not [v for v in volumes.values() if "secret" in v or "projected" in v]


def test_a_desk_may_keep_its_own_secret():
    values = site_values("values-440100.yaml")
    values["desks"][0]["passwordSecret"] = {"name": "wsjk-own", "key": "password"}
    desk = desk_deployments(render(values, "onething-440100"))[desk_broker_user("wsjk", "440100")]
    assert env_of(container(desk))["AMQP_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "wsjk-own", "key": "password"}}


# --- names and selectors --------------------------------------------------------------------------------
@pytest.mark.parametrize("release", [None, LONGEST_RELEASE])
@pytest.mark.parametrize("site", SITES)
def test_names_and_label_values_fit_in_63_characters_and_stay_apart(site, release):
    docs = rendered(site, release)
    names = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names))
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]["name"]
        for value in doc["metadata"]["labels"].values():
            assert len(value) <= 63, value
    desks = desk_deployments(docs)
    for user, deployment in desks.items():
        assert deployment["metadata"]["name"].endswith("-" + user)


def _selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("site", SITES)
def test_each_selector_selects_the_pods_of_exactly_one_deployment(site):
    docs = rendered(site)
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in of_kind(docs, "Deployment")}
    selectors = [d["spec"]["selector"]["matchLabels"] for d in of_kind(docs, "Deployment")]
    assert len({json.dumps(s, sort_keys=True) for s in selectors}) == len(selectors)
    for name, labels in pods.items():
        matching = [s for s in selectors if _selects(s, labels)]
        assert len(matching) == 1, name
        assert matching[0]["app.kubernetes.io/instance"] == f"onething-{site_values(site)['site']['region']}"
    for doc in of_kind(docs, "Service") + of_kind(docs, "PodDisruptionBudget"):
        selector = doc["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert len([n for n, labels in pods.items() if _selects(selector, labels)]) == 1, doc["metadata"]["name"]


def test_two_releases_never_select_each_others_pods():
    a = rendered(SITES[0], "site-a")
    b = rendered(SITES[0], "site-b")
    for deployment in of_kind(a, "Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert not [d for d in of_kind(b, "Deployment") if _selects(selector, d["spec"]["template"]["metadata"]["labels"])]


# --- the services ---------------------------------------------------------------------------------------
def _uses_object_store(name):
    return "Blobs" in (ROOT / "services" / name / "wiring.py").read_text(encoding="utf-8")


def _presents_a_service_token(name):
    return any(f'service_metadata("{name}")' in p.read_text(encoding="utf-8")
               for p in (ROOT / "services" / name).glob("*.py"))


def test_the_values_name_every_service_of_the_registry_with_its_port():
    with open(CHART / "values.yaml", encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)
    assert list(defaults["services"]) == [s.name for s in SERVICES]
    assert {n: s["api"]["port"] for n, s in defaults["services"].items()} == {s.name: s.port for s in SERVICES}


@pytest.mark.parametrize("site", SITES)
def test_each_service_runs_its_api_and_worker_with_its_own_credentials(site):
    values = effective(site)
    docs = rendered(site)
    found = deployments(docs)
    services = {d["metadata"]["name"]: d for d in of_kind(docs, "Service")}
    assert len(found) == 2 * len(SERVICES) + len(values["desks"])
    for svc in SERVICES:
        mine = values["services"][svc.name]
        secret = mine["credentialsSecret"]
        api, worker = found[f"{dns(svc.name)}-api"], found[f"{dns(svc.name)}-worker"]
        assert container(api)["command"] == ["python", "-m", svc.api_module]
        assert container(worker)["command"] == ["nameko", "run", "--config", "infra/nameko.yaml", svc.worker]
        assert container(api)["ports"][0]["containerPort"] == mine["api"]["port"]
        assert services[api["metadata"]["name"]]["spec"]["ports"][0]["port"] == mine["api"]["port"]
        assert api["spec"]["replicas"] == mine["api"]["replicas"]
        assert worker["spec"]["replicas"] == mine["worker"]["replicas"]
        for deployment in (api, worker):
            env = env_of(container(deployment))
            assert env["ONETHING_AMQP_URI"]["value"].startswith(f"amqp://{broker_user(svc.name)}:$(AMQP_PASSWORD)@")
            assert env["AMQP_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret
            assert env["ONETHING_MONGO_URI"]["valueFrom"]["secretKeyRef"]["name"] == secret
            assert env["ONETHING_REGION"]["value"] == values["site"]["region"]
            assert env["ONETHING_PROFILE"]["value"] == "production"
            if _uses_object_store(svc.name):
                for key in ("ONETHING_S3_ACCESS_KEY", "ONETHING_S3_SECRET_KEY"):
                    assert env[key]["valueFrom"]["secretKeyRef"]["name"] == secret
            else:
                assert not [n for n in env if "S3" in n or "BUCKET" in n], svc.name
            # every secret a service's pod reads is its own
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "secretKeyRef" in e.get("valueFrom", {})}
            assert refs == {secret}
            for other in SERVICES:
                assert env[f"ONETHING_{other.name.upper()}_HOST"]["value"] in services
        token = [v for v in api["spec"]["template"]["spec"]["volumes"] if v["name"] == "service-token"]
        assert bool(token) == _presents_a_service_token(svc.name), svc.name
        if token:
            assert token[0]["secret"]["secretName"] == secret


@pytest.mark.parametrize("site", SITES)
def test_every_setting_the_chart_sets_is_one_config_reads(site):
    """A misspelt variable would be ignored without a word: every ONETHING_* name the chart sets is
    read by services/common/config.py."""
    text = (ROOT / "services" / "common" / "config.py").read_text(encoding="utf-8")
    known = set(re.findall(r'"(ONETHING_[A-Z0-9_]+)"', text))
    known |= {f"ONETHING_{s.name.upper()}_{what}" for s in SERVICES for what in ("HOST", "PORT")}
    assert 'f"ONETHING_{service.upper()}_PORT"' in text and 'f"ONETHING_{service.upper()}_HOST"' in text
    values = site_values(site)
    values["settings"] = {"ONETHING_GRPC_THREADS": "32"}
    for deployment in of_kind(render(values, "onething"), "Deployment") + of_kind(rendered(site), "Job"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            names = {e["name"] for e in c["env"]}
            unknown = {n for n in names if n.startswith("ONETHING_")} - known
            assert unknown == set(), f"{deployment['metadata']['name']}: {sorted(unknown)}"
            assert names <= known | {"AMQP_PASSWORD", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                                     "OTEL_EXPORTER_OTLP_PROTOCOL"}


@pytest.mark.parametrize("endpoint", ["", "http://otel-collector.observability:4318"])
def test_spans_go_to_the_collector_when_the_values_name_one(endpoint):
    values = site_values("values-440100.yaml")
    values["otlp"] = {"endpoint": endpoint, "protocol": "http/protobuf"}
    for deployment in of_kind(render(values, "onething"), "Deployment"):
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in c["env"]}
            if endpoint:
                assert env["OTEL_TRACES_EXPORTER"] == "otlp" and env["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
                assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
            else:  # the span files in the pod's folder
                assert "OTEL_TRACES_EXPORTER" not in env and "OTEL_EXPORTER_OTLP_ENDPOINT" not in env


@pytest.mark.parametrize("site", SITES)
def test_every_pod_runs_as_a_user_without_privileges_and_within_its_resources(site):
    docs = rendered(site)
    for doc in of_kind(docs, "Deployment") + of_kind(docs, "Job"):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
            # the root filesystem is read-only: the span folder is an emptyDir
            var = env_of(c)["ONETHING_VAR_DIR"]["value"]
            assert var in {m["mountPath"] for m in c["volumeMounts"]}


def test_the_image_holds_every_module_the_chart_runs():
    """Each command names a module in a folder the Dockerfile copies and .dockerignore keeps."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\w+)/ \1/$", dockerfile, flags=re.M))
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    assert "PYTHONPATH=/app:/app/gen" in dockerfile and re.search(r"^USER 10001", dockerfile, flags=re.M)
    modules = set()
    for doc in of_kind(rendered(SITES[0]), "Deployment") + of_kind(rendered(SITES[0]), "Job"):
        command = container(doc)["command"]
        if command[:2] == ["python", "-m"]:
            modules.add(command[2])
        else:
            assert command[:4] == ["nameko", "run", "--config", "infra/nameko.yaml"]
            assert (ROOT / command[3]).exists()
            modules.add(command[4].split(":")[0])
    for module in sorted(modules):
        path = module.replace(".", "/")
        assert (ROOT / f"{path}.py").exists() or (ROOT / path / "__main__.py").exists(), module
        assert path.split("/")[0] in copied, module
        assert not [i for i in ignored if path.startswith(i.rstrip("/")) or i.strip("*/") in path.split("/")], module


# --- probes -------------------------------------------------------------------------------------------
OPS_PORT = {"name": "ops", "containerPort": 8080, "protocol": "TCP"}


@pytest.mark.parametrize("site", SITES)
def test_under_tls_the_apis_readiness_asks_their_grpc_health_through_the_projects_client(site):
    for svc in SERVICES:
        c = container(deployments(rendered(site))[f"{dns(svc.name)}-api"])
        command = c["readinessProbe"]["exec"]["command"]
        assert command[0] == "env" and command[2:4] == ["python", "-c"]
        assert f'"127.0.0.1:{c["ports"][0]["containerPort"]}"' in command[4]


def test_without_tls_the_apis_readiness_is_the_native_grpc_probe_and_no_tls_settings():
    values = merged(site_values("values-440100.yaml"), {"profile": "local", "grpcTls": {"enabled": False}})
    found = deployments(render(values, "onething-440100"))
    for svc in SERVICES:
        c = container(found[f"{dns(svc.name)}-api"])
        assert c["readinessProbe"]["grpc"] == {"port": svc.port}
        assert not [n for n in env_of(c) if n.startswith("ONETHING_GRPC_TLS")]
        assert "grpc-tls" not in {v["name"] for v in found[f"{dns(svc.name)}-api"]["spec"]["template"]["spec"]["volumes"]}


@pytest.mark.parametrize("site", SITES)
def test_an_api_is_started_and_alive_by_its_ops_endpoint_so_a_store_away_never_restarts_it(site):
    """Its gRPC health goes NOT_SERVING while a dependency is down: that takes the pod out of its
    Service (readiness), and must not restart it (startup, liveness)."""
    for svc in SERVICES:
        c = container(deployments(rendered(site))[f"{dns(svc.name)}-api"])
        assert c["ports"] == [{"name": "grpc", "containerPort": svc.port, "protocol": "TCP"}, OPS_PORT]
        for probe in ("startupProbe", "livenessProbe"):
            assert c[probe]["httpGet"] == {"path": "/healthz", "port": "ops"}, probe


@pytest.mark.parametrize("site", SITES)
def test_every_pod_serves_its_ops_endpoint_named_after_itself_and_is_scraped(site):
    for name, deployment in deployments(rendered(site)).items():
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}, name
        c = container(deployment)
        assert OPS_PORT in c["ports"], name
        env = env_of(c)
        assert env["ONETHING_OPS_PORT"]["value"] == "8080"
        assert env["ONETHING_OPS_BIND_HOST"]["value"] == "0.0.0.0"  # the kubelet and Prometheus reach it
        assert env["ONETHING_PROCESS_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize("switch", [False, True])
def test_the_workers_and_desks_probes_are_values_switches_on_by_default(switch):
    with open(CHART / "values.yaml", encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)
    assert defaults["workers"]["probe"] is True and defaults["deskDefaults"]["probe"] is True
    values = merged(site_values("values-440100.yaml"), {"workers": {"probe": switch}, "deskDefaults": {"probe": switch}})
    docs = render(values, "onething-440100")
    probed = [container(found) for name, found in deployments(docs).items() if not name.endswith("-api")]
    assert len(probed) == len(SERVICES) + len(values["desks"])
    for c in probed:
        assert c["ports"] == [OPS_PORT]  # served and scraped either way
        if switch:
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        else:
            assert "readinessProbe" not in c and "livenessProbe" not in c


def _pki(folder, server_name):
    """A CA and one certificate for `server_name` (server and client use, as the chart mounts one
    kubernetes.io/tls Secret for both), as the files the Secret holds."""
    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject, public_key, ca):
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name("chart test CA"))
                   .public_key(public_key).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = (builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                             ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    files = {"ca.crt": cert("chart test CA", ca_key.public_key(), True),
             "tls.crt": cert(server_name, key.public_key(), False),
             "tls.key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())}
    for file_name, data in files.items():
        (folder / file_name).write_bytes(data)
    return {f: (folder / f).read_bytes() for f in files}


@pytest.fixture
def tls_health_server(tmp_path):
    """A gRPC server with health checking over TLS on an ephemeral port, with the certificate of the
    intake api's Service name (not 127.0.0.1: the probe must name the service it asks)."""
    made = []

    def start(client_auth):
        pem = _pki(tmp_path, "onething-440100-intake-api")
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        credentials = grpc.ssl_server_credentials([(pem["tls.key"], pem["tls.crt"])], root_certificates=pem["ca.crt"],
                                                  require_client_auth=client_auth)
        port = server.add_secure_port("127.0.0.1:0", credentials)
        server.start()
        made.append(server)
        return servicer, port

    yield start
    for server in made:
        server.stop(0).wait()


def _run_probe(values, port, secret_dir):
    """The intake api's readiness probe of the rendered manifest, run as the kubelet would run it in
    the pod: with the pod's TLS settings (the Secret's files where the chart mounts them)."""
    values = merged(values, {"services": {"intake": {"api": {"port": port}}}})
    c = container(deployments(render(values, "onething-440100"))["intake-api"])
    mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "grpc-tls")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"}
    for name, entry in env_of(c).items():
        if name.startswith("ONETHING_GRPC_TLS") or name == "ONETHING_PROFILE":
            env[name] = entry["value"].replace(mount, str(secret_dir))
    command = [sys.executable if part == "python" else part for part in c["readinessProbe"]["exec"]["command"]]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("client_auth", [False, True])
def test_the_tls_probe_passes_on_a_serving_api_and_fails_on_one_that_is_not(tls_health_server, tmp_path, client_auth):
    servicer, port = tls_health_server(client_auth)
    values = merged(site_values("values-440100.yaml"), {"grpcTls": {"clientAuth": client_auth}})
    done = _run_probe(values, port, tmp_path)
    assert done.returncode == 0, done.stderr
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert _run_probe(values, port, tmp_path).returncode != 0


def test_the_tls_probe_fails_when_the_certificate_does_not_name_the_service(tls_health_server, tmp_path):
    _, port = tls_health_server(False)
    values = merged(site_values("values-440100.yaml"), {"grpcTls": {"serverName": "someone-else"}})
    done = _run_probe(values, port, tmp_path)
    assert done.returncode != 0 and "someone-else" in json.dumps(
        container(deployments(render(values, "onething-440100"))["intake-api"])["readinessProbe"])


# --- the topology hook ----------------------------------------------------------------------------------
@pytest.mark.parametrize("site", SITES)
def test_the_broker_topology_is_loaded_before_install_and_upgrade(site):
    values = site_values(site)
    (job,) = of_kind(rendered(site), "Job")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert set(hooks) == {"pre-install", "pre-upgrade"}
    c = container(job)
    assert c["command"][:6] == ["python", "-m", "infra.topology", "apply", "--site", values["site"]["region"]]
    env = env_of(c)
    assert env["ONETHING_DESKS"]["value"] == ",".join(f"{d['department']}:{d['region']}" for d in values["desks"])
    assert "secretKeyRef" in env["ONETHING_BROKER_MANAGEMENT_URL"]["valueFrom"]
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    passwords = env["ONETHING_BROKER_PASSWORDS_FILE"]["value"]
    assert os.path.dirname(passwords) == mounts["broker-passwords"]
    assert volumes["broker-passwords"]["secret"]["items"][0]["path"] == os.path.basename(passwords)
    links = values["federation"].get("upstreams", []) + values["federation"].get("downstreams", [])
    assert links
    assert env["ONETHING_BROKER_LINKS_DIR"]["value"] == mounts["links"]
    sources = volumes["links"]["projected"]["sources"]
    assert [s["secret"]["items"][0]["path"] for s in sources] == [link["site"] for link in links]
    assert [s["secret"]["name"] for s in sources] == [link["uriSecret"]["name"] for link in links]


# --- values refused ---------------------------------------------------------------------------------------
REFUSED = [
    ({"surprise": 1}, "additional properties 'surprise'"),
    ({"site": {"town": "天河"}}, "additional properties 'town'"),
    ({"services": {"catalog": {"api": {"portt": 50051}}}}, "additional properties 'portt'"),
    ({"services": {"archive": {}}}, "additional properties 'archive'"),
    ({"broker": {"managementUrlSecret": {"name": "x", "key": "y", "value": "z"}}}, "additional properties 'value'"),
    ({"site": {"region": "44010"}}, "does not match pattern"),
    ({"site": {"region": "4401OO"}}, "does not match pattern"),
    ({"site": {"level": "town"}}, "value must be one of"),
    ({"site": {"region": "440000"}}, "'440000' does not match pattern"),  # a city's level with the province's code
    ({"site": {"region": "440106"}}, "'440106' does not match pattern"),
    ({"profile": "staging"}, "value must be one of"),
    ({"grpcTls": {"enabled": False}}, "value must be true"),  # production without TLS would not start
    ({"settings": {"ONETHING_MONGO_URI": "mongodb://elsewhere"}}, "invalid propertyName"),
    ({"settings": {"PATH": "/tmp"}}, "invalid propertyName"),
    ({"settings": {"ONETHING_OPS_PORT": "9090"}}, "invalid propertyName"),  # the probes and annotations say 8080
    ({"deskDefaults": {"probe": "yes"}}, "got string, want boolean"),
    ({"desks": []}, "minItems"),
    ({"desks": [{"department": "wsjk", "region": "440100", "replicas": 1}]}, "missing property 'rule'"),
    ({"desks": [{"department": "wsjk", "region": "440100", "replicas": 1, "rule": "always"}]}, "value must be one of"),
    ({"desks": [{"department": "wsjk", "region": "440100", "replicas": 1, "rule": "manual", "mongo": "x"}]},
     "additional properties 'mongo'"),
    ({"federation": {"upstreams": [{"site": "440000"}]}}, "missing property 'uriSecret'"),
    ({"services": {"intake": {"api": {"resources": {"requests": {"memory": None}}}}}}, "missing property 'memory'"),
]


@pytest.mark.parametrize(("override", "message"), REFUSED)
def test_the_schema_refuses_values_it_does_not_know_or_cannot_use(override, message):
    values = merged(site_values("values-440100.yaml"), override)
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
            chart.validate_schema(values)
        with pytest.raises(helm.HelmValuesError):
            chart.render(values, name="onething-440100")


def test_the_province_has_no_upstream():
    values = merged(site_values("values-440000.yaml"), {"federation": {"upstreams": [
        {"site": "100000", "uriSecret": {"name": "x", "key": "uri"}}]}})
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError, match="maxItems"):
        chart.validate_schema(values)


def test_a_values_file_with_an_unknown_key_fails_the_lint(tmp_path):
    text = (ROOT / "charts" / "values-440100.yaml").read_text(encoding="utf-8")
    text = text.replace("site:\n", "site:\n  cityCode: \"020\"\n", 1)
    (tmp_path / "values.yaml").write_text(text, encoding="utf-8")
    values = helm.values_from_yaml((tmp_path / "values.yaml").read_text(encoding="utf-8"))
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert any("additional properties 'cityCode'" in e for e in report["errors"]), report


def test_the_chart_alone_names_no_site():
    """The defaults say no site: a release must be given its values file."""
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError, match="/site/region"):
        chart.validate_schema({})


@pytest.mark.parametrize(("override", "message"), [
    ({"desks": [{"department": "wsjk", "region": "440100", "replicas": 1, "rule": "manual"},
                {"department": "wsjk", "region": "440100", "replicas": 2, "rule": "materials_present"}]},
     "desk-wsjk-440100 (department wsjk, region 440100) is listed twice"),
    ({"federation": {"upstreams": [{"site": "440000", "uriSecret": {"name": "a", "key": "uri"}},
                                   {"site": "440000", "uriSecret": {"name": "b", "key": "uri"}}]}},
     "site 440000 is linked twice"),
    ({"federation": {"downstreams": [{"site": "440100", "uriSecret": {"name": "a", "key": "uri"}}]}},
     "site 440100 is linked twice, or is this site itself"),
])
def test_the_templates_refuse_what_the_schema_cannot_see(override, message):
    values = merged(site_values("values-440100.yaml"), override)
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(values, "onething-440100")


def test_every_object_of_the_schema_refuses_unknown_keys():
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    loose = []

    def walk(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and node.get("additionalProperties") is not False:
                loose.append(where)
            if node.get("type") == "object" and "properties" not in node and "propertyNames" not in node:
                loose.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "")
    assert loose == []


@pytest.mark.parametrize("site", SITES)
def test_a_city_takes_its_package_versions_from_its_province_and_the_province_from_no_one(site):
    upstreams = effective(site)["federation"]["upstreams"]
    found_all = deployments(rendered(site))
    for name in ("catalog-api", "catalog-worker"):
        env = env_of(container(found_all[name]))
        if upstreams:
            assert env["ONETHING_CATALOG_UPSTREAM"]["value"] == upstreams[0]["site"] == "440000"
        else:
            assert "ONETHING_CATALOG_UPSTREAM" not in env
