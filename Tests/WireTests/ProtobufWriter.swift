// A tiny hand-rolled protobuf writer, so tests can build frames the Swift encoder would
// never produce (wrong version, unknown enum values, invalid UTF-8, huge fields...).

struct PB {
    var bytes: [UInt8] = []

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: Int, _ wireType: Int) { varint(UInt64(field << 3 | wireType)) }

    mutating func uint(_ field: Int, _ v: UInt64) {
        tag(field, 0)
        varint(v)
    }

    mutating func bytesField(_ field: Int, _ b: [UInt8]) {
        tag(field, 2)
        varint(UInt64(b.count))
        bytes += b
    }

    mutating func string(_ field: Int, _ s: String) { bytesField(field, Array(s.utf8)) }

    mutating func message(_ field: Int, _ m: PB) { bytesField(field, m.bytes) }

    mutating func float(_ field: Int, _ f: Float) {
        tag(field, 5)
        withUnsafeBytes(of: f.bitPattern.littleEndian) { bytes += $0 }
    }

    /// An envelope with the given version and one body field.
    static func envelope(version: UInt64 = 1000, bodyField: Int, _ body: PB) -> [UInt8] {
        var e = PB()
        e.uint(1, version)
        e.message(bodyField, body)
        return e.bytes
    }
}
