/// FNV-1a 64 of `data`, 16 hex digits: a stable fingerprint (tokenizer files in gate.json,
/// names for unnamed bearer tokens). Not a cryptographic hash.
public func fnv1a64Hex<D: Sequence>(_ data: D) -> String where D.Element == UInt8 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in data { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    let s = String(h, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
