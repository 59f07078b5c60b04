"""The data plane: files follow the work from one runtime's location to another's.

The engine host's data dir is where every run's files meet. A runtime whose files stay
remote (HPC: MOUNT_PATH on the cluster; Kubernetes: the run's volume) is a *location*: before
one of its activities is submitted, the files it needs are copied there unless that location
already holds them (same SHA-256); what an activity writes there is recorded as held there
(fresh: newer than the host's copy) and brought back to the host when a later activity
elsewhere needs it, or at the end for the workflow's last activities (``spec.collect``).
Every copy is verified (size and SHA-256 on both sides) before it is recorded or used; a copy
cut short leaves no record and is made again.
"""

from akoflow.dataplane.mover import DataMover, Digest, TransferFailed
from akoflow.dataplane.plane import DataPlane

__all__ = ["DataMover", "DataPlane", "Digest", "TransferFailed"]
