"""Reads known only by their close (a mapping's pages, an fstat) dated too late (hostile pass on
137e9ed): each workflow copies in.txt to out.txt through a mapping (no read event), and the
close that tells the read comes in one event with a later open of in.txt by the same process.
out.txt is a copy of in.txt: it must derive from it. Real workflows through the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.e2e.test_exact_lineage import OBSERVED, run_workflow, workflow
from tests.e2e.test_lineage_hostile import prov_derivations
from tests.prov_support import mechanism

pytestmark = pytest.mark.needs_root  # fanotify filesystem marks need CAP_SYS_ADMIN

# Its reads at the start, out.txt written, then (once the engine has surely read those
# events: epochs later) the description closed together with a new open of in.txt.
HANDED = """exec 3<in.txt
python3 -c '
import mmap, os, time
m = mmap.mmap(3, 0, prot=mmap.PROT_READ)
open("out.txt", "wb").write(bytes(m[:]))
time.sleep(2)
again = os.open("in.txt", os.O_RDONLY)
m.close(); os.close(3); os.close(again)
' &
exec 3<&-
wait"""

OWN = """python3 -c '
import mmap, os, time
first = os.open("in.txt", os.O_RDONLY)
m = mmap.mmap(first, 0, prot=mmap.PROT_READ)
time.sleep(1)
open("out.txt", "wb").write(bytes(m[:]))
time.sleep(2)
again = os.open("in.txt", os.O_RDONLY)
os.read(again, 1)
m.close(); os.close(first); os.close(again)
'"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def copied_lineage(tmp_path: Path, script: str) -> set[tuple[str, str, str, str, bool]]:
    doc = run_workflow(tmp_path, workflow(("act", script, [])), inputs={"in.txt": "payload\n"})
    assert mechanism(doc) == OBSERVED
    assert (tmp_path / "data" / "out.txt").read_text() == "payload\n"
    return prov_derivations(doc)


def test_a_description_handed_by_the_shell_dates_its_read_by_the_shells_open(
    tmp_path: Path,
) -> None:
    # The shell opened in.txt (`exec 3<`), its background child read it through a mapping
    # and wrote out.txt, and closed it last, in one event with its own new open: the close
    # was dated by that open (after the write) and out.txt derived from nothing.
    derived = copied_lineage(tmp_path, HANDED)
    assert ("out.txt", sha("payload\n"), "in.txt", sha("payload\n"), False) in derived


def test_a_close_in_one_event_with_a_new_read_is_dated_by_its_own_open(tmp_path: Path) -> None:
    # One process: in.txt opened and mapped, out.txt written, then a new open and read of
    # in.txt and both closed at once: one event (open, read, close), whose read was taken
    # from its read bit (now) and the close's earlier open ignored.
    derived = copied_lineage(tmp_path, OWN)
    assert ("out.txt", sha("payload\n"), "in.txt", sha("payload\n"), False) in derived
