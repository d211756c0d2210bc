"""The production compose stack and its image, checked by their structure.

No Docker engine runs where these tests run, so ``docker compose up`` cannot prove the stack
(docs/operations.md "Docker Compose"). What can be checked without one is checked here: that
docker-compose.yml has every service issue 10 asks for, runs only pinned images, waits on health
and on one-shot jobs rather than on mere container starts, keeps state in named volumes, runs our
own image for the API, the worker and the migration, names only ``INFRAUDIT_*`` variables that
our settings model reads, and commits no secret; that .env.example lists every setting; and that
the Dockerfile is multi-stage, non-root and has a health check.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from infraudit.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"

#: The services that run our image, built from our Dockerfile.
OUR_SERVICES = ("migrate", "api", "worker")
#: One-shot jobs: they exit when done, and others wait for their success.
ONE_SHOT = frozenset({"temporal-schema", "migrate"})
#: ``depends_on`` conditions that wait for something real (not ``service_started``).
WAITING_CONDITIONS = frozenset({"service_healthy", "service_completed_successfully"})
#: Environment names whose values are secrets: they must come from ``${VAR}`` interpolation.
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|KEY|TOKEN", re.IGNORECASE)
#: A whole value that is one interpolation, ``${VAR}``, ``${VAR:?message}`` or ``${VAR:-x}``.
INTERPOLATION = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(?:(?::?[?-])[^}]*)?\}$")
#: One interpolation anywhere in a value.
ANY_INTERPOLATION = re.compile(r"\$\{[^}]*\}")
#: Credentials inside a URL whose interpolations were replaced by ``VAR``: ``://user:pw@``.
URL_PASSWORD = re.compile(r"://[^:/@\s]+:(?P<password>[^@\s]*)@")
#: Any mention of one of our settings' variables.
INFRAUDIT_NAME = re.compile(r"\bINFRAUDIT_[A-Z0-9_]+\b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as parsed by PyYAML (merge keys ``<<`` resolved, as compose does)."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def settings_variables() -> set[str]:
    """The environment variable of every field of our settings model (prefix + upper name)."""
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in Settings.model_fields}


def image_of(service: dict[str, Any]) -> tuple[str, str]:
    """(repository, tag) of a service's image; the tag is '' when there is none."""
    image = service["image"]
    repository, _, tag = image.rpartition(":")
    if "/" in tag or not repository:  # "host:5000/name" without a tag
        return image, ""
    return repository, tag


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's ``environment`` as a mapping, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def test_every_service_of_the_stack_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-ui",
        "migrate",
        "api",
        "worker",
    }
    assert image_of(services["postgres"])[0] == "postgres"
    # Temporal from its official images: the schema by the admin tools, the server on
    # PostgreSQL (not the dev server), the Web UI.
    assert image_of(services["temporal-schema"])[0] == "temporalio/admin-tools"
    assert "temporal-sql-tool" in str(services["temporal-schema"]["command"])
    assert image_of(services["temporal"])[0] in {"temporalio/server", "temporalio/auto-setup"}
    temporal_env = environment_of(services["temporal"])
    assert temporal_env["DB"] == "postgres12"
    assert temporal_env["POSTGRES_SEEDS"] == "postgres"
    assert "start-dev" not in str(services["temporal"].get("command", ""))
    assert image_of(services["temporal-ui"])[0] == "temporalio/ui"
    assert environment_of(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"
    # Our processes, each started by its own command of the image's `infraudit` entry point.
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["deploy"]["replicas"] > 1


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        repository, tag = image_of(service)
        assert tag, f"{name}: image {service['image']!r} has no tag"
        assert tag != "latest", f"{name}: image {service['image']!r} floats"
        if repository != "infraudit-webhooks":
            # An exact release (1.29.1, 16.6-bookworm), not a moving major such as `16`.
            assert re.match(r"^v?\d+\.\d+", tag), f"{name}: {tag!r} is not an exact release"


def test_our_services_run_our_image_built_from_the_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name in OUR_SERVICES:
        service = services[name]
        assert service["image"] == f"infraudit-webhooks:{version}", name
        build = service["build"]
        assert (ROOT / build["context"]).resolve() == ROOT, name
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        # The package is in the image: no source mounted over it, nothing installed at start.
        assert not service.get("volumes"), name
        assert "pip" not in str(service["command"]), name


def test_long_running_services_have_health_checks(services: dict[str, dict[str, Any]]) -> None:
    image_has_check = any(i.startswith("HEALTHCHECK ") for i in dockerfile_instructions())
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is a job: it must not be restarted"
            continue
        check = service.get("healthcheck")
        assert not (check or {}).get("disable"), f"{name}: health check disabled"
        if check is None:
            # Only our image brings its own check (the Dockerfile's HEALTHCHECK).
            assert name in OUR_SERVICES and image_has_check, f"{name} has no health check"
        else:
            assert check["test"], name
        assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, name


def test_workers_are_probed_on_their_own_http_and_metrics_stay_in_the_network(
    services: dict[str, dict[str, Any]],
) -> None:
    """The worker's health check asks its /healthz on the port its environment gives it, and
    neither the worker's port nor the API's metrics port is published to the host."""
    worker = environment_of(services["worker"])
    api = environment_of(services["api"])
    assert worker["INFRAUDIT_WORKER_HTTP_HOST"] == api["INFRAUDIT_API_METRICS_HOST"] == "0.0.0.0"
    probe = " ".join(services["worker"]["healthcheck"]["test"])
    assert "/healthz" in probe and "INFRAUDIT_WORKER_HTTP_PORT" in probe, probe
    internal = {worker["INFRAUDIT_WORKER_HTTP_PORT"], api["INFRAUDIT_API_METRICS_PORT"]}
    for name in ("api", "worker"):
        published = {str(p).rsplit(":", 1)[-1] for p in services[name].get("ports") or []}
        assert not published & internal, f"{name} publishes {published & internal}"
        assert internal & {str(p) for p in services[name]["expose"]}, name


def test_dependencies_wait_for_health_or_success(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            assert condition in WAITING_CONDITIONS, f"{name} -> {dependency}: {condition}"
            expected = (
                "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
            )
            assert condition == expected, f"{name} -> {dependency}: {condition}"
    # The order that matters: Temporal after its schema, our processes after our migration
    # and a healthy Temporal, the migration after a healthy PostgreSQL.
    assert "temporal-schema" in services["temporal"]["depends_on"]
    assert "postgres" in services["migrate"]["depends_on"]
    for name in ("api", "worker"):
        assert set(services[name]["depends_on"]) >= {"migrate", "temporal"}, name


def test_state_lives_in_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes") or []:
            source = mount["source"] if isinstance(mount, dict) else mount.split(":", 1)[0]
            assert not source.startswith((".", "/", "~")), f"{name}: bind mount {mount!r}"
            assert source in declared, f"{name}: volume {source!r} is not declared"
            used.add(source)
    assert used == declared
    postgres_mounts = compose["services"]["postgres"]["volumes"]
    assert any(str(m).endswith(":/var/lib/postgresql/data") for m in postgres_mounts)


def test_infraudit_variables_are_settings(compose: dict[str, Any]) -> None:
    """A misspelt variable would be silently ignored by the settings model (extra="ignore")."""
    known = settings_variables()
    named = set(INFRAUDIT_NAME.findall(COMPOSE_FILE.read_text()))
    for service in compose["services"].values():
        named |= {n for n in environment_of(service) if n.startswith("INFRAUDIT_")}
    assert named, "compose wires no INFRAUDIT_* setting"
    assert named <= known, f"not settings: {sorted(named - known)}"
    # The stack's own wiring: PostgreSQL and the Temporal server, not the embedded defaults.
    env = environment_of(compose["services"]["worker"])
    assert env["INFRAUDIT_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["INFRAUDIT_DATABASE_URL"]
    assert env["INFRAUDIT_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert "INFRAUDIT_DEV" not in named


def test_no_secret_is_committed(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for variable, value in environment_of(service).items():
            if SECRET_NAME.search(variable):
                assert INTERPOLATION.match(value), f"{name}: {variable} is a literal"
            credentials = URL_PASSWORD.search(ANY_INTERPOLATION.sub("VAR", value))
            if credentials:
                assert credentials["password"] == "VAR", f"{name}: {variable} has a password"
    # The keys and the password are required, never defaulted to something guessable.
    env = environment_of(compose["services"]["api"])
    for variable in ("INFRAUDIT_SECRET_KEYS", "INFRAUDIT_SIGNIN_KEY"):
        assert env[variable].startswith(f"${{{variable}:?"), variable
    assert "${POSTGRES_PASSWORD:?" in env["INFRAUDIT_DATABASE_URL"]


def env_example_lines() -> dict[str, tuple[bool, str]]:
    """``INFRAUDIT_*`` names in .env.example -> (commented out, value given)."""
    found: dict[str, tuple[bool, str]] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^(#\s*)?(INFRAUDIT_[A-Z0-9_]+)(?:=(.*)|\s)", line)
        if match:
            found[match[2]] = (bool(match[1]), (match[3] or "").strip())
    return found


def test_env_example_lists_every_setting_without_secrets() -> None:
    lines = env_example_lines()
    assert set(lines) == settings_variables()
    prefix = Settings.model_config.get("env_prefix", "")
    for variable, (commented, value) in lines.items():
        if not commented:
            # Only the required secrets are live lines, and they are empty placeholders.
            assert SECRET_NAME.search(variable) and value == "", f"{variable}={value!r}"
            continue
        if value:
            # A default shown is the model's default, so the example cannot drift from it.
            field = Settings.model_fields[variable.removeprefix(prefix).lower()]
            shown = pydantic.TypeAdapter(field.annotation).validate_python(value)
            assert shown == field.get_default(call_default_factory=True), variable
    assert re.search(r"^POSTGRES_PASSWORD=$", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def dockerfile_instructions() -> list[str]:
    """The Dockerfile's instructions, comments dropped and continuation lines joined."""
    text = re.sub(r"^\s*#.*\n", "", DOCKERFILE.read_text(), flags=re.MULTILINE)
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def test_dockerfile_is_multi_stage_non_root_and_checked() -> None:
    instructions = dockerfile_instructions()
    stages = [i for i in instructions if i.upper().startswith("FROM ")]
    assert len(stages) >= 2, stages
    # Every stage from the one pinned base (an exact Python 3.11 release, slim).
    base = next(i for i in instructions if i.startswith("ARG PYTHON_IMAGE="))
    assert re.match(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", base), base
    assert all(s.split()[1] == "${PYTHON_IMAGE}" for s in stages), stages
    # The final stage gets the built venv, runs as a named non-root user, checks its health.
    final = instructions[instructions.index(stages[-1]) :]
    assert any(i.startswith("COPY --from=build /opt/venv") for i in final)
    users = [i.split()[1] for i in final if i.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    assert any(i.startswith("HEALTHCHECK ") and "/healthz" in i for i in final)
    assert any(i.startswith("ENTRYPOINT") and "infraudit" in i for i in final)
    # Installed at build time, in the build stage only.
    build = instructions[: instructions.index(stages[-1])]
    assert any(i.startswith("RUN pip install .") for i in build)
    assert not any("pip install" in i for i in final)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignored and "!src/" in ignored
