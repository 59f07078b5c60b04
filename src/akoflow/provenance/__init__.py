"""Provenance: which files each activity used and generated, and its export as W3C PROV and
as a Workflow Run RO-Crate.

AkôFlow does not trace file reads or writes. It looks at the data dir once per engine wake-up
(a full scan first, then only where an inotify watch saw changes, except on network file
systems; checksums only for files whose size or time changed) and records:

- the run's inputs: the files in place before the first activity started, once per run (PROV:
  one collection that every attempt used);
- used: the files its direct dependencies generated, as they were when the activity started;
- generated: the files created or changed while it ran (by modification time). A change that
  falls in the run windows of several concurrent activities goes to the one that ended soonest
  after it, since a step usually exits right after its last write; two concurrent activities
  that both write and exit within the file clock's resolution (a few ms) cannot be told apart.

Files that stay on a remote runtime (an HPC mount path, a Kubernetes volume) are listed by the
job itself before and after its command (see :mod:`akoflow.provenance.remote`) and recorded
the same way under the runtime's location.

File names are bytes: any name is recorded and exported without loss, whether or not it is
UTF-8 (see :mod:`akoflow.provenance.names` for how they are stored, shown and encoded). What a
data dir may hold besides files (FIFOs, sockets, symlink loops, directories that cannot be
read) never blocks or stops a scan (see :mod:`akoflow.provenance.snapshot`).

Set ``AKOFLOW_PROVENANCE=off`` to skip all of it.
"""
