# Read by bash (through BASH_ENV) before an activity's script; see akoflow/runtimes/local.py.
# Fixed text: user values only reach it as environment variables, never as code.
unset BASH_ENV
# Claim the attempt with an exclusive create: if the engine claimed it first (it does so when
# it restarts and finds the attempt never started), this copy must not run at all.
set -C
{ printf '%s\n' "$$" > "$AKOFLOW_ATTEMPT_DIR/claim"; } 2>/dev/null || exit 213
set +C
# The exit code survives the engine: a restarted engine reads it from this file.
trap 'printf "%s\n" "$?" > "$AKOFLOW_ATTEMPT_DIR/exitcode"' EXIT
cd -- "$AKOFLOW_WORKDIR" || exit 214
