"""deploy/, checked statically (no Docker or Kubernetes here): the YAML parses, ports and
variable names match what runspan reads, images are pinned, and Jaeger's configuration is
consistent with itself and with the compose file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from runspan.exporters import settings as otlp
from runspan.exporters.jaeger import DEFAULT_JAEGER_URL, JAEGER_URL_ENV
from runspan.storage.engine import database_url_from

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
JAEGER_CONFIGS = [
    DEPLOY / "jaeger" / "config.yaml",
    DEPLOY / "jaeger" / "config-memory.yaml",
    DEPLOY / "jaeger" / "config-badger.yaml",
]
UI_PORT = urlsplit(DEFAULT_JAEGER_URL).port
# The variables runspan reads, as the package names them.
RUNSPAN_READS = {
    "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "RUNSPAN_DATABASE_URL",
    "RUNSPAN_SERVE_TOKEN",
    JAEGER_URL_ENV,
}


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def compose() -> dict[str, Any]:
    (doc,) = documents(DEPLOY / "compose.yaml")
    return doc  # type: ignore[no-any-return]


def k8s(kind: str, name: str) -> dict[str, Any]:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in documents(path):
            if doc.get("kind") == kind and doc["metadata"]["name"] == name:
                return doc  # type: ignore[no-any-return]
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def images() -> list[str]:
    found = [service["image"] for service in compose()["services"].values()]
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in documents(path):
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            found += [container["image"] for container in pod.get("containers", [])]
    return found


def dotenv() -> dict[str, str]:
    """deploy/.env, which compose reads beside the compose file."""
    found = {}
    for line in (DEPLOY / ".env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def readme_secret(name: str = "runspan-postgres") -> tuple[str, dict[str, str]]:
    """The Secret the README's `kubectl create secret generic NAME` makes: its name and keys."""
    readme = (DEPLOY / "README.md").read_text().replace("\\\n", " ")
    found = re.search(
        rf"kubectl -n runspan create secret generic ({name})((?: +--from-literal=\S+)+)", readme
    )
    assert found, "the README makes the database's Secret"
    keys = dict(literal.split("=", 1) for literal in re.findall(r"--from-literal=(\S+)", found[2]))
    return found[1], {key: value.strip('"') for key, value in keys.items()}


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


class TestFilesParse:
    @pytest.mark.parametrize(
        "path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(DEPLOY))
    )
    def test_every_yaml_file_parses(self, path: Path) -> None:
        assert documents(path)

    def test_every_image_is_pinned_to_a_version(self) -> None:
        for image in images():
            name, _, tag = image.rpartition(":")
            assert name, f"{image} has no tag"
            assert tag != "latest"
            assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-[\w.]+)?", tag), image

    def test_jaeger_is_v2_from_its_own_image(self) -> None:
        """Jaeger v2, 2.20 or newer: the first release whose UI has the GenAI view that
        renders runspan's gen_ai.* messages as a conversation."""
        jaegers = [image for image in images() if "jaeger" in image]
        assert jaegers
        for image in jaegers:
            name, _, tag = image.rpartition(":")
            assert name == "jaegertracing/jaeger"
            major, minor = (int(n) for n in tag.split(".")[:2])
            assert (major, minor) >= (2, 20), image
        assert len(set(jaegers)) == 1, "compose and Kubernetes run the same Jaeger"

    def test_no_jaeger_v1_settings(self) -> None:
        for path in DEPLOY.rglob("*"):
            if path.is_file() and path.suffix in (".yaml", ".md") and path.name != "README.md":
                assert "COLLECTOR_OTLP_ENABLED" not in path.read_text(), path


