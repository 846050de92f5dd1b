/// A parsed JSON document, decoded without a schema so that the gateway can say exactly which
/// field is wrong (wrong type, unknown, missing) instead of a generic decoding failure.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)        // only integers above Int64.max (e.g. a 64-bit seed)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let v = try? c.decode(Bool.self) { self = .bool(v); return }
        if let v = try? c.decode(Int64.self) { self = .int(v); return }
        if let v = try? c.decode(UInt64.self) { self = .uint(v); return }
        if let v = try? c.decode(Double.self) { self = .double(v); return }
        if let v = try? c.decode(String.self) { self = .string(v); return }
        if let v = try? c.decode([JSONValue].self) { self = .array(v); return }
        self = .object(try c.decode([String: JSONValue].self))
    }

    /// How the value is named in an error message ("got string").
    var kindName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .int, .uint: return "integer"
        case .double: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }
}

/// Typed, error-reporting access to a JSON object's fields. `null` counts as absent.
struct JSONFields {
    let values: [String: JSONValue]
    /// Prefix for field names in messages, e.g. "messages[2]."
    let path: String

    init(_ values: [String: JSONValue], path: String = "") {
        self.values = values; self.path = path
    }

    private func present(_ key: String) -> JSONValue? {
        guard let v = values[key], v != .null else { return nil }
        return v
    }
    private func name(_ key: String) -> String { path + key }

    func refuseUnknown(allowed: [String]) throws {
        for key in values.keys.sorted() where !allowed.contains(key) {
            throw GatewayError.unknownField(name(key), allowed: allowed)
        }
    }

    func string(_ key: String) throws -> String? {
        guard let v = present(key) else { return nil }
        guard case .string(let s) = v else { throw GatewayError.invalidType(name(key), expected: "a string", got: v.kindName) }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = present(key) else { return nil }
        guard case .bool(let b) = v else { throw GatewayError.invalidType(name(key), expected: "a boolean", got: v.kindName) }
        return b
    }

    func int(_ key: String, in range: ClosedRange<Int64>) throws -> Int64? {
        guard let v = present(key) else { return nil }
        let n: Int64
        switch v {
        case .int(let i): n = i
        case .uint: throw GatewayError.invalidValue(name(key), "must be in \(range.lowerBound)...\(range.upperBound)")
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: n = Int64(d)
        default: throw GatewayError.invalidType(name(key), expected: "an integer", got: v.kindName)
        }
        guard range.contains(n) else {
            throw GatewayError.invalidValue(name(key), "must be in \(range.lowerBound)...\(range.upperBound), got \(n)")
        }
        return n
    }

    func uint64(_ key: String) throws -> UInt64? {
        guard let v = present(key) else { return nil }
        switch v {
        case .int(let i) where i >= 0: return UInt64(i)
        case .uint(let u): return u
        case .int, .double: throw GatewayError.invalidValue(name(key), "must be a non-negative integer")
        default: throw GatewayError.invalidType(name(key), expected: "a non-negative integer", got: v.kindName)
        }
    }

    func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = present(key) else { return nil }
        let d: Double
        switch v {
        case .int(let i): d = Double(i)
        case .uint(let u): d = Double(u)
        case .double(let x): d = x
        default: throw GatewayError.invalidType(name(key), expected: "a number", got: v.kindName)
        }
        guard range.contains(d) else {
            throw GatewayError.invalidValue(name(key), "must be in \(range.lowerBound)...\(range.upperBound), got \(d)")
        }
        return d
    }

    func array(_ key: String) throws -> [JSONValue]? {
        guard let v = present(key) else { return nil }
        guard case .array(let a) = v else { throw GatewayError.invalidType(name(key), expected: "an array", got: v.kindName) }
        return a
    }

    func object(_ key: String) throws -> JSONFields? {
        guard let v = present(key) else { return nil }
        guard case .object(let o) = v else { throw GatewayError.invalidType(name(key), expected: "an object", got: v.kindName) }
        return JSONFields(o, path: name(key) + ".")
    }
}
