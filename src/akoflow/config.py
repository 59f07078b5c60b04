"""Where state lives, and runtime configuration from ``{RUNTIME_NAME}_{KEY}`` env vars.

A runtime named ``hpc-sdumont`` reads ``HPC_SDUMONT_HOST_CLUSTER`` for key ``HOST_CLUSTER``: the
name is upper-cased and ``-`` becomes ``_`` (upstream could not express named runtimes at all).
Every runtime reads its settings through :class:`RuntimeConfig`'s typed readers, so a bad
value is refused the same way everywhere: one :class:`SettingError` naming the variable and
what was expected.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from akoflow.errors import SettingError

DEFAULT_RUNTIME = "local"

# Key names whose values are never shown: API responses, logs, UI, `akoflow runtimes`.
_SECRET_KEY = re.compile(r"TOKEN|PASSW|SECRET|PRIVK|PRIVATE|KEY|CREDENTIAL|CERT_DATA|AUTH", re.I)
REDACTED = "***"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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


# Keys holding a path (KEY_FILE, CA_FILE): where a secret is, not the secret; shown.
_PATH_KEY = re.compile(r"_FILE$", re.I)


def is_secret_key(key: str) -> bool:
    """A key whose value is never shown (a path to a secret is shown: it is no secret)."""
    return bool(_SECRET_KEY.search(key)) and not _PATH_KEY.search(key)


# Variables AkôFlow itself reads: runtime settings ({NAME}_{KEY}) and its own.
_ENGINE_VAR = re.compile(r"^(AKOFLOW|LOCAL|DOCKER|SINGULARITY|K8S|HPC)[A-Z0-9_]*$")


def is_engine_secret(name: str) -> bool:
    """A variable holding a secret of AkôFlow's own (a runtime's token, key or password, the
    API token), as opposed to the user's own variables."""
    # Paths to secrets too: activities have no use for the engine's key file.
    return bool(_ENGINE_VAR.match(name)) and bool(_SECRET_KEY.search(name))


def activity_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The engine's environment minus the secrets it holds for its runtimes and API (cluster
    tokens, SSH keys, passwords), which activities and helper programs (rsync, launchers)
    must never see: a script printing its environment would put them in stored logs. The
    user's own variables pass through."""
    env = os.environ if environ is None else environ
    return {k: v for k, v in env.items() if not is_engine_secret(k)}


_INTEGER = re.compile(r"[+-]?[0-9]+")
MAX_SECONDS = 86_400.0


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
        return self.values.get(self.variable(key), default)

    def variable(self, key: str) -> str:
        """The full variable name of ``key``: ``HPC_SDUMONT_`` + ``QUEUE``."""
        return env_prefix(self.name) + key.upper()

    def invalid(self, key: str, problem: str) -> SettingError:
        """The error for a bad ``key``: ``{NAME}_{KEY} <problem>``."""
        variable = self.variable(key)
        return SettingError(f"{variable} {problem}", variable=variable)

    def get_text(self, key: str, default: str | None = None) -> str | None:
        """The value without surrounding blanks; unset or blank gives ``default``."""
        value = (self.get(key) or "").strip()
        return value or default

    def _bad(self, key: str, expected: str, raw: str) -> SettingError:
        got = "" if is_secret_key(key) else f", got {raw!r}"  # a secret is never echoed
        return self.invalid(key, f"must be {expected}{got}")

    def get_choice(self, key: str, allowed: Sequence[str], default: str) -> str:
        """One of ``allowed``, matched without regard to case; returned as spelled there."""
        raw = self.get_text(key)
        if raw is None:
            return default
        for option in allowed:
            if raw.lower() == option.lower():
                return option
        got = "" if is_secret_key(key) else f"; got {raw!r}"
        raise self.invalid(key, f"must be one of {', '.join(allowed)}{got}")

    def get_bool(self, key: str, default: bool) -> bool:
        """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
        raw = self.get_text(key)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise self._bad(key, "true or false (1/0, yes/no, on/off)", raw)

    def get_int(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int:
        """A decimal integer in ASCII digits, within ``minimum`` and ``maximum``."""
        raw = self.get_text(key)
        if raw is None:
            return default
        expected = "a positive integer" if minimum == 1 else "an integer"
        if not _INTEGER.fullmatch(raw):  # int() would take '١', '1_000' or ' 1 '
            raise self._bad(key, expected, raw)
        value = int(raw)
        if minimum is not None and value < minimum:
            raise self._bad(key, expected if minimum == 1 else f"at least {minimum}", raw)
        if maximum is not None and value > maximum:
            raise self._bad(key, f"{expected} of at most {maximum}", raw)
        return value

    def get_float(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float:
        """A finite number (``nan`` and ``inf`` are refused) within ``minimum``, ``maximum``."""
        raw = self.get_text(key)
        if raw is None:
            return default
        value = _finite(raw)
        if value is None:
            raise self._bad(key, "a number", raw)
        if minimum is not None and value < minimum:
            raise self._bad(key, f"at least {minimum:g}", raw)
        if maximum is not None and value > maximum:
            raise self._bad(key, f"at most {maximum:g}", raw)
        return value

    def get_seconds(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float = MAX_SECONDS,
    ) -> float:
        """A finite duration in seconds: above 0 (or at least ``minimum`` when given) and at
        most ``maximum`` (a day by default: larger values overflow timers and mean 'never')."""
        raw = self.get_text(key)
        if raw is None:
            return default
        value = _finite(raw)
        if minimum is None:
            if value is None or value <= 0:
                raise self._bad(key, "a positive number of seconds", raw)
        elif value is None or value < minimum:
            raise self._bad(key, f"at least {minimum:g} seconds", raw)
        if value > maximum:
            raise self._bad(key, f"at most {maximum:g} seconds", raw)
        return value

    def redacted(self) -> dict[str, str]:
        """The settings safe to show anywhere: secret values replaced by ``***``."""
        return {k: (REDACTED if is_secret_key(k) else v) for k, v in sorted(self.values.items())}


def _finite(raw: str) -> float | None:
    if not raw.isascii():  # float() would take other scripts' digits
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


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