class TestJaegerConfiguration:
    @pytest.mark.parametrize("path", JAEGER_CONFIGS, ids=lambda p: p.name)
    def test_receivers_ui_and_storage_fit_together(self, path: Path) -> None:
        config = documents(path)[0]
        protocols = config["receivers"]["otlp"]["protocols"]
        assert port_of(protocols["grpc"]["endpoint"]) == otlp.GRPC_PORT
        assert port_of(protocols["http"]["endpoint"]) == otlp.HTTP_PORT
        for protocol in protocols.values():
            # Inside a container the receivers must listen beyond localhost.
            assert "0.0.0.0" in protocol["endpoint"]
        query = config["extensions"]["jaeger_query"]
        assert port_of(query["http"]["endpoint"]) == UI_PORT
        assert query["max_clock_skew_adjust"] == "0s"
        backends = config["extensions"]["jaeger_storage"]["backends"]
        assert query["storage"]["traces"] in backends
        assert config["exporters"]["jaeger_storage_exporter"]["trace_storage"] in backends
        service = config["service"]
        assert set(service["extensions"]) <= set(config["extensions"])
        pipeline = service["pipelines"]["traces"]
        assert pipeline["receivers"] == ["otlp"]
        assert set(pipeline["exporters"]) <= set(config["exporters"])
        assert set(pipeline["processors"]) <= set(config["processors"])

    def test_runspan_serve_by_default_memory_and_badger_as_options(self) -> None:
        """By default Jaeger's one storage is runspan serve (gRPC remote storage), with the
        token runspan serve requires; the other two keep Jaeger's own copy."""
        remote, memory, badger = (documents(path)[0] for path in JAEGER_CONFIGS)
        (store,) = remote["extensions"]["jaeger_storage"]["backends"].values()
        grpc = store["grpc"]
        assert set(grpc) <= {"endpoint", "tls", "headers", "timeout", "writer"}, set(grpc)
        assert grpc["headers"]["authorization"] == "Bearer ${env:RUNSPAN_SERVE_TOKEN}"
        host, port = grpc["endpoint"].removeprefix("${env:RUNSPAN_SERVE_ENDPOINT:-")[:-1].split(":")
        assert host == k8s("Service", "runspan")["metadata"]["name"] == "runspan"
        assert "runspan" in compose()["services"]
        assert int(port) == 4317
        (store,) = memory["extensions"]["jaeger_storage"]["backends"].values()
        assert "memory" in store
        (store,) = badger["extensions"]["jaeger_storage"]["backends"].values()
        assert store["badger"]["ephemeral"] is False
        # The image runs as an unprivileged user; compose mounts a volume on /tmp for it.
        assert store["badger"]["directories"]["keys"].startswith("/tmp/")
        assert "jaeger-data:/tmp" in compose()["services"]["jaeger"]["volumes"]

    def test_kubernetes_uses_the_same_configuration_as_compose(self) -> None:
        assert (DEPLOY / "k8s" / "jaeger-config.yaml").read_text() == JAEGER_CONFIGS[0].read_text()


class TestCompose:
    def test_ports_are_those_runspan_uses(self) -> None:
        jaeger = compose()["services"]["jaeger"]
        published = {int(port.split(":")[-2]) for port in jaeger["ports"]}
        assert published == {otlp.GRPC_PORT, otlp.HTTP_PORT, UI_PORT}

    def test_both_services_have_healthchecks_and_volumes(self) -> None:
        services = compose()["services"]
        for name in ("jaeger", "postgres"):
            assert services[name]["healthcheck"]["test"]
            assert services[name]["volumes"]
        jaeger_health = " ".join(services["jaeger"]["healthcheck"]["test"])
        health_endpoint = documents(JAEGER_CONFIGS[0])[0]["extensions"]["healthcheckv2"]["http"]
        assert f":{port_of(health_endpoint['endpoint'])}/status" in jaeger_health
        assert services["postgres"]["image"].startswith("postgres:16")

    def test_the_readme_database_url_is_the_compose_database(self) -> None:
        """The README's URL takes the password from deploy/.env, as compose does; no
        password is written in the README or defaulted in the compose file."""
        environment = compose()["services"]["postgres"]["environment"]
        readme = (DEPLOY / "README.md").read_text()
        (url,) = set(re.findall(r"RUNSPAN_DATABASE_URL=(\S+)", readme.split("## On Kubernetes")[0]))
        assert "${POSTGRES_PASSWORD}" in url
        password = dotenv()["POSTGRES_PASSWORD"]
        parsed = database_url_from(url.replace("${POSTGRES_PASSWORD}", password))
        assert parsed.username == environment["POSTGRES_USER"]
        assert parsed.database == environment["POSTGRES_DB"]
        assert parsed.password == password
        assert parsed.port == 5432
        assert environment["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")

    def test_every_port_is_published_on_loopback_only(self) -> None:
        for name, service in compose()["services"].items():
            for port in service.get("ports", []):
                assert port.startswith("127.0.0.1:"), (name, port)

    def test_settings_live_in_the_env_file_compose_reads(self) -> None:
        """JAEGER_CONFIG once in deploy/.env, not on every command; it names a config."""
        settings = dotenv()
        assert (DEPLOY / "jaeger" / settings["JAEGER_CONFIG"]).exists()
        assert "${JAEGER_CONFIG" in " ".join(compose()["services"]["jaeger"]["volumes"])
        assert "JAEGER_CONFIG=config-badger.yaml docker" not in (DEPLOY / "README.md").read_text()

    def test_postgres_is_healthy_only_once_it_listens_on_tcp(self) -> None:
        compose_check = " ".join(compose()["services"]["postgres"]["healthcheck"]["test"])
        statefulset = k8s("StatefulSet", "postgres")
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        k8s_check = " ".join(container["readinessProbe"]["exec"]["command"])
        for check in (compose_check, k8s_check):
            assert "pg_isready -h 127.0.0.1" in check


