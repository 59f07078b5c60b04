"""Docker runtime: one container per attempt on a Docker daemon, through the official SDK.

Modules, one job each: :mod:`.settings` (``{NAME}_*`` variables), :mod:`.container` (what
is created: name, labels, mounts, limits; pure), :mod:`.status` (readings of ``inspect``,
``ps``, events and stats, and how an attempt ended; pure), :mod:`.files` (the attempt's
script, output and exit record), :mod:`.daemon` (the client and its thread pool),
:mod:`.images` (pull policy), :mod:`.monitor` (ends pushed by the event stream) and
:mod:`.runtime` (the adapter).
"""

from akoflow.runtimes.docker.container import container_name
from akoflow.runtimes.docker.runtime import DockerRuntime
from akoflow.runtimes.scope import scope_of  # the shared one, imported from here by callers

__all__ = ["DockerRuntime", "container_name", "scope_of"]
