#!/bin/sh
# Sets up a fresh Debian 12 machine for this project, then either builds and
# runs the demo ("demo") or builds and runs the whole test suite ("test").
# Uses sudo for apt-get only when not already root.
set -eu
what=${1:-demo}
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

base="gcc meson ninja-build pkg-config zlib1g-dev graphviz"
case "$what" in
    demo) pkgs="$base" ;;
    # chromium and its driver: the step-through page's test drives a real
    # browser (suite 'browser'; it is skipped, not failed, without them).
    # Open MPI: the data-parallel test runs two ranks under mpirun.
    test) pkgs="$base libcriterion-dev python3-numpy dataset-fashion-mnist chromium chromium-driver libopenmpi-dev openmpi-bin" ;;
    *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -q
# shellcheck disable=SC2086
as_root apt-get install -y -q $pkgs

# Configure build/, or reconfigure it when an earlier run made it.
if [ -d build/meson-private ]; then
    meson setup --reconfigure build
else
    meson setup build
fi
if [ "$what" = demo ]; then
    meson compile -C build
    ./build/examples/chain
else
    meson test -C build --print-errorlogs
fi
