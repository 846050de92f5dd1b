#!/usr/bin/env bash
# libFuzzer (+ AddressSanitizer) over Envelope.decode, for longer runs than the seeded
# 100,000-input test in Tests/WireTests/FuzzTests.swift (which CI runs every time).
# Builds the codec sources (Messages, WireError, Codec) with the protoc-c output into one
# fuzzing binary with swiftc -sanitize=fuzzer,address; no SwiftPM involvement.
# Usage: tools/fuzz-wire.sh [seconds, default 60] [extra libFuzzer flags...]
# Crashes are written to .build/fuzz-wire/ as crash-* files (replay: the binary + the file).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
out=.build/fuzz-wire
mkdir -p "$out/modules/CWireProto" "$out/corpus"

cat >"$out/modules/CWireProto/module.modulemap" <<MAP
module CWireProto {
    header "$PWD/Sources/CWireProto/include/mambaformer.pb-c.h"
    export *
}
MAP

cat >"$out/FuzzEntry.swift" <<'SWIFT'
// Every input goes through the validating decoder; whatever decodes must re-encode to
// an equal envelope. A crash, a leak or a sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireDecode(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    if let envelope = try? Envelope.decode(bytes) {
        guard let again = try? Envelope.decode(envelope.encoded()), again == envelope else {
            fatalError("decode(encode(x)) != x")
        }
    }
    return 0
}
SWIFT

clang -O1 -g -fsanitize=fuzzer-no-link,address -I Sources/CWireProto/include \
    -c Sources/CWireProto/mambaformer.pb-c.c -o "$out/mambaformer.pb-c.o"
swiftc -O -g -parse-as-library -sanitize=fuzzer,address -module-name WireFuzz \
    -I "$out/modules" -I Sources/CProtobufC \
    Sources/Wire/Messages.swift Sources/Wire/WireError.swift Sources/Wire/Codec.swift "$out/FuzzEntry.swift" \
    "$out/mambaformer.pb-c.o" -lprotobuf-c -o "$out/wire-fuzz"

# Seed corpus: one frame per message type, as the test suite's samples encode them.
printf '\x08\xe8\x07\x5a\x02\x08\x03' >"$out/corpus/heartbeat"
printf '\x08\xe8\x07\x7a\x07\x0a\x05req-1' >"$out/corpus/cancel"
printf '\x08\xe8\x07\x8a\x01\x10\x0a\x03r-1\x1a\x04\x0a\x02hi\x22\x02hi\x28\x01' >"$out/corpus/span_result"
printf '\x08\xe8\x07\x72\x0d\x0a\x03r-1\x12\x04\x0a\x02ok\x22\x00' >"$out/corpus/answer_event"

cd "$out"
./wire-fuzz -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 "$@" corpus
