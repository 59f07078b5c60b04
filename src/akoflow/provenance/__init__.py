"""Provenance: which files each activity used and generated, and its export as W3C PROV and
as a Workflow Run RO-Crate.

Where the engine runs as root, every read and write of the attempts on its host (local,
singularity, docker) is observed with fanotify (:mod:`akoflow.provenance.observe`) and
lineage is exact (:mod:`akoflow.provenance.observed`): used = what an attempt read (also
inputs in place before the run), generated = what it wrote. Otherwise (no CAP_SYS_ADMIN,
network or FUSE file systems, ``AKOFLOW_OBSERVE=off``) it is inferred from timing: the data
dir is looked at once per engine wake-up (a full scan first, then only where an inotify
watch saw changes, except on network file systems; checksums only for files whose size or
time changed); used = what the direct dependencies generated or alone may have; a change is
ambiguous between the activities that ran when it was made, even one alone (timing cannot
tell its write from another process's), unless that one declared the file as an output.
Either way, a file version that cannot be given to one attempt (two overlapping writers, a
writer of no attempt, lost events, a change timing saw) is recorded as ambiguous with its
candidates, never given to one. The
run's inputs (the files in place before the first activity started) are recorded once per
run; the mechanism is stored per run (see :mod:`akoflow.provenance.recorder`).

Files that stay on a remote runtime (an HPC mount path, a Kubernetes volume) are listed by the
job itself before and after its command (see :mod:`akoflow.provenance.remote`) and recorded
under the runtime's location: a version listed by attempts that ran at the same time is
ambiguous between them, unless exactly one of them declared it.

File names are bytes: any name is recorded and exported without loss, whether or not it is
UTF-8 (see :mod:`akoflow.provenance.names` for how they are stored, shown and encoded). What a
data dir may hold besides files (FIFOs, sockets, symlink loops, directories that cannot be
read) never blocks or stops a scan (see :mod:`akoflow.provenance.snapshot`).

Set ``AKOFLOW_PROVENANCE=off`` to skip all of it.
"""
