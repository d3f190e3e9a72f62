#!/bin/sh
# Uses the library as a project would, from what `meson install` puts in a
# prefix and from a meson subproject:
#   - the installed libautograd links nothing but libc, libm and threads;
#   - `pkg-config --cflags --libs autograd autograd-nn` works and builds a
#     program that trains, with the headers included as "nn.h" and
#     "autograd.h" (pkg-config's -I names the headers' directory);
#   - agx's manual page is installed;
#   - as a subproject, only the libraries are built, and autograd_dep /
#     nn_dep (or dependency('autograd')) give a program that runs.
# Usage: test_install.sh SOURCE_ROOT BUILD_ROOT SANITIZE
# Exit 77 (skipped) where it cannot run: a sanitizer build (its library
# needs the sanitizer's runtime), or no pkg-config.
set -eu
src=$1
build=$2
sanitize=${3:-none}

if [ "$sanitize" != none ]; then
    echo "skipped: built with -Db_sanitize=$sanitize; the installed library needs its runtime"
    exit 77
fi
command -v pkg-config >/dev/null || { echo "skipped: no pkg-config"; exit 77; }
cc=${CC:-cc}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ag_install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# --- the installed prefix
meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "meson install"; }
lib=$(find "$tmp/root" -name 'libautograd.so.*' -type f | head -n 1)
[ -n "$lib" ] || fail "libautograd.so was not installed"
pcdir=$(dirname "$(find "$tmp/root" -name autograd.pc | head -n 1)")
[ -f "$pcdir/autograd.pc" ] || fail "autograd.pc was not installed"
[ -f "$pcdir/autograd-nn.pc" ] || fail "autograd-nn.pc was not installed"
find "$tmp/root" -path '*man1/agx.1' | grep -q . || fail "agx.1 was not installed"

# Nothing but the C library, libm and threads at run time.
deps=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
for d in $deps; do
    case "$d" in
    libc.so.* | libm.so.* | libpthread.so.* | ld-linux*) ;;
    *) fail "libautograd needs $d (all it needs: $deps)" ;;
    esac
done
echo "libautograd.so needs: $deps"

# Only our own .pc files: a Requires on a system package (Graphviz, zlib)
# would fail here as on a machine without its development files.
export PKG_CONFIG_LIBDIR="$pcdir"
export PKG_CONFIG_PATH=""
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
flags=$(pkg-config --cflags --libs autograd autograd-nn) || fail "pkg-config autograd autograd-nn"
echo "pkg-config: $flags"
libdir=$(dirname "$lib")

cat >"$tmp/train.c" <<'EOF'
#include "autograd.h"
#include "nn.h"
#include <stdio.h>
#include <string.h>

/* Fits y = 2x + 1 with one dense layer and SGD: a user's first program. */
int main(void)
{
    if (strcmp(ag_version(), AG_VERSION_STRING) != 0) {
        fprintf(stderr, "header %s, library %s\n", AG_VERSION_STRING, ag_version());
        return 1;
    }
    double xs[4] = {0, 1, 2, 3}, ys[4] = {1, 3, 5, 7};
    nn_model *m = nn_model_new(NULL, NULL);
    nn_model_seed(m, 1);
    nn_dense *d = nn_dense_new(m, "fit", AG_F64, 1, 1, 1);
    nn_optim *opt = nn_sgd_new(m, 0.05, 0.0, 0.0, 0);
    ag_tape *t = ag_tape_new();
    double loss = 0;
    for (int step = 0; step < 2000; step++) {
        ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){4, 1}, xs);
        ag_tensor *y = ag_tensor_from(t, AG_F64, 2, (int64_t[]){4, 1}, ys);
        ag_tensor *l = nn_mse_loss(t, nn_dense_forward(t, d, x), y, NN_REDUCE_MEAN);
        nn_model_zero_grad(m);
        ag_backward(t, l);
        nn_optim_step(opt);
        loss = ag_item(l);
        ag_tape_reset(t);
    }
    printf("loss %.3g\n", loss);
    int ok = ag_tape_status(t) == AG_OK && loss < 1e-10;
    nn_optim_free(opt);
    ag_tape_free(t);
    nn_model_free(m);
    return ok ? 0 : 1;
}
EOF
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Wextra -Werror -o "$tmp/train" "$tmp/train.c" $flags ||
    fail "a program does not build with pkg-config's flags"
LD_LIBRARY_PATH="$libdir" "$tmp/train" || fail "the installed program did not train"

# --- as a meson subproject
mkdir -p "$tmp/user/subprojects"
ln -s "$(cd "$src" && pwd)" "$tmp/user/subprojects/autograd"
cp "$tmp/train.c" "$tmp/user/train.c"
cat >"$tmp/user/meson.build" <<'EOF'
project('user', 'c', default_options: ['c_std=c11'])
autograd = subproject('autograd')
executable('train', 'train.c',
  dependencies: [autograd.get_variable('nn_dep'), autograd.get_variable('autograd_dep')])
EOF
(cd "$tmp/user" && meson setup build >"$tmp/sub.log" 2>&1 && meson compile -C build >>"$tmp/sub.log" 2>&1) ||
    { tail -n 40 "$tmp/sub.log"; fail "building a project with autograd as a subproject"; }
targets=$(cd "$tmp/user" && meson introspect --targets build | tr ',' '\n' | grep -c '"name"')
for unwanted in agx bench test_tensor hello chain; do
    if (cd "$tmp/user" && meson introspect --targets build) | grep -q "\"name\": \"$unwanted\""; then
        fail "the subproject built '$unwanted'; only the libraries are wanted by default"
    fi
done
"$tmp/user/build/train" || fail "the subproject's program did not train"
echo "subproject: $targets targets, the program trains"
echo "ok"
