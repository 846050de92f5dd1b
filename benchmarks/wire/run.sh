#!/usr/bin/env bash
# Wire micro-benchmark: the Swift layer (wire-bench, release build) next to a raw
# libzmq + protobuf-c C loop doing the same work (raw_zmq.c), interleaved so both see
# the same machine load. Prints a table of medians and p99s and the Swift overhead.
# Usage: benchmarks/wire/run.sh [rounds per round-trip size, default 10000] [repeats, default 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-10000}
repeats=${2:-3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

swift build -c release --product wire-bench >/dev/null
cc -O2 -o "$out/raw_zmq" benchmarks/wire/raw_zmq.c Sources/CWireProto/mambaformer.pb-c.c \
   -I Sources/CWireProto/include -lzmq -lprotobuf-c -lpthread
bench=$(swift build -c release --show-bin-path)/wire-bench

for i in $(seq "$repeats"); do
    "$out/raw_zmq" "$rounds" >>"$out/c.txt"
    "$bench" "$rounds" >>"$out/swift.txt"
done

# Best median over the repeats (least disturbed by the other processes on the host).
awk -v cfile="$out/c.txt" '
    function keep(arr, p99s, name, med, p99) { if (!(name in arr) || med < arr[name]) { arr[name] = med; p99s[name] = p99 } }
    BEGIN { while ((getline line < cfile) > 0) { split(line, f, " "); keep(c, cp, f[1], f[2], f[3]); unit[f[1]] = f[4] } }
    { keep(s, sp, $1, $2, $3); unit[$1] = $4; if (!($1 in seen)) { order[++n] = $1; seen[$1] = 1 } }
    END {
        printf "%-34s %12s %12s %12s %12s %9s\n", "measurement", "C median", "Swift median", "C p99", "Swift p99", "overhead"
        for (i = 1; i <= n; i++) {
            k = order[i]
            if (k in c) printf "%-34s %9.3f %-2s %9.3f %-2s %9.3f %-2s %9.3f %-2s %+8.1f%%\n", k, c[k], unit[k], s[k], unit[k], cp[k], unit[k], sp[k], unit[k], 100 * (s[k] - c[k]) / c[k]
            else printf "%-34s %12s %9.3f %-2s %12s %9.3f %-2s\n", k, "-", s[k], unit[k], "-", sp[k], unit[k]
        }
    }' "$out/swift.txt"
