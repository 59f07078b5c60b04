# Read by bash (through BASH_ENV) before an activity's script; see akoflow/runtimes/local.py.
# Fixed text: user values only reach it as environment variables, never as code.
unset BASH_ENV
# Claim the attempt with an exclusive create of its exit file. If the engine claimed it first
# (it does so when it restarts and finds the attempt never started), this copy must not run.
set -C
{ printf 'pid %s\n' "$$" > "$AKOFLOW_ATTEMPT_FILES.exit"; } 2>/dev/null || exit 213
set +C
# The exit code survives the engine: a restarted engine reads it from the same file.
trap 'printf "exit %s\n" "$?" >| "$AKOFLOW_ATTEMPT_FILES.exit"' EXIT
# The activity's output files are created here, by the activity's own process, rather than by
# the engine, whose one thread serves every activity (file creation can cost a millisecond).
exec >| "$AKOFLOW_ATTEMPT_FILES.stdout" 2>| "$AKOFLOW_ATTEMPT_FILES.stderr"
cd -- "$AKOFLOW_WORKDIR" || exit 214
