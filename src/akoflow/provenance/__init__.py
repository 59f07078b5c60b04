"""Provenance: which data-dir files each activity used and generated, and its export as W3C
PROV.

AkôFlow does not trace file reads or writes. It scans the data dir (once per engine wake-up,
re-hashing only files whose size or time changed) and records:

- used: the files its direct dependencies generated and the files that were in the data dir
  before the run, as they were when the activity started;
- generated: the files created or changed while it ran (by modification time). A change that
  falls in the run windows of several concurrent activities goes to the one that ended soonest
  after it, since a step usually exits right after its last write; two concurrent activities
  that both write and exit within the file clock's resolution (a few ms) cannot be told apart.

Set ``AKOFLOW_PROVENANCE=off`` to skip the scans (e.g. for a data dir of millions of files).
"""
