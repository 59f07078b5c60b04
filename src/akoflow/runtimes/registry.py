"""Runtime names -> adapter classes, imported lazily.

As in the seed: ``local``, ``docker`` and ``singularity`` by name (optionally with a ``-suffix``
to configure several, e.g. ``docker-gpu``); any name starting with ``k8s`` or ``hpc`` by prefix.
An adapter module is imported only when a workflow uses it, so a missing optional dependency of
one runtime never breaks the others.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass

from akoflow.config import RuntimeConfig, discover_runtime_names
from akoflow.errors import AkoflowError
from akoflow.runtimes.base import Runtime, RuntimeEvents

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


@dataclass(frozen=True)
class AdapterKind:
    """A kind of runtime: where its adapter is and how its names are matched."""

    kind: str
    module: str
    cls: str
    by_prefix: bool  # k8s-aws, hpc-sdumont: any continuation; others: exact or "-suffix"
    discovery_keys: tuple[str, ...] = ()  # {NAME}_{KEY} variables that configure one


ADAPTERS: tuple[AdapterKind, ...] = (
    AdapterKind("local", "akoflow.runtimes.local", "LocalRuntime", by_prefix=False),
    AdapterKind("docker", "akoflow.runtimes.docker", "DockerRuntime", False, ("HOST",)),
    AdapterKind("singularity", "akoflow.runtimes.singularity", "SingularityRuntime", False),
    AdapterKind(
        "k8s", "akoflow.runtimes.kubernetes", "KubernetesRuntime", True, ("API_SERVER_HOST",)
    ),
    # TRANSPORT: an engine on the login node (TRANSPORT=local) names no host.
    AdapterKind("hpc", "akoflow.runtimes.hpc", "HpcRuntime", True, ("HOST_CLUSTER", "TRANSPORT")),
)


class UnknownRuntime(AkoflowError, ValueError):
    pass


def adapter_for(name: str) -> AdapterKind | None:
    """The adapter kind a runtime name resolves to, or None."""
    if not _NAME.match(name):
        return None
    for adapter in ADAPTERS:
        if adapter.by_prefix:
            if name.startswith(adapter.kind):
                return adapter
        elif name == adapter.kind or name.startswith(adapter.kind + "-"):
            return adapter
    return None


def configured_runtime_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """``local`` plus every runtime the environment configures (``K8S_AWS_API_SERVER_HOST``
    configures ``k8s-aws``), as upstream registers them at start-up."""
    rules = [f"{a.kind}:{key}" for a in ADAPTERS for key in a.discovery_keys]
    found = discover_runtime_names(rules, environ)
    return ["local", *sorted(n for n in found if n != "local" and adapter_for(n) is not None)]


def _available(adapter: AdapterKind) -> bool:
    return importlib.util.find_spec(adapter.module) is not None


def check_runtime_name(name: str) -> str | None:
    """None if ``name`` can run here, else a message for the validator."""
    adapter = adapter_for(name)
    if adapter is None:
        return (
            f"unknown runtime {name!r}: use local, docker, singularity (optionally with a "
            "'-suffix', e.g. docker-gpu), or a name starting with k8s or hpc (e.g. k8s-aws, "
            "hpc-sdumont)"
        )
    if not _available(adapter):
        return (
            f"runtime {name!r} needs the {adapter.kind!r} adapter, which this AkôFlow build "
            "does not include yet"
        )
    return None


def create_runtime(
    name: str, events: RuntimeEvents, config: RuntimeConfig | None = None
) -> Runtime:
    problem = check_runtime_name(name)
    adapter = adapter_for(name)
    if problem is not None or adapter is None:
        raise UnknownRuntime(problem)
    try:
        module = importlib.import_module(adapter.module)
    except ImportError as exc:
        raise UnknownRuntime(
            f"runtime {name!r}: the {adapter.kind} adapter cannot be loaded: {exc}"
        ) from exc
    cls: type[Runtime] = getattr(module, adapter.cls)
    return cls(name, config or RuntimeConfig.from_env(name), events)