class TestKubernetes:
    def test_the_jaeger_service_exposes_otlp_and_the_ui(self) -> None:
        service = k8s("Service", "jaeger")
        ports = {port["port"] for port in service["spec"]["ports"]}
        assert ports == {otlp.GRPC_PORT, otlp.HTTP_PORT, UI_PORT}
        deployment = k8s("Deployment", "jaeger")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/status"

    def test_runspan_serve_and_jaeger_share_the_token_secret(self) -> None:
        """runspan serve requires the token on its cluster address; Jaeger sends the same one,
        from the Secret the README makes."""
        runspan = k8s("Deployment", "runspan")
        (container,) = runspan["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["--host", "0.0.0.0"]
        name, keys = readme_secret("runspan-serve")
        for deployment in ("runspan", "jaeger"):
            (found,) = k8s("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
            env = {v["name"]: v for v in found["env"]}
            ref = env["RUNSPAN_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) in {(name, key) for key in keys}
        ports = {port["port"] for port in k8s("Service", "runspan")["spec"]["ports"]}
        assert ports == {otlp.GRPC_PORT, otlp.HTTP_PORT}

    def test_postgres_statefulset_secret_and_service(self) -> None:
        """The Secret is the README's command's, made once: its keys are the ones the
        manifests read, its URL points at the postgres Service with the same password."""
        statefulset = k8s("StatefulSet", "postgres")
        assert statefulset["spec"]["serviceName"] == "postgres"
        assert statefulset["spec"]["volumeClaimTemplates"]
        name, keys = readme_secret()
        url = database_url_from(keys["RUNSPAN_DATABASE_URL"].replace("$PASSWORD", "x"))
        assert url.host == k8s("Service", "postgres")["metadata"]["name"]
        assert keys["POSTGRES_PASSWORD"] == "$PASSWORD"
        assert url.password == "x"
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        refs = [v["valueFrom"]["secretKeyRef"] for v in container["env"] if "valueFrom" in v]
        assert {(ref["name"], ref["key"]) for ref in refs} <= {(name, key) for key in keys}

    def test_the_manifests_hold_no_secret_and_no_namespace_for_delete_k(self) -> None:
        """`kubectl delete -k` deletes what the kustomization lists: never the namespace (and
        the database's volume claim with it), and `apply -k` never a password."""
        (kustomization,) = documents(DEPLOY / "k8s" / "kustomization.yaml")
        for name in kustomization["resources"]:
            kinds = {doc["kind"] for doc in documents(DEPLOY / "k8s" / name)}
            assert not kinds & {"Namespace", "Secret"}, (name, kinds)

    def test_jaeger_memory_holds_its_traces(self) -> None:
        """With its own memory store (config-memory.yaml), max_traces is a count: at about
        100 KB a LangChain trace (ten runs, two 4 KB previews each), the memory the config
        asks for must hold them all, or Jaeger is OOMKilled. Through runspan serve, Jaeger
        holds no traces and 1 GiB is plenty."""
        path = DEPLOY / "jaeger" / "config-memory.yaml"
        (config,) = documents(path)
        (store,) = config["extensions"]["jaeger_storage"]["backends"].values()
        asked = re.search(r"gives? Jaeger (\d+) GiB", path.read_text())
        assert asked, "config-memory.yaml says how much memory Jaeger needs"
        assert store["memory"]["max_traces"] * 100 * 1024 < int(asked[1]) * 2**30 * 0.6
        (container,) = k8s("Deployment", "jaeger")["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["limits"]["memory"] == "1Gi"

    def test_the_app_is_wired_by_variables_runspan_reads(self) -> None:
        app = k8s("Deployment", "langchain-app")
        (container,) = app["spec"]["template"]["spec"]["containers"]
        names = {variable["name"] for variable in container["env"]}
        assert names <= RUNSPAN_READS, names - RUNSPAN_READS
        env = {variable["name"]: variable for variable in container["env"]}
        # The app writes SQL itself and sends no OTLP: a preview-cut copy would race its rows.
        assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
        secret_ref = env["RUNSPAN_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        name, keys = readme_secret()
        assert (secret_ref["name"], secret_ref["key"]) in {(name, key) for key in keys}

    def test_kustomization_lists_every_manifest(self) -> None:
        (kustomization,) = documents(DEPLOY / "k8s" / "kustomization.yaml")
        listed = set(kustomization["resources"])
        on_disk = {
            path.name
            for path in (DEPLOY / "k8s").glob("*.yaml")
            if path.name not in ("kustomization.yaml", "jaeger-config.yaml", "namespace.yaml")
        }
        assert listed == on_disk
        assert "kubectl apply -f deploy/k8s/namespace.yaml" in (DEPLOY / "README.md").read_text()


class TestCollector:
    def test_its_configuration_passes_the_collectors_validation(self) -> None:
        """The batch processor's Validate: send_batch_max_size >= send_batch_size (which
        defaults to 8192 when left out); batches of runspan's previews under 4 MiB."""
        (config,) = documents(DEPLOY / "collector" / "config.yaml")
        batch = config["processors"]["batch"]
        assert batch["send_batch_max_size"] >= batch.get("send_batch_size", 8192)
        assert batch["send_batch_max_size"] * 2 * 4096 < 4 * 1024 * 1024 * 0.75

    def test_it_exports_to_a_service_deploy_defines(self) -> None:
        (config,) = documents(DEPLOY / "collector" / "config.yaml")
        (name,) = config["service"]["pipelines"]["traces"]["exporters"]
        assert name.split("/")[0] == "otlp_grpc"  # `otlp` is its deprecated alias
        host, port = config["exporters"][name]["endpoint"].rsplit(":", 1)
        assert host == k8s("Service", "runspan")["metadata"]["name"]
        assert int(port) == otlp.GRPC_PORT
        headers = config["exporters"][name]["headers"]
        assert headers["authorization"] == "Bearer ${env:RUNSPAN_SERVE_TOKEN}"


class TestReadme:
    def test_every_file_it_names_exists(self) -> None:
        readme = (DEPLOY / "README.md").read_text()
        for name in re.findall(r"`((?:k8s|jaeger|collector)/[\w./-]+|compose\.yaml)`", readme):
            assert (DEPLOY / name).exists(), name
        for name in re.findall(r"deploy/([\w./-]+\.yaml)", readme):
            assert (DEPLOY / name).exists(), name

    def test_its_commands_use_variables_runspan_reads(self) -> None:
        readme = (DEPLOY / "README.md").read_text()
        exported = set(re.findall(r"export (\w+)=", readme))
        assert exported <= RUNSPAN_READS
        assert "RUNSPAN_DATABASE_URL" in exported

    def test_its_runspan_commands_exist(self) -> None:
        from click.testing import CliRunner

        from runspan.cli import main

        readme = (DEPLOY / "README.md").read_text()
        blocks = "\n".join(re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL))
        commands = set(re.findall(r"^\s*runspan (\w+)", blocks, flags=re.MULTILINE))
        commands |= set(re.findall(r"`runspan (\w+)", readme))
        assert commands
        for command in commands:
            result = CliRunner().invoke(main, [command, "--help"])
            assert result.exit_code == 0, command
