#!/bin/sh
# Universal Ctags must find the definition of every public function, so that
# an editor's "go to definition" works on all of them. Macro invocations on
# the line before a definition (the kernels' slice macros) once hid about
# forty ops from it. Skips (exit 77) when Universal Ctags is not installed.
#
# usage: check_ctags.sh SOURCE_ROOT
root=${1:-.}
ctags=${CTAGS:-ctags}
if ! "$ctags" --version 2>/dev/null | grep -q 'Universal Ctags'; then
    echo "Universal Ctags not found: skipped"
    exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
# Names declared with the export macros, from the public headers.
cat "$root/autograd/autograd.h" "$root/nn/nn.h" "$root/nn/nn_io.h" |
    grep -E '^(AG|NN)_API ' |
    sed -E 's/\(.*//; s/.*[ *]//' | sort -u >"$tmp/api"
# Function definitions Universal Ctags finds in the library's sources.
"$ctags" -x --languages=C --kinds-C=f -R "$root/autograd" "$root/nn" |
    awk '{print $1}' | sort -u >"$tmp/found"
n=$(wc -l <"$tmp/api")
if [ "$n" -lt 100 ]; then
    echo "only $n public functions found in the headers: is the pattern stale?"
    exit 1
fi
missing=$(comm -23 "$tmp/api" "$tmp/found")
if [ -n "$missing" ]; then
    echo "Universal Ctags finds no definition of:"
    echo "$missing"
    exit 1
fi
echo "all $n public functions found by Universal Ctags"
