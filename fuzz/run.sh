#!/usr/bin/env bash
# Fuzzes nagare's parsers with cargo-fuzz (libFuzzer).
#
#   fuzz/run.sh                 every target, 60 s each
#   fuzz/run.sh syslog 600      one target for 10 minutes
#   fuzz/run.sh all 30          every target, 30 s each
#
# Needs `cargo install cargo-fuzz`. cargo-fuzz uses nightly compiler flags
# (sanitizers); RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. Each
# target starts from the golden fixtures of its format (parsers/tests/fixtures),
# one line per seed; the corpus grows in fuzz/corpus/<target>, and crashes land in
# fuzz/artifacts/<target> (both git-ignored). Reproduce a crash with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FIXTURES="$ROOT/parsers/tests/fixtures"
TARGETS=(json regex logfmt apache2 apache_error nginx nginx_error syslog ltsv csv tsv multi_format time multiline forward_frame)

target="${1:-all}"
seconds="${2:-60}"
if [[ "$target" == "all" ]]; then
    selected=("${TARGETS[@]}")
elif [[ " ${TARGETS[*]} " == *" $target "* ]]; then
    selected=("$target")
else
    echo "unknown target \`$target\`; one of: all ${TARGETS[*]}" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 1
fi

# Seeds: every line (and whole file) of the format's fixtures.
seed() {
    local name="$1" dir="$FIXTURES/$1" corpus="$ROOT/fuzz/corpus/$1"
    [[ "$name" == "time" ]] && dir="$FIXTURES/syslog"
    mkdir -p "$corpus"
    # Targets without fixtures (forward_frame) start from an empty corpus.
    [[ -d "$dir" ]] || return 0
    local f i=0
    for f in "$dir"/*.log; do
        cp "$f" "$corpus/seed-file-$(basename "$f")"
        while IFS= read -r line || [[ -n "$line" ]]; do
            printf '%s' "$line" >"$corpus/seed-$(basename "$f" .log)-$i"
            i=$((i + 1))
        done <"$f"
    done
}

cd "$ROOT"
for t in "${selected[@]}"; do
    seed "$t"
    echo "==> fuzzing $t for ${seconds}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -max_len=4096
done
