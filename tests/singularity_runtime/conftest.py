"""Real SIF images (siftool + squashfs-tools) and the test launcher (squashfuse + bubblewrap)
standing in for the ``apptainer`` binary. If either cannot be set up, the tests FAIL: a machine
without these parts must not pass them by skipping."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.singularity_support import sif

LAUNCHER = Path(__file__).resolve().parent.parent / "singularity_support" / "apptainer"
NEEDED = ("bwrap", "squashfuse", "unshare", "mksquashfs", "siftool")


@dataclass(frozen=True)
class Images:
    sif: Path  # a real SIF file: busybox rootfs in its SquashFS system partition
    archive: Path  # a docker-save archive of the same rootfs, for `pull docker-archive:`

    @property
    def ref(self) -> str:
        return f"docker-archive:{self.archive}"


def launcher_runs(image: Path, binary: Path = LAUNCHER) -> str:
    """``BINARY exec IMAGE sh -c 'echo ok'``: the launcher really runs things."""
    proc = subprocess.run(
        [str(binary), "exec", "--cleanenv", str(image), "/bin/sh", "-c", "echo ok"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0 or proc.stdout != "ok\n":
        raise sif.SifError(f"the launcher did not run: exit {proc.returncode}: {proc.stderr}")
    return proc.stdout


def build_images(root: Path) -> Images:
    """Build the SIF and the archive under ``root`` and run the SIF once with the launcher
    (the session's ``images`` fixture, tests/daemons.py)."""
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: run scripts/test-deps (Debian's siftool "
            "squashfs-tools squashfuse fuse3 bubblewrap)",
            pytrace=False,
        )
    try:
        rootfs = sif.busybox_rootfs(root / "rootfs")
        found = Images(sif.build_sif(rootfs, root / "busybox.sif"), root / "busybox.tar")
        sif.write_docker_archive(rootfs, found.archive)
        launcher_runs(found.sif)
    except (sif.SifError, OSError, subprocess.SubprocessError) as exc:
        pytest.fail(f"cannot build a SIF and run it with the test launcher: {exc}", pytrace=False)
    return found


@pytest.fixture
def sing_env(images: Images, tmp_path: Path) -> dict[str, str]:
    """Environment of a CLI run whose `singularity` runtime is the test launcher."""
    return cli_env(
        SINGULARITY_BINARY=str(LAUNCHER),
        SINGULARITY_CACHE_DIR=str(tmp_path / "sif-cache"),
        APPTAINER_SHIM_PULL_LOG=str(tmp_path / "pulls.log"),
    )
