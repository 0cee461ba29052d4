"""deploy/k8s rendered and validated offline (docs/deploy.md).

Each overlay is rendered by `kubectl kustomize` (kustomize v5, which the machine image
ships with kubectl; no cluster is contacted), every core resource is validated with
`kubernetes-validate` against Kubernetes' own schemas (strict: an unknown field is an
error), and the operators' resources against the CRD schemas kept in deploy/k8s/crds
(equally strict). Then the properties the deployment promises: a workload per service
with probes, resources, disruption budgets and autoscalers, network policies that let
each pod reach only what it needs, no secret values, and the same MongoDB users and
roles as compose's mongo-init.
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared import messaging
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The schemas of the Kubernetes the kubectl rendering them is made for (each
# validation reads the version's schemas afresh: one version keeps the test fast).
KUBERNETES_VERSION = "1.32.0"
SERVICES = tuple(messaging.SERVICES)
AUTOSCALED = tuple(name for name in SERVICES if name != "search")
BROKER = {"app.kubernetes.io/name": "jvreg-rabbitmq"}
MONGO = {"app": "jvreg-mongo-svc"}
DNS = {"k8s-app": "kube-dns"}
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8")


def _load(relative_path: str, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mongo_init = _load("deploy/mongo_init.py", "jvreg_mongo_init_k8s")
compose_env = _load("deploy/compose_env.py", "jvreg_compose_env_k8s")


@functools.cache
def rendered(overlay: str) -> tuple[dict, ...]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its kustomize) renders deploy/k8s; the machine image has it"
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def of_kind(docs, kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def workloads(docs) -> dict[str, dict]:
    """Each service's workload by service name: a Deployment, search's a StatefulSet."""
    found = {**of_kind(docs, "Deployment"), **of_kind(docs, "StatefulSet")}
    return {name: found[f"jvreg-{name}"] for name in SERVICES}


def pod_templates(docs) -> dict[str, dict]:
    """The pod template of every registry workload and Job, by its name."""
    kinds = ("Deployment", "StatefulSet", "Job")
    return {
        doc["metadata"]["name"]: doc["spec"]["template"] for doc in docs if doc["kind"] in kinds
    }


def container(template: dict) -> dict:
    (only,) = template["spec"]["containers"]
    return only


def env_of(template: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container(template).get("env", [])}


# --- rendering and validation --------------------------------------------------------


def _strict(schema):
    """The schema with unknown fields refused wherever it names its fields, as
    `kubectl apply --validate=strict` refuses them (an API server drops them)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of each CRD in deploy/k8s/crds."""
    schemas = {}
    for path in sorted((K8S / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = _strict(version["schema"]["openAPIV3Schema"])
    return schemas


def test_the_crd_schemas_are_valid_custom_resource_definitions():
    paths = sorted((K8S / "crds").glob("*.yaml"))
    assert len(paths) == 2
    for path in paths:
        crd = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)
        jsonschema.Draft7Validator.check_schema(
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_validates(overlay):
    custom = crd_schemas()
    kinds = set()
    for doc in rendered(overlay):
        kinds.add(doc["kind"])
        key = (doc["apiVersion"], doc["kind"])
        if key in custom:
            jsonschema.validate(doc, custom[key])
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert {"RabbitmqCluster", "MongoDBCommunity", "NetworkPolicy"} <= kinds


def test_the_strict_crd_check_refuses_an_unknown_field():
    cluster = dict(of_kind(rendered("prod"), "RabbitmqCluster")["jvreg-rabbitmq"])
    cluster["spec"] = {**cluster["spec"], "replica": 3}
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        jsonschema.validate(cluster, crd_schemas()[("rabbitmq.com/v1beta1", "RabbitmqCluster")])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_lands_in_the_overlays_namespace(overlay):
    docs = rendered(overlay)
    (namespace,) = of_kind(docs, "Namespace")
    assert namespace == ("jvreg" if overlay == "prod" else "jvreg-dev")
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]


# --- workloads ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_its_module_with_probes_and_resources(overlay, name):
    workload = workloads(rendered(overlay))[name]
    assert workload["kind"] == ("StatefulSet" if name == "search" else "Deployment")
    app = container(workload["spec"]["template"])
    assert app["command"] == [
        "nameko",
        "run",
        "--config",
        "deploy/config.yaml",
        f"services.{name}.service",
    ]
    assert app["readinessProbe"] and app["livenessProbe"]
    for bound in ("requests", "limits"):
        assert set(app["resources"][bound]) == {"cpu", "memory"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_is_ready_by_health_and_alive_by_its_port(overlay):
    app = container(workloads(rendered(overlay))["gateway"]["spec"]["template"])
    (port,) = app["ports"]
    assert (port["name"], port["containerPort"]) == ("http", 8000)
    assert app["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert app["livenessProbe"]["tcpSocket"] == {"port": "http"}


@pytest.mark.parametrize("name", [n for n in SERVICES if n != "gateway"])
def test_consumers_are_probed_by_their_connections(name):
    app = container(workloads(rendered("prod"))[name]["spec"]["template"])
    ports = ["5672"] if name == "search" else ["5672", "27017"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert app[probe]["exec"]["command"] == ["python", "deploy/probe.py", *ports]
    assert (ROOT / "deploy" / "probe.py").is_file()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_registry_pod_runs_locked_down(overlay):
    for name, template in pod_templates(rendered(overlay)).items():
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        context = container(template)["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert container(template)["envFrom"] == [{"configMapRef": {"name": "jvreg-settings"}}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_registry_container_runs_the_overlays_image(overlay):
    images = {container(t)["image"] for t in pod_templates(rendered(overlay)).values()}
    assert images == {"registry.example.org/jvreg:0.1.0" if overlay == "prod" else "jvreg:dev"}


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_each_service_has_a_disruption_budget(overlay, name):
    docs = rendered(overlay)
    budget = of_kind(docs, "PodDisruptionBudget")[f"jvreg-{name}"]
    assert budget["spec"]["maxUnavailable"] == 1
    labels = workloads(docs)[name]["spec"]["template"]["metadata"]["labels"]
    assert selects(budget["spec"]["selector"], labels)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", AUTOSCALED)
def test_the_gateway_and_the_consumers_scale_on_cpu(overlay, name):
    docs = rendered(overlay)
    autoscaler = of_kind(docs, "HorizontalPodAutoscaler")[f"jvreg-{name}"]["spec"]
    assert autoscaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"jvreg-{name}",
    }
    assert 1 <= autoscaler["minReplicas"] < autoscaler["maxReplicas"]
    ((metric),) = autoscaler["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # The autoscaler owns the count: a fixed one would fight it on every apply.
    assert "replicas" not in workloads(docs)[name]["spec"]
    if overlay == "prod":
        assert autoscaler["minReplicas"] >= (3 if name == "gateway" else 2)


def test_search_is_a_stateful_set_with_an_index_per_instance():
    search = workloads(rendered("prod"))["search"]
    assert "search" not in {
        n.removeprefix("jvreg-") for n in of_kind(rendered("prod"), "HorizontalPodAutoscaler")
    }
    assert search["spec"]["replicas"] == 3
    (claim,) = search["spec"]["volumeClaimTemplates"]
    mounts = {
        m["name"]: m["mountPath"] for m in container(search["spec"]["template"])["volumeMounts"]
    }
    assert (
        mounts[claim["metadata"]["name"]]
        == env_of(search["spec"]["template"])["JVREG_SEARCH_DATA_DIR"]["value"]
    )
    assert (
        of_kind(rendered("prod"), "Service")[search["spec"]["serviceName"]]["spec"]["clusterIP"]
        == "None"
    )


def test_prod_gateway_service_keeps_client_addresses():
    service = of_kind(rendered("prod"), "Service")["jvreg-gateway"]["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["externalTrafficPolicy"] == "Local"
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]


# --- users and secrets ---------------------------------------------------------------


def secret_refs(node):
    """Every secretKeyRef and passwordSecretRef in `node`, as (name, key)."""
    if isinstance(node, dict):
        found = []
        for field in ("secretKeyRef", "passwordSecretRef"):
            if isinstance(node.get(field), dict):
                found.append((node[field]["name"], node[field].get("key", "password")))
        return found + [ref for value in node.values() for ref in secret_refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in secret_refs(value)]
    return []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_in_the_manifests(overlay):
    docs = rendered(overlay)
    assert not of_kind(docs, "Secret"), "secrets are created apart (compose_env.py --kubernetes)"
    generated = set(compose_env.wanted())
    for name, key in secret_refs(docs):
        if name == compose_env.KUBERNETES_SECRET:
            assert key in generated, key
        else:  # the administrator the RabbitMQ Cluster Operator creates
            assert (name, key) in {
                ("jvreg-rabbitmq-default-user", "username"),
                ("jvreg-rabbitmq-default-user", "password"),
            }
    for text in yaml.safe_dump_all(docs).split():
        for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", text):
            assert re.fullmatch(r"\$\([A-Z_]+\)", password), text


def test_the_kubernetes_secret_holds_every_key_the_manifests_use():
    secret = compose_env.kubernetes_secret()
    assert secret["metadata"]["name"] == compose_env.KUBERNETES_SECRET
    used = {key for name, key in secret_refs(rendered("prod")) if name == "jvreg-secrets"}
    assert used <= set(secret["stringData"])
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", [*SERVICES, messaging.OPS])
def test_each_process_logs_in_as_its_own_users(name):
    template = pod_templates(rendered("prod"))[f"jvreg-{name}"]
    env = env_of(template)
    passwords = {
        "BROKER_PASSWORD": f"JVREG_BROKER_PASSWORD_{name.upper()}",
        "MONGO_PASSWORD": mongo_init.password_variable(name),
    }
    for variable, key in passwords.items():
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "jvreg-secrets", "key": key}
    amqp = urlsplit(env["JVREG_AMQP_URI"]["value"])
    assert (amqp.username, amqp.password) == (f"jvreg-{name}", "$(BROKER_PASSWORD)")
    assert (amqp.hostname, amqp.port) == ("jvreg-rabbitmq", 5672)
    mongo = urlsplit(env["JVREG_MONGO_URI"]["value"])
    assert (mongo.username, mongo.password) == (f"jvreg-{name}", "$(MONGO_PASSWORD)")
    assert mongo.hostname == "jvreg-mongo-svc"
    assert "replicaSet=jvreg-mongo" in mongo.query and "authSource=admin" in mongo.query


def test_mongo_users_and_roles_are_those_of_compose():
    mongo = of_kind(rendered("prod"), "MongoDBCommunity")["jvreg-mongo"]["spec"]
    declared = {
        user["name"]: (
            user["passwordSecretRef"]["key"],
            tuple((role["name"], role["db"]) for role in user["roles"]),
        )
        for user in mongo["users"]
    }
    expected = {u.name: (u.password_variable, u.roles) for u in mongo_init.users(Settings())}
    assert declared == expected
    custom = {role["role"]: role["privileges"] for role in mongo["security"]["roles"]}
    assert custom == mongo_init.custom_roles(Settings())
    assert all(user["db"] == "admin" for user in mongo["users"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backends_replicate_in_prod_and_shrink_in_dev(overlay):
    docs = rendered(overlay)
    broker = of_kind(docs, "RabbitmqCluster")["jvreg-rabbitmq"]["spec"]
    mongo = of_kind(docs, "MongoDBCommunity")["jvreg-mongo"]["spec"]
    replicas = 3 if overlay == "prod" else 1
    assert broker["replicas"] == replicas
    assert mongo["members"] == replicas
    assert (mongo["type"], mongo["security"]["authentication"]["modes"]) == (
        "ReplicaSet",
        ["SCRAM"],
    )
    assert "default_queue_type = quorum" in broker["rabbitmq"]["additionalConfig"].splitlines()


# --- network policies ----------------------------------------------------------------


def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "only In is emulated here"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def policies_for(docs, labels: dict) -> list[dict]:
    return [
        policy["spec"]
        for policy in of_kind(docs, "NetworkPolicy").values()
        if selects(policy["spec"]["podSelector"], labels)
    ]


def egress(docs, labels: dict) -> set[tuple[str, int | None]]:
    """Where a pod with `labels` may connect: ("broker", 5672), ("dns", 53),
    ("internet", None), … — named by what each peer selects."""
    allowed = set()
    for spec in policies_for(docs, labels):
        for rule in spec.get("egress", []):
            ports = [port.get("port") for port in rule.get("ports", [])] or [None]
            for peer in rule["to"]:
                if "ipBlock" in peer:
                    target = "internet"
                else:
                    pods = peer["podSelector"].get("matchLabels", {})
                    target = {
                        tuple(BROKER.items()): "broker",
                        tuple(MONGO.items()): "mongo",
                        tuple(DNS.items()): "dns",
                    }[tuple(pods.items())]
                allowed |= {(target, port) for port in ports}
    return allowed


EXPECTED_EGRESS = {
    "gateway": {("broker", 5672), ("mongo", 27017)},
    "ventures": {("broker", 5672), ("mongo", 27017)},
    "facilities": {("broker", 5672), ("mongo", 27017)},
    "licensing": {("broker", 5672), ("mongo", 27017)},
    "investments": {("broker", 5672), ("mongo", 27017)},
    "notifications": {("broker", 5672), ("mongo", 27017), ("internet", None)},
    "search": {("broker", 5672), ("mongo", 27017)},  # its rebuild reads the event logs
    "ops": {("broker", 5672), ("broker", 15672), ("mongo", 27017)},
    "broker-users": {("broker", 15672)},
}


@pytest.mark.parametrize("name", list(EXPECTED_EGRESS))
def test_each_pod_reaches_only_what_it_needs(name):
    docs = rendered("prod")
    labels = pod_templates(docs)[f"jvreg-{name}"]["metadata"]["labels"]
    specs = policies_for(docs, labels)
    # A default deny of both directions covers every registry pod.
    assert any(
        set(spec["policyTypes"]) == {"Ingress", "Egress"}
        and not spec.get("ingress")
        and not spec.get("egress")
        for spec in specs
    )
    assert egress(docs, labels) == EXPECTED_EGRESS[name] | {("dns", 53)}
    ingress = [rule for spec in specs for rule in spec.get("ingress", [])]
    if name == "gateway":
        assert ingress == [{"ports": [{"protocol": "TCP", "port": 8000}]}]
    else:
        assert ingress == [], "nothing connects to the consumers: they take work from queues"


def test_webhooks_never_reach_private_addresses():
    docs = rendered("prod")
    labels = pod_templates(docs)["jvreg-notifications"]["metadata"]["labels"]
    blocks = [
        peer["ipBlock"]
        for spec in policies_for(docs, labels)
        for rule in spec.get("egress", [])
        for peer in rule["to"]
        if "ipBlock" in peer
    ]
    assert {block["cidr"] for block in blocks} == {"0.0.0.0/0", "::/0"}
    excepted = [ipaddress.ip_network(net) for block in blocks for net in block["except"]]
    for private in PRIVATE_RANGES:
        assert any(
            ipaddress.ip_network(private).subnet_of(net) for net in excepted if net.version == 4
        )
