"""The one ``{NAME}_{KEY}`` settings reader every runtime uses: each type, and a bad value
refused with one error that names the full variable and what was expected."""

from __future__ import annotations

import pytest

from akoflow.config import RuntimeConfig
from akoflow.errors import AkoflowError, SettingError


def config(**values: str) -> RuntimeConfig:
    """Settings of a runtime named ``hpc-x`` (variables ``HPC_X_<KEY>``)."""
    return RuntimeConfig.from_env("hpc-x", {f"HPC_X_{k}": v for k, v in values.items()})


def refused(read: object, variable: str, expected: str) -> SettingError:
    assert callable(read)
    with pytest.raises(SettingError) as info:
        read()
    error = info.value
    assert error.variable == variable
    assert str(error).startswith(f"{variable} ") and expected in str(error)
    assert isinstance(error, AkoflowError) and isinstance(error, ValueError)
    return error


def test_text_is_stripped_and_blank_is_unset() -> None:
    cfg = config(QUEUE="  gpu \n", GROUP="   ")
    assert cfg.get_text("QUEUE") == "gpu"
    assert cfg.get_text("GROUP") is None and cfg.get_text("GROUP", "all") == "all"
    assert cfg.get_text("NOPE", "d") == "d"
    assert cfg.variable("queue") == "HPC_X_QUEUE"


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("TRUE", True), ("yes", True), (" On ", True)]
    + [("0", False), ("false", False), ("No", False), ("off", False)],
)
def test_bool(raw: str, value: bool) -> None:
    assert config(FLAG=raw).get_bool("FLAG", not value) is value


def test_bool_default_and_bad_value() -> None:
    assert config().get_bool("FLAG", True) is True
    assert config(FLAG="").get_bool("FLAG", False) is False
    error = refused(
        lambda: config(FLAG="maybe").get_bool("FLAG", False), "HPC_X_FLAG", "true or false"
    )
    assert "'maybe'" in str(error)


def test_choice_is_matched_without_case_and_returned_as_spelled() -> None:
    modes = ("ReadWriteOnce", "ReadWriteMany")
    assert config(MODE="readwritemany").get_choice("MODE", modes, "ReadWriteOnce") == (
        "ReadWriteMany"
    )
    assert config().get_choice("MODE", modes, "ReadWriteOnce") == "ReadWriteOnce"
    error = refused(
        lambda: config(MODE="sometimes").get_choice("MODE", modes, "ReadWriteOnce"),
        "HPC_X_MODE",
        "must be one of ReadWriteOnce, ReadWriteMany",
    )
    assert str(error).endswith("got 'sometimes'")


def test_int() -> None:
    assert config(PORT=" 2222 ").get_int("PORT", 22) == 2222
    assert config().get_int("PORT", 22) == 22
    assert config(PORT="-3").get_int("PORT", 22) == -3
    refused(lambda: config(PORT="ssh").get_int("PORT", 22), "HPC_X_PORT", "must be an integer")
    refused(lambda: config(PORT="2.5").get_int("PORT", 22), "HPC_X_PORT", "must be an integer")
    for bad in ("0", "-1", "x"):
        refused(
            lambda bad=bad: config(PORT=bad).get_int("PORT", 22, minimum=1),
            "HPC_X_PORT",
            f"must be a positive integer, got '{bad}'",
        )
    assert config(TTL="0").get_int("TTL", 5, minimum=0) == 0
    refused(
        lambda: config(TTL="4").get_int("TTL", 300, minimum=5), "HPC_X_TTL", "must be at least 5"
    )


def test_float() -> None:
    assert config(RATE="0.5").get_float("RATE", 1.0) == 0.5
    assert config().get_float("RATE", 1.0) == 1.0
    for bad in ("fast", "nan", "inf", "-inf"):
        refused(
            lambda bad=bad: config(RATE=bad).get_float("RATE", 1.0),
            "HPC_X_RATE",
            "must be a number",
        )
    refused(
        lambda: config(RATE="0").get_float("RATE", 1.0, minimum=0.001),
        "HPC_X_RATE",
        "must be at least 0.001, got '0'",
    )


def test_seconds() -> None:
    assert config(WAIT="2.5").get_seconds("WAIT", 10.0) == 2.5
    assert config().get_seconds("WAIT", 10.0) == 10.0
    for bad in ("0", "-1", "soon", "inf", "nan"):
        refused(
            lambda bad=bad: config(WAIT=bad).get_seconds("WAIT", 10.0),
            "HPC_X_WAIT",
            "must be a positive number of seconds",
        )
    assert config(WAIT="0").get_seconds("WAIT", 1.0, minimum=0) == 0.0
    refused(
        lambda: config(WAIT="0.05").get_seconds("WAIT", 1.0, minimum=0.1),
        "HPC_X_WAIT",
        "must be at least 0.1 seconds",
    )


def test_a_secret_value_is_never_echoed() -> None:
    cfg = config(PASSWORD="hunter2", TOKEN_TTL="hunter2")
    for read in (
        lambda: cfg.get_bool("PASSWORD", False),
        lambda: cfg.get_choice("PASSWORD", ("a", "b"), "a"),
        lambda: cfg.get_int("TOKEN_TTL", 1),
    ):
        with pytest.raises(SettingError) as info:
            read()
        assert "hunter2" not in str(info.value) and info.value.variable.startswith("HPC_X_")


def test_every_runtime_refuses_a_bad_value_with_the_same_error() -> None:
    """The runtimes read through it: their settings errors are this one error."""
    from akoflow.runtimes.docker.settings import read_settings as docker_settings
    from akoflow.runtimes.hpc.settings import read_settings as hpc_settings
    from akoflow.runtimes.kubernetes.settings import read_settings as k8s_settings
    from akoflow.runtimes.singularity import _read_settings as singularity_settings

    def docker() -> object:
        return docker_settings(RuntimeConfig.from_env("docker", {"DOCKER_INIT": "perhaps"}))

    def singularity() -> object:
        env = {"SINGULARITY_CLEANENV": "perhaps"}
        return singularity_settings(RuntimeConfig.from_env("singularity", env))

    def hpc() -> object:
        env = {
            "HPC_HOST_CLUSTER": "login",
            "HPC_MOUNT_PATH": "/scratch",
            "HPC_PASSWORD": "p",
            "HPC_ACCEPT_NEW_HOST_KEY": "perhaps",
        }
        return hpc_settings(RuntimeConfig.from_env("hpc", env))

    def k8s() -> object:
        env = {"K8S_API_SERVER_HOST": "https://h:6443", "K8S_INSECURE_SKIP_TLS_VERIFY": "perhaps"}
        return k8s_settings(RuntimeConfig.from_env("k8s", env))

    refused(docker, "DOCKER_INIT", "must be true or false")
    refused(singularity, "SINGULARITY_CLEANENV", "must be true or false")
    refused(hpc, "HPC_ACCEPT_NEW_HOST_KEY", "must be true or false")
    refused(k8s, "K8S_INSECURE_SKIP_TLS_VERIFY", "must be true or false")
