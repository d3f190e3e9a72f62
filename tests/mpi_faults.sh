#!/bin/sh
# mpi_faults.sh MPIRUN PROGRAM [MPIRUN ARGS...]: runs tests/mpi_faults.c
# under 'MPIRUN -np 2', once per fault and failing rank, and checks that the
# job ends with a non-zero status within BOUND seconds (the program's ranks
# time out after 3 s) and says why. Without the fixes of issue 19 the
# 'leave' and 'hang' runs never ended, and 'refuse' left the other rank
# waiting.
set -u
mpirun=$1
program=$2
shift 2
BOUND=60
failures=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run FAULT RANK PATTERN...: every PATTERN (grep -E) must be in the output.
run() {
    fault=$1
    rank=$2
    shift 2
    start=$(date +%s)
    timeout -k 5 120 "$mpirun" -np 2 "$@" "$program" "$fault" "$rank" >"$out" 2>&1 </dev/null
    rc=$?
    took=$(( $(date +%s) - start ))
    ok=1
    why=""
    if [ "$rc" -eq 0 ]; then ok=0; why="the job ended with status 0"; fi
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then ok=0; why="the job hung (killed after 120 s)"; fi
    if [ "$took" -gt "$BOUND" ]; then ok=0; why="the job took $took s (bound $BOUND s)"; fi
    if grep -q "trained 40 steps" "$out"; then ok=0; why="a rank trained on as if nothing happened"; fi
    for pattern in $patterns; do
        if ! grep -Eq "$(printf '%s' "$pattern" | tr '~' ' ')" "$out"; then
            ok=0
            why="no '$(printf '%s' "$pattern" | tr '~' ' ')' in the output"
        fi
    done
    if [ "$ok" -eq 1 ]; then
        echo "ok: $fault on rank $rank: status $rc after $took s"
    else
        echo "FAILED: $fault on rank $rank: $why; the output was:"
        sed 's/^/    /' "$out"
        failures=$((failures + 1))
    fi
}

# Patterns use '~' for spaces (the loop splits on white space).
for rank in 0 1; do
    other=$((1 - rank))
    patterns="rank~${other}:~stopped~with~status.*rank~${rank}~failed,~so~this~rank~stops~too:.*model~is~NULL
rank~${rank}:~stopped~with~status.*nn_comm_average_grads:~model~is~NULL"
    run refuse "$rank" "$@"
    patterns="nn_comm_abort:~rank~${rank}~of~2~leaves:~mpi_faults"
    run abort "$rank" "$@"
    patterns="rank~${other}:~stopped~with~status.*waited~3~s~for~the~others
nn_comm_free:~rank~${other}~of~2:~a~collective~timed~out"
    run leave "$rank" "$@"
done
patterns="rank~0:~stopped~with~status.*waited~3~s~for~the~others"
run hang 1 "$@"
patterns=""
run exit 0 "$@"
run exit0 1 "$@"
run crash 0 "$@"

[ "$failures" -eq 0 ] || { echo "$failures fault run(s) failed"; exit 1; }
echo "all fault runs ended with an error in bounded time"
