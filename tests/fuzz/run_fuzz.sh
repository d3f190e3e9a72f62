#!/bin/sh
# Fuzzes the agx parser (and what it feeds: recording, backward, DOT export)
# with clang's libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer.
#
#     sh tests/fuzz/run_fuzz.sh [SECONDS]     (default 600)
#
# Needs clang and its fuzzer runtime (Debian: clang, libclang-rt-14-dev).
# Works on a copy of the seed corpus tests/fuzz/agx/ under build-fuzz/; a
# crasher lands in build-fuzz/crash-*: add it to tests/fuzz/agx/ (and a case
# to tests/test_agx.c) once fixed.
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-600}
out=${FUZZ_OUT:-build-fuzz}
mkdir -p "$out/corpus"
cp tests/fuzz/agx/* "$out/corpus/"
clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Iautograd -Itools/agx autograd/*.c autograd/kernels/*.c tools/agx/parse.c \
    tools/agx/eval.c tests/fuzz/fuzz_agx.c -lm -lpthread -o "$out/fuzz_agx"
"$out/fuzz_agx" -max_total_time="$secs" -max_len=512 -timeout=10 -print_final_stats=1 \
    -dict=tests/fuzz/agx.dict -artifact_prefix="$out/" "$out/corpus" 2>&1 | tee "$out/fuzz.log" |
    grep -E "ERROR|crash|^Done" || true
grep -E "^Done|stat::number_of_executed_units" "$out/fuzz.log" || true
