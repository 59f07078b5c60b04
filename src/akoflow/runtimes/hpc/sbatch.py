"""The sbatch script of one attempt, rendered by pure functions.

The activity's own script is never part of it: it is uploaded as ``script.sh`` next to the
sbatch script and run as a file (``bash script.sh``, or inside ``singularity exec``). Every other
value in the body is quoted with :func:`shlex.quote`; values in ``#SBATCH`` lines were restricted
to safe characters by the settings.

Crash safety lives in two claims, both ``mkdir`` of a directory in the attempt's remote dir
(atomic, also on shared file systems):

- ``submitted``: taken (over SFTP) right before ``sbatch``, so one attempt is given to SLURM at
  most once, however often the engine asks;
- ``started``: taken by the job when it starts, or by the engine when it proves an attempt never
  ran. A job that finds it taken exits with :data:`CLAIM_LOST_EXIT` without running anything.

The job records the activity's exit code in ``exit`` (written atomically) and, as the seed
does, writes ``AKOFLOW_JOB_FINISHED`` to ``akoflow_finished_{workflow}_{activity}.txt`` in the
mount path.

With provenance on (:attr:`JobRequest.record_files`), the job lists its working directory
(:data:`akoflow.provenance.remote.LIST_FUNCTION`) into ``files.before`` right before the
command and into ``files.after`` right after it, both before ``exit`` is written: an attempt
with an exit file has both listings, unless listing itself failed (no ``find`` on the node),
which changes nothing else. Each listing is written to a temporary file and renamed, so a
half-written one is never read.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from akoflow.provenance.remote import LIST_FUNCTION

CLAIM_LOST_EXIT = 213
WORKDIR_MISSING_EXIT = 214
ELEMENT_MISSING_EXIT = 215  # an array element without an attempt (or its element.sh)
FINISHED_TEXT = "AKOFLOW_JOB_FINISHED"
CONTROL_DIR = ".akoflow"

DEFAULT_TEMPLATE = "#!/bin/bash\n#DIRECTIVES#\n\n#COMMAND#\n"


def sbatch_argv(paths: AttemptPaths, name: str) -> list[str]:
    """``--job-name`` on the command line too: a user template cannot lose it."""
    return ["sbatch", "--parsable", f"--job-name={name}", paths.sbatch]


def job_name(scope: str, key: str) -> str:
    """Deterministic SLURM job name of an attempt (``scope`` tells state dirs apart)."""
    return f"akf-{scope}-{key}"


@dataclass(frozen=True, slots=True)
class AttemptPaths:
    """Remote files of one attempt, under ``MOUNT_PATH/.akoflow/<scope>/<key>``."""

    dir: str

    @classmethod
    def of(cls, mount_path: str, scope: str, key: str) -> AttemptPaths:
        return cls(f"{mount_path}/{CONTROL_DIR}/{scope}/{key}")

    @property
    def script(self) -> str:
        return f"{self.dir}/script.sh"

    @property
    def sbatch(self) -> str:
        return f"{self.dir}/job.sbatch"

    @property
    def stdout(self) -> str:
        return f"{self.dir}/stdout"

    @property
    def stderr(self) -> str:
        return f"{self.dir}/stderr"

    @property
    def exit(self) -> str:
        return f"{self.dir}/exit"

    @property
    def started(self) -> str:
        return f"{self.dir}/started"

    @property
    def submitted(self) -> str:
        return f"{self.dir}/submitted"

    @property
    def element(self) -> str:
        """The attempt's body when it runs as an element of a job array (sourced)."""
        return f"{self.dir}/element.sh"

    @property
    def array_ref(self) -> str:
        """``<array job name>\\n<index>\\n``: the array this attempt was given to, written
        before that array's sbatch (a restarted engine finds the element by it)."""
        return f"{self.dir}/array"

    @property
    def slurm_job_id(self) -> str:
        """The element's own SLURM job id, written by the element when it starts (accounting
        without slurmdbd knows array elements only by it)."""
        return f"{self.dir}/slurm_job_id"

    @property
    def files_before(self) -> str:
        """Listing of the working directory right before the command (provenance)."""
        return f"{self.dir}/files.before"

    @property
    def files_after(self) -> str:
        """Listing of the working directory right after the command (provenance)."""
        return f"{self.dir}/files.after"


def sentinel_path(mount_path: str, workflow_id: int, activity_id: int) -> str:
    return f"{mount_path}/akoflow_finished_{workflow_id}_{activity_id}.txt"


@dataclass(frozen=True, slots=True)
class JobRequest:
    """Everything the script of one attempt needs (all values already checked)."""

    name: str
    paths: AttemptPaths
    workdir: str
    sentinel: str
    command: Sequence[str]
    """argv that runs the activity's script file (bash, or singularity exec)."""
    env: Mapping[str, str] = field(default_factory=dict)
    partition: str | None = None
    account: str | None = None
    comment: str | None = None
    time: str | None = None
    cpus: int | None = None
    mem: str | None = None
    ntasks: str | None = None
    nodes: str | None = None
    gpus: str | None = None
    cpus_per_gpu: str | None = None
    nodelist: str | None = None
    """The node the engine's placement chose (``--nodelist``)."""
    record_files: bool = False
    """List the working directory before and after the command (``files.before``,
    ``files.after``): provenance of the files that stay on the cluster."""
    output: str | None = None
    """SLURM's output file when it is not the attempt's ``slurm.out`` (an array's)."""


def time_limit(setting: str | None, timeout_seconds: float | None) -> str | None:
    """``--time``: the activity's timeout in whole minutes (SLURM's unit) when it has one,
    else the runtime's TIME setting."""
    if timeout_seconds is not None:
        return str(max(1, math.ceil(timeout_seconds / 60)))
    return setting


def memory_request(setting: str | None, memory_bytes: int | None) -> str | None:
    """``--mem`` in MiB from the activity's memoryLimit, else the MEM setting."""
    if memory_bytes is not None:
        return f"{max(1, math.ceil(memory_bytes / (1 << 20)))}M"
    return setting


def cpu_request(cores: float | None) -> int | None:
    return max(1, math.ceil(cores)) if cores is not None else None


def directives(req: JobRequest) -> list[str]:
    options: list[tuple[str, str | int | None]] = [
        ("job-name", req.name),
        ("partition", req.partition),
        ("account", req.account),
        ("comment", req.comment),
        ("time", req.time),
        ("cpus-per-task", req.cpus),
        ("mem", req.mem),
        ("ntasks", req.ntasks),
        ("nodes", req.nodes),
        ("gpus", req.gpus),
        ("cpus-per-gpu", req.cpus_per_gpu),
        ("nodelist", req.nodelist),
        ("output", req.output or f"{req.paths.dir}/slurm.out"),
        ("error", req.output or f"{req.paths.dir}/slurm.out"),
    ]
    return [f"#SBATCH --{k}={v}" for k, v in options if v is not None]


def _listing(path: str) -> str:
    """Write the working directory's listing to ``path`` atomically. Whatever happens (no
    ``find``, a full disk, ``set -e`` in a user template) it neither stops the job nor changes
    ``$?`` seen by what follows."""
    q = shlex.quote
    tmp = path + ".tmp"
    return f"{{ akf_list_files >{q(tmp)} && mv -f {q(tmp)} {q(path)}; }} 2>/dev/null || :"


def body(req: JobRequest, *, final_exit: bool = True) -> str:
    """The part AkôFlow owns: claim, run the script file, record the exit code, sentinel
    (and, when asked, list the working directory before and after the command).

    It ends the job with the activity's exit code, unless a user template has lines after
    ``#COMMAND#`` (they run, and may read ``$akf_code``)."""
    q = shlex.quote
    d = req.paths
    lines = [
        "# AkôFlow: run this attempt once, record how it ended.",
        f"mkdir {q(d.started)} 2>/dev/null || exit {CLAIM_LOST_EXIT}",
        f"cd {q(req.workdir)} || exit {WORKDIR_MISSING_EXIT}",
    ]
    if req.record_files:
        lines += [LIST_FUNCTION, _listing(d.files_before)]
    # The activity's variables reach its command only: a PATH of its own cannot break the
    # lines that record how it ended.
    env = "".join(f"{k}={q(v)} \\\n" for k, v in req.env.items())
    # When the command ran, by the node's clock (bash 5's EPOCHREALTIME, no process; empty
    # under another shell): an end collected by a later engine is judged by its timeout.
    lines += [
        "akf_began=${EPOCHREALTIME:-}",
        f"{env}{shlex.join(req.command)} </dev/null >{q(d.stdout)} 2>{q(d.stderr)}",
        "akf_code=$?",
        "akf_ended=${EPOCHREALTIME:-}",
    ]
    if req.record_files:
        lines.append(_listing(d.files_after))
    lines += [
        f'printf \'%s %s %s\\n\' "$akf_code" "$akf_began" "$akf_ended" '
        f">{q(d.exit + '.tmp')} && mv -f {q(d.exit + '.tmp')} {q(d.exit)}",
        f"printf '%s\\n' {FINISHED_TEXT} >{q(req.sentinel)}",
    ]
    if final_exit:
        lines.append('exit "$akf_code"')
    return "\n".join(lines)


def render(req: JobRequest, template: str | None = None) -> str:
    """The sbatch script: ``template`` (upstream's placeholders, plus ``#DIRECTIVES#``) or the
    default one, with AkôFlow's body in place of ``#COMMAND#``."""
    return _fill(req, template, lambda final_exit: body(req, final_exit=final_exit))


def _fill(req: JobRequest, template: str | None, command: Callable[[bool], str]) -> str:
    values = {
        "#DIRECTIVES#": "\n".join(directives(req)),
        "#JOB_NAME#": req.name,
        "#OUTPUT#": req.output or f"{req.paths.dir}/slurm.out",
        "#ERROR#": req.output or f"{req.paths.dir}/slurm.out",
        "#TIME#": req.time or "",
        "#PARTITION#": req.partition or "",
        "#ACCOUNT#": req.account or "",
        "#NTASKS#": req.ntasks or "",
        "#NODES#": req.nodes or "",
        "#GPUS#": req.gpus or "",
        "#CPUS_PER_GPU#": req.cpus_per_gpu or "",
        "#MEM#": req.mem or "",
    }
    text = template if template is not None else DEFAULT_TEMPLATE
    head, sep, tail = text.partition("#COMMAND#")
    if not sep:
        raise ValueError("the sbatch template has no #COMMAND# placeholder")
    for placeholder, value in values.items():  # never inside the body or the user's script
        head = head.replace(placeholder, value)
        tail = tail.replace(placeholder, value)
    return head + command(not tail.strip()) + tail


# ---------------------------------------------------------------------- job arrays
#
# Attempts whose sbatch options are identical (same resources, partition, template) go to
# SLURM as one ``sbatch --array=0-(n-1)%N``. Each attempt keeps its own remote dir, script,
# claims, exit file, logs and listings: its body (the same lines as a plain job's) is written
# there as ``element.sh``, and the array's script only picks the element's dir by
# ``$SLURM_ARRAY_TASK_ID`` from a case statement of quoted paths, then sources it.


def array_name(scope: str, first_key: str) -> str:
    """Deterministic SLURM job name of the array whose first element is ``first_key``; never
    the name of a plain job (those are ``akf-<scope>-<key>``, keys start with ``wf``)."""
    return f"akf-{scope}-arr-{first_key}"


@dataclass(frozen=True, slots=True)
class ArrayPaths:
    """Remote files of one array, under ``MOUNT_PATH/.akoflow/<scope>/arrays/<first key>``."""

    dir: str

    @classmethod
    def of(cls, mount_path: str, scope: str, first_key: str) -> ArrayPaths:
        return cls(f"{mount_path}/{CONTROL_DIR}/{scope}/arrays/{first_key}")

    @property
    def sbatch(self) -> str:
        return f"{self.dir}/job.sbatch"

    @property
    def output(self) -> str:
        """SLURM's own output of each element (``%a``: its index)."""
        return f"{self.dir}/slurm.%a.out"


def options_key(req: JobRequest) -> tuple[str, ...]:
    """What must be equal for attempts to share an array: their ``#SBATCH`` lines, less the
    name and output that are the array's own."""
    own = ("#SBATCH --job-name=", "#SBATCH --output=", "#SBATCH --error=")
    return tuple(line for line in directives(req) if not line.startswith(own))


def array_argv(paths: ArrayPaths, name: str, size: int, throttle: int) -> list[str]:
    """``--job-name`` and ``--array`` on the command line: a user template cannot lose them.
    ``%throttle``: at most that many elements run at once."""
    return [
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--array=0-{size - 1}%{max(1, throttle)}",
        paths.sbatch,
    ]


def element_body(req: JobRequest) -> str:
    """``element.sh``: the attempt's body, sourced by the array's script (which then ends
    the job with ``$akf_code``, or runs a template's lines after ``#COMMAND#``)."""
    return body(req, final_exit=False) + "\n"


def dispatcher(element_dirs: Sequence[str], *, final_exit: bool = True) -> str:
    """The array's command: the element's attempt dir by index (indexes are ours, paths
    quoted), its SLURM job id recorded there, then its ``element.sh`` sourced."""
    q = shlex.quote
    cases = "".join(f"  {i}) akf_dir={q(d)} ;;\n" for i, d in enumerate(element_dirs))
    lines = [
        "# AkôFlow: each element of this array runs its own attempt.",
        'case "${SLURM_ARRAY_TASK_ID:-}" in',
        cases + f"  *) exit {ELEMENT_MISSING_EXIT} ;;",
        "esac",
        f'[ -r "$akf_dir/element.sh" ] || exit {ELEMENT_MISSING_EXIT}',
        'printf \'%s\\n\' "${SLURM_JOB_ID:-}" >"$akf_dir/slurm_job_id" 2>/dev/null || :',
        '. "$akf_dir/element.sh"',
    ]
    if final_exit:
        lines.append('exit "$akf_code"')
    return "\n".join(lines)


def render_array(
    shared: JobRequest, element_dirs: Sequence[str], template: str | None = None
) -> str:
    """The array's sbatch script: ``shared`` gives the options every element has (its name
    and output are the array's), ``element_dirs[i]`` the attempt element ``i`` runs."""
    return _fill(
        shared, template, lambda final_exit: dispatcher(element_dirs, final_exit=final_exit)
    )


_ARRAY_NAME = re.compile(r"^akf-[A-Za-z0-9_.-]+-arr-[A-Za-z0-9_.-]+$")


def array_ref_text(name: str, index: int) -> bytes:
    """The content of an element's ``array`` file (:attr:`AttemptPaths.array_ref`)."""
    return f"{name}\n{index}\n".encode()


def parse_array_ref(data: bytes | None) -> tuple[str, int] | None:
    """(array name, index) from an ``array`` file; None when missing or not one of ours."""
    if data is None:
        return None
    parts = data.decode(errors="replace").split("\n")
    if len(parts) != 3 or parts[2] or not parts[1].isdigit():
        return None
    name = parts[0]
    return (name, int(parts[1])) if _ARRAY_NAME.match(name) else None
