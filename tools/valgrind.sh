#!/bin/sh
# Runs the test suites under valgrind's memcheck and fails on any error it
# reports: invalid reads and writes, uses of uninitialised values, bad frees,
# and memory definitely or indirectly lost.
#
#     sh tools/valgrind.sh            the fast part of the suite (CI runs it)
#     sh tools/valgrind.sh all        every suite (several times slower)
#     sh tools/valgrind.sh NAME...    the named tests (meson test names)
#
# Builds into build-valgrind (or $VALGRIND_BUILD) without sanitizers.
# Criterion runs each test in a worker process and reports its result
# before the worker exits, so valgrind's exit code cannot reach meson: each
# process writes its own log, and the script reads every ERROR SUMMARY.
set -eu
cd "$(dirname "$0")/.."
build=${VALGRIND_BUILD:-build-valgrind}

# Suites left out of the fast part: they repeat their work thousands of
# times (every bit flip and truncation of a file, finite differences of
# every op and of every JVP rule, every op's two backward paths in two
# dtypes, spinning thread pools, large products (dense's 1100-row layers),
# training steps of the CNN, a program started per case), which valgrind
# slows down fifty-fold. Their code paths are covered
# by the rest, and all of them run under ASan in CI. mpi_train and mpi_faults are left out
# for another reason: valgrind would wrap mpirun itself, and Open MPI's own
# allocations are not ours to judge (test_comm covers the same code on threads).
# ctags is a shell script: valgrind would judge the shell's own leaks.
slow="install safetensors safetensors_save examples ops_gradcheck second_order f32_agreement raw_vjp jvp jvp_shape jvp_cnn gemm gemm_avx512_emulated dense cnn_steps pool agx determinism mpi_train mpi_faults ctags"

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }
# (meson 1.0 refuses --reconfigure on a directory it has not set up yet)
if [ -d "$build/meson-private" ]; then again=--reconfigure; else again=; fi
meson setup "$build" $again -Dexamples=disabled >/dev/null
ninja -C "$build" >/dev/null

if [ $# -eq 0 ]; then
    tests=""
    for t in $(meson test -C "$build" --no-rebuild --list 2>/dev/null | sed 's/.* \/ //'); do
        case " $slow " in *" $t "*) ;; *) tests="$tests $t" ;; esac
    done
elif [ "$1" = all ]; then
    tests=""
else
    tests="$*"
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/valgrind.XXXXXX")
# Children are followed (Criterion's workers, agx), but not into system
# programs such as Graphviz's dot, whose own errors are not ours.
vg="valgrind --tool=memcheck --trace-children=yes --trace-children-skip=/usr/*,/bin/*"
vg="$vg --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect"
vg="$vg --num-callers=50 --log-file=$logs/vg.%p.log"
status=0
# shellcheck disable=SC2086
meson test -C "$build" --no-rebuild --print-errorlogs --timeout-multiplier 20 \
    --wrapper "$vg" $tests || status=$?

bad=$(grep -l "ERROR SUMMARY: [1-9]" "$logs"/vg.*.log || true)
if [ -n "$bad" ]; then
    for f in $bad; do
        echo "== $f"
        grep -v "^==[0-9]*== *$" "$f" | head -60
    done | head -200
    echo "valgrind.sh: memcheck found errors in $(echo "$bad" | wc -l) process(es); logs in $logs" >&2
    exit 1
fi
checked=$(ls "$logs" | wc -l)
if [ "$checked" -eq 0 ]; then
    echo "valgrind.sh: no process ran under valgrind" >&2
    exit 1
fi
rm -rf "$logs"
if [ "$status" -ne 0 ]; then
    echo "valgrind.sh: a test failed under valgrind (see above)" >&2
    exit "$status"
fi
echo "valgrind.sh: $checked processes, no memcheck error"
