"""Observed provenance: which attempt read and wrote which file of a data dir (fanotify and
process events, root only). See :mod:`akoflow.provenance.observe.observer`."""

from akoflow.provenance.observe.lineage import Ambiguous
from akoflow.provenance.observe.observer import (
    Access,
    ObservationUnavailable,
    Observer,
    cgroup_dir_of,
)

__all__ = ["Access", "Ambiguous", "ObservationUnavailable", "Observer", "cgroup_dir_of"]
