"""Real SIF files for the tests, without Apptainer: Debian's ``siftool`` and ``squashfs-tools``.

A SIF here is what Apptainer builds: a SIF container whose system partition (data type FS,
partition type System, file system SquashFS) holds the root file system. The test launcher
(``apptainer`` in this directory) mounts that partition with ``squashfuse -o offset=N``.

Standard library only: the launcher imports this module too.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = "/usr/bin/busybox"  # Debian busybox-static
TOOLS = ("mksquashfs", "siftool")


class SifError(RuntimeError):
    pass


def check_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise SifError(f"{', '.join(missing)} not found: install Debian's siftool squashfs-tools")


def busybox_rootfs(root: Path) -> Path:
    """A minimal rootfs: static busybox with one symlink per applet, passwd and group."""
    if not os.path.exists(BUSYBOX):
        raise SifError(f"{BUSYBOX} not found: install Debian's busybox-static")
    for d in ("bin", "etc", "root", "tmp", "proc", "sys", "dev"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [BUSYBOX, "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    return root


def build_sif(rootfs: Path, out: Path) -> Path:
    """``mksquashfs`` of ``rootfs``, then ``siftool new`` + ``siftool add`` as a system
    partition: the layout ``apptainer build`` produces."""
    check_tools()
    squash = out.with_name(out.name + ".squashfs")
    try:
        _run(["mksquashfs", str(rootfs), str(squash), "-noappend", "-quiet", "-all-root"])
        out.unlink(missing_ok=True)
        _run(["siftool", "new", str(out)])
        _run(
            # datatype 4 = FS, parttype 2 = System, partfs 1 = SquashFS, partarch 2 = amd64
            [
                "siftool",
                "add",
                str(out),
                str(squash),
                "--datatype",
                "4",
                "--parttype",
                "2",
                "--partfs",
                "1",
                "--partarch",
                "2",
            ]
        )
    finally:
        squash.unlink(missing_ok=True)
    return out


def system_partition_offset(sif: Path) -> int:
    """Byte offset of the SquashFS system partition, from ``siftool list``."""
    out = _run(["siftool", "list", str(sif)])
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 5 and "Squashfs" in cells[4] and "System" in cells[4]:
            start = cells[3].split("-", 1)[0]
            if start.isdigit():
                return int(start)
    raise SifError(f"{sif}: no SquashFS system partition in the SIF")


def write_docker_archive(rootfs: Path, out: Path, tag: str = "akoflow-test/busybox:1") -> Path:
    """A one-layer ``docker save`` archive of ``rootfs`` (what ``docker-archive:`` names)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(rootfs, arcname=".")
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
    manifest = json.dumps([{"Config": "config.json", "RepoTags": [tag], "Layers": ["l/l.tar"]}])
    with tarfile.open(out, mode="w") as tar:
        for name, data in (
            ("manifest.json", manifest.encode()),
            ("config.json", config),
            ("l/l.tar", layer.getvalue()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


def extract_docker_archive(archive: Path, rootfs: Path) -> None:
    """Unpack the layers of a ``docker save`` archive in order (whiteouts applied)."""
    with tarfile.open(archive) as outer:
        manifest = json.load(_member(outer, "manifest.json"))
        for name in manifest[0]["Layers"]:
            with tarfile.open(fileobj=_member(outer, name)) as layer:
                for member in layer.getmembers():
                    base = os.path.basename(member.name)
                    if base.startswith(".wh."):
                        gone = rootfs / os.path.dirname(member.name) / base[4:]
                        if gone.is_dir() and not gone.is_symlink():
                            shutil.rmtree(gone)
                        else:
                            gone.unlink(missing_ok=True)
                        continue
                    if hasattr(tarfile, "tar_filter"):  # Python >= 3.11.4
                        layer.extract(member, rootfs, filter="tar")
                    else:  # the launcher runs on the system Python, maybe older
                        layer.extract(member, rootfs)


def _member(tar: tarfile.TarFile, name: str) -> io.BufferedReader:
    f = tar.extractfile(name)
    if f is None:
        raise SifError(f"{name} missing from the archive")
    return f  # type: ignore[return-value]


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SifError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout
