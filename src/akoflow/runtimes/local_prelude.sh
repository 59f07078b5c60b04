# Read by bash (through BASH_ENV) before an activity's script; see akoflow/runtimes/local.py.
# Fixed text: user values only reach it as environment variables, never as code. The engine
# removes from bash's environment the names bash acts on before this file's first line
# (SHELLOPTS, BASHOPTS, POSIXLY_CORRECT, ENV, BASH_FUNC_*), so what runs here is bash's own
# builtins with default options, whatever the activity's environment says.
unset BASH_ENV
# The attempt's files are private (0600): an activity's output can hold private data.
umask 077
# Claim the attempt with an exclusive create of its exit file. If the engine claimed it first
# (it does so when it restarts and finds the attempt never started), this copy must not run.
set -C
{ printf 'pid %s\n' "$$" > "$AKOFLOW_ATTEMPT_FILES.exit"; } 2>/dev/null || exit 213
set +C
# The activity's output files are created here, by the activity's own process, rather than by
# the engine, whose one thread serves every activity (file creation can cost a millisecond).
exec >| "$AKOFLOW_ATTEMPT_FILES.stdout" 2>| "$AKOFLOW_ATTEMPT_FILES.stderr"
# Into the attempt's own cgroup before the script runs: whatever it starts, even in a new
# session (setsid), is then killed with it. Without one, its session is killed instead.
if [ -n "${AKOFLOW_CGROUP-}" ]; then
  { printf '%s\n' "$$" > "$AKOFLOW_CGROUP/cgroup.procs"; } 2>/dev/null \
    || printf 'akoflow: could not join cgroup %s; processes this script moves to a new session may outlive it\n' "$AKOFLOW_CGROUP" >&2
fi
# The script's own files get the umask the engine was started with.
umask "${AKOFLOW_UMASK:-022}"
unset AKOFLOW_CGROUP AKOFLOW_UMASK
cd -- "$AKOFLOW_WORKDIR" || exit 214
# The script runs in a bash of its own, started fresh on it (this file is not read again:
# BASH_ENV is unset above), exactly as `bash script.sh ARGS` would run it: its own `$$`, `$0`,
# traps and options. This shell then records how it ended: the exit code survives the engine
# (a restarted engine reads it from this file), and it is the script's true end whatever the
# script does: its own EXIT trap, `exec prog`, `kill $$`, or a signal of any kind (a script
# killed by signal N is 128+N here). The signals usually sent to the attempt's whole process
# group are trapped in this shell only, which defers them until the script has ended (bash
# runs a trap once its foreground command completes); the script gets them with their default
# action, or its own traps. Any other fatal signal kills this shell before it writes, and the
# file keeps "pid N": the attempt then counts as ended with its exit code lost, a failure,
# never a success.
trap : HUP INT QUIT TERM USR1 USR2 ALRM
"$BASH" -- "$0" "$@"
__akoflow_status=$?
printf 'exit %s\n' "$__akoflow_status" >| "$AKOFLOW_ATTEMPT_FILES.exit"
exit "$__akoflow_status"
