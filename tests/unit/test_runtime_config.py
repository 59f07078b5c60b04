from __future__ import annotations

import pytest

from akoflow.config import RuntimeConfig, activity_environ, discover_runtime_names, env_prefix
from akoflow.runtimes import registry
from akoflow.runtimes.registry import adapter_for, check_runtime_name, configured_runtime_names


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("local", "local"),
        ("docker", "docker"),
        ("docker-gpu", "docker"),
        ("singularity", "singularity"),
        ("k8s", "k8s"),
        ("k8s-aws-us-east-1", "k8s"),
        ("k8saws", "k8s"),
        ("hpc", "hpc"),
        ("hpc-sdumont", "hpc"),
    ],
)
def test_names_resolve_as_the_seed_says(name: str, kind: str) -> None:
    adapter = adapter_for(name)
    assert adapter is not None and adapter.kind == kind


@pytest.mark.parametrize("name", ["lambda", "localhost", "dockerd", "K8S", "hpc_x", "", "k8s;rm"])
def test_unknown_names(name: str) -> None:
    assert adapter_for(name) is None
    assert "unknown runtime" in (check_runtime_name(name) or "")


def test_local_is_available_and_missing_adapters_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_runtime_name("local") is None
    assert check_runtime_name("hpc-sdumont") is None  # the HPC adapter exists (issue #4)
    # A build without an adapter refuses its names with a reason.
    monkeypatch.setattr(registry, "_available", lambda adapter: adapter.kind != "hpc")
    msg = check_runtime_name("hpc-sdumont")
    assert msg is not None and "'hpc' adapter" in msg


def test_env_convention_for_named_runtimes() -> None:
    env = {
        "HPC_SDUMONT_HOST_CLUSTER": "sdumont.lncc.br",
        "HPC_SDUMONT_USER": "me",
        "HPC_SDUMONT_PASSWORD": "hunter2",
        "K8S_AWS_API_SERVER_HOST": "https://aws:6443",
        "K8S_AWS_API_SERVER_TOKEN": "eyJ",
        "K8S_GCP_API_SERVER_HOST": "https://gcp:6443",
        "HPCX_OTHER": "ignored",
    }
    assert env_prefix("hpc-sdumont") == "HPC_SDUMONT_"
    cfg = RuntimeConfig.from_env("hpc-sdumont", env)
    assert cfg.get("HOST_CLUSTER") == "sdumont.lncc.br"
    assert cfg.get("host_cluster") == "sdumont.lncc.br"
    assert cfg.get("QUEUE") is None
    red = cfg.redacted()
    assert red["HPC_SDUMONT_PASSWORD"] == "***"
    assert red["HPC_SDUMONT_USER"] == "me"
    assert "hunter2" not in str(red)
    assert RuntimeConfig.from_env("k8s-aws", env).redacted()["K8S_AWS_API_SERVER_TOKEN"] == "***"
    names = discover_runtime_names(["k8s:API_SERVER_HOST", "hpc:HOST_CLUSTER"], env)
    assert names == {"k8s-aws", "k8s-gcp", "hpc-sdumont"}


def test_bad_integer_setting_names_the_variable() -> None:
    cfg = RuntimeConfig.from_env("local", {"LOCAL_MAX_PARALLEL": "many"})
    with pytest.raises(ValueError, match="LOCAL_MAX_PARALLEL must be an integer"):
        cfg.get_int("MAX_PARALLEL", 4)


def test_runtimes_configured_by_the_environment_are_discovered() -> None:
    env = {
        "K8S_AWS_API_SERVER_HOST": "https://aws:6443",
        "K8S_AWS_API_SERVER_TOKEN": "t",
        "HPC_SDUMONT_HOST_CLUSTER": "login",
        "HPC_SDUMONT_USER": "me",
        "DOCKER_GPU_HOST": "unix:///run/gpu.sock",
        "PATH": "/usr/bin",
    }
    assert configured_runtime_names(env) == ["local", "docker-gpu", "hpc-sdumont", "k8s-aws"]
    assert configured_runtime_names({}) == ["local"]
    # An engine on the login node names no host: its TRANSPORT configures the runtime.
    login_node = {"HPC_LOGIN_TRANSPORT": "local", "HPC_LOGIN_QUEUE": "debug"}
    assert configured_runtime_names(login_node) == ["local", "hpc-login"]


def test_activities_never_see_the_engines_secrets() -> None:
    env = {
        "K8S_AWS_API_SERVER_TOKEN": "t",
        "HPC_SDUMONT_PASSWORD": "p",
        "HPC_SDUMONT_SSHKEYPRIVK": "k",
        "AKOFLOW_API_TOKEN": "a",
        "HPC_SDUMONT_USER": "me",
        "AWS_SECRET_ACCESS_KEY": "users-own",
        "PATH": "/usr/bin",
    }
    assert activity_environ(env) == {
        "HPC_SDUMONT_USER": "me",
        "AWS_SECRET_ACCESS_KEY": "users-own",
        "PATH": "/usr/bin",
    }
