"""Where state lives, and runtime configuration from ``{RUNTIME_NAME}_{KEY}`` env vars.

A runtime named ``hpc-sdumont`` reads ``HPC_SDUMONT_HOST_CLUSTER`` for key ``HOST_CLUSTER``: the
name is upper-cased and ``-`` becomes ``_`` (upstream could not express named runtimes at all).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_RUNTIME = "local"

# Key names whose values are never shown: API responses, logs, UI, `akoflow runtimes`.
_SECRET_KEY = re.compile(r"TOKEN|PASSW|SECRET|PRIVK|PRIVATE|KEY|CREDENTIAL|CERT_DATA|AUTH", re.I)
REDACTED = "***"


def state_dir(explicit: str | Path | None = None) -> Path:
    """``--state-dir``, else ``$AKOFLOW_HOME``, else ``~/.akoflow``."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("AKOFLOW_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return Path.home() / ".akoflow"


def default_runtime() -> str:
    return os.environ.get("AKOFLOW_DEFAULT_RUNTIME", DEFAULT_RUNTIME)


def env_prefix(runtime_name: str) -> str:
    """``hpc-sdumont`` -> ``HPC_SDUMONT_``."""
    return runtime_name.upper().replace("-", "_") + "_"


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


# Variables AkôFlow itself reads: runtime settings ({NAME}_{KEY}) and its own.
_ENGINE_VAR = re.compile(r"^(AKOFLOW|LOCAL|DOCKER|SINGULARITY|K8S|HPC)[A-Z0-9_]*$")


def is_engine_secret(name: str) -> bool:
    """A variable holding a secret of AkôFlow's own (a runtime's token, key or password, the
    API token), as opposed to the user's own variables."""
    return bool(_ENGINE_VAR.match(name)) and is_secret_key(name)


def activity_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The engine's environment minus the secrets it holds for its runtimes and API (cluster
    tokens, SSH keys, passwords), which activities and helper programs (rsync, launchers)
    must never see: a script printing its environment would put them in stored logs. The
    user's own variables pass through."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if not is_engine_secret(k)}


@dataclass(frozen=True)
class RuntimeConfig:
    """The env-var settings of one runtime, like upstream's GetCurrentRuntimeMetadata."""

    name: str
    values: Mapping[str, str] = field(default_factory=dict)  # full env var name -> value

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> RuntimeConfig:
        env = os.environ if environ is None else environ
        prefix = env_prefix(name)
        return cls(name, {k: v for k, v in env.items() if k.startswith(prefix)})

    def get(self, key: str, default: str | None = None) -> str | None:
        """Value of ``{NAME}_{KEY}``, e.g. ``get("HOST_CLUSTER")``."""
        return self.values.get(env_prefix(self.name) + key.upper(), default)

    def get_int(self, key: str, default: int) -> int:
        raw = self.get(key)
        if raw is None or raw.strip() == "":
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise ValueError(
                f"{env_prefix(self.name)}{key} must be an integer, got {raw!r}"
            ) from exc

    def redacted(self) -> dict[str, str]:
        """The settings safe to show anywhere: secret values replaced by ``***``."""
        return {k: (REDACTED if is_secret_key(k) else v) for k, v in sorted(self.values.items())}


def discover_runtime_names(
    prefixes: Iterable[str], environ: Mapping[str, str] | None = None
) -> set[str]:
    """Runtime names configured in the environment, for kinds addressed by prefix (k8s, hpc).

    ``K8S_AWS_API_SERVER_HOST`` with known key ``API_SERVER_HOST`` yields ``k8s-aws``. Each
    ``prefixes`` entry is ``"<kind-prefix>:<KEY>"``; the key disambiguates where the name ends.
    """
    env = os.environ if environ is None else environ
    found: set[str] = set()
    rules = [p.split(":", 1) for p in prefixes]
    for var in env:
        for kind_prefix, key in rules:
            suffix = "_" + key
            if var.startswith(kind_prefix.upper()) and var.endswith(suffix):
                base = var[: -len(suffix)]
                if base:
                    found.add(base.lower().replace("_", "-"))
    return found
