"""Pure parts of the singularity runtime: which images are pulled, the exec argv, settings."""

from __future__ import annotations

import os

import pytest

from akoflow.config import RuntimeConfig
from akoflow.runtimes.apptainer import exec_command
from akoflow.runtimes.sif_cache import ImageRef, cache_name, classify
from akoflow.runtimes.singularity import _read_settings, limits_allowed


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("/opt/images/tool.sif", ImageRef("/opt/images/tool.sif", True)),
        ("images/tool.sif", ImageRef("/work/images/tool.sif", True)),
        ("./sandbox", ImageRef("/work/sandbox", True)),
        ("docker://alpine:3.20", ImageRef("docker://alpine:3.20", False)),
        ("oras://ghcr.io/x/y:1", ImageRef("oras://ghcr.io/x/y:1", False)),
        ("library://alpine", ImageRef("library://alpine", False)),
        ("docker-archive:/tmp/x.tar", ImageRef("docker-archive:/tmp/x.tar", False)),
        ("alpine:3.20", ImageRef("docker://alpine:3.20", False)),  # as `apptainer pull` reads it
        ("ghcr.io/org/img", ImageRef("docker://ghcr.io/org/img", False)),
    ],
)
def test_classify(image: str, expected: ImageRef) -> None:
    assert classify(image, cwd="/work") == expected


def test_cache_names_are_stable_and_distinct() -> None:
    assert cache_name("docker://a") == cache_name("docker://a")
    assert cache_name("docker://a") != cache_name("docker://b")
    assert all(c in "0123456789abcdef" for c in cache_name("x/../y"))


def test_exec_argv_has_no_shell_and_env_goes_through_the_prefix() -> None:
    cmd = exec_command(
        "/usr/bin/apptainer",
        "/img.sif",
        "/.akoflow/script.sh",
        binds=[("/d", "/data")],
        read_only_binds=[("/a/x.sh", "/.akoflow/script.sh")],
        pwd="/data",
        env={"Q": "a'b\"$(c)`d`,e:f"},
        cpus=0.5,
        memory_bytes=64 << 20,
        options=["--nv"],
    )
    assert cmd.argv == [
        "/usr/bin/apptainer",
        "exec",
        "--nv",
        "--cleanenv",
        "--bind",
        "/d:/data",
        "--bind",
        "/a/x.sh:/.akoflow/script.sh:ro",
        "--pwd",
        "/data",
        "--cpus",
        "0.5",
        "--memory",
        "64M",
        "/img.sif",
        "/bin/sh",
        "/.akoflow/script.sh",
    ]
    assert cmd.env == {"APPTAINERENV_Q": "a'b\"$(c)`d`,e:f"}
    assert exec_command("singularity", "i", "s").env == {}
    assert exec_command("/x/singularity", "i", "s", env={"A": "1"}).env == {"SINGULARITYENV_A": "1"}
    with pytest.raises(ValueError, match="contains ':' or ','"):
        exec_command("apptainer", "i", "s", read_only_binds=[("/a,b", "/x")])


def test_settings() -> None:
    values = {
        "SINGULARITY_BINARY": "singularity",
        "SINGULARITY_PULL_POLICY": "Always",
        "SINGULARITY_OPTIONS": "--nv --contain",
        "SINGULARITY_CLEANENV": "false",
        "SINGULARITY_LIMITS": "ignore",
    }
    s = _read_settings(RuntimeConfig("singularity", values))
    assert (s.binary, s.pull_policy, s.options, s.cleanenv) == (
        "singularity",
        "always",
        ("--nv", "--contain"),
        False,
    )
    assert not limits_allowed(s.limits) and limits_allowed("apply")
    assert limits_allowed("auto") == (
        os.geteuid() == 0 or os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    )
    with pytest.raises(ValueError, match="SINGULARITY_GPU_PULL_TIMEOUT must be a positive"):
        _read_settings(RuntimeConfig("singularity-gpu", {"SINGULARITY_GPU_PULL_TIMEOUT": "soon"}))
