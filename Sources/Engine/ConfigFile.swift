import Foundation

/// A Hugging Face config.json with typed accessors whose errors name the file and the key.
struct ConfigFile {
    let path: String
    let values: [String: Any]

    init(directory: URL) throws {
        let url = directory.appendingPathComponent("config.json")
        path = url.path
        let data: Data
        do { data = try Data(contentsOf: url) }
        catch { throw EngineError.io(path: path, reason: "cannot read config.json (is \(directory.path) a Hugging Face checkpoint folder?)") }
        guard let dict = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw EngineError.invalidConfig(path: path, key: "(file)", reason: "is not a JSON object")
        }
        values = dict
    }

    func has(_ key: String) -> Bool { values[key] != nil && !(values[key] is NSNull) }

    func string(_ key: String) throws -> String {
        guard let v = values[key] else { throw EngineError.invalidConfig(path: path, key: key, reason: "is missing") }
        guard let s = v as? String else { throw EngineError.invalidConfig(path: path, key: key, reason: "must be a string, found \(v)") }
        return s
    }

    func string(_ key: String, default d: String) throws -> String { has(key) ? try string(key) : d }

    func int(_ key: String) throws -> Int {
        guard let v = values[key], !(v is NSNull) else { throw EngineError.invalidConfig(path: path, key: key, reason: "is missing") }
        if let i = v as? Int { return i }
        if let n = v as? NSNumber, let i = Int(exactly: n.doubleValue) { return i }
        throw EngineError.invalidConfig(path: path, key: key, reason: "must be an integer, found \(v)")
    }

    func int(_ key: String, default d: Int) throws -> Int { has(key) ? try int(key) : d }

    func double(_ key: String) throws -> Double {
        guard let v = values[key], !(v is NSNull) else { throw EngineError.invalidConfig(path: path, key: key, reason: "is missing") }
        if let d = v as? Double { return d }
        if let n = v as? NSNumber { return n.doubleValue }
        throw EngineError.invalidConfig(path: path, key: key, reason: "must be a number, found \(v)")
    }

    func double(_ key: String, default d: Double) throws -> Double { has(key) ? try double(key) : d }

    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard has(key), let v = values[key] else { return d }
        if let b = v as? Bool { return b }
        throw EngineError.invalidConfig(path: path, key: key, reason: "must be true or false, found \(v)")
    }

    /// An id that HF allows as an int, a list of ints (first is used) or null.
    func tokenId(_ key: String) throws -> Int?? {
        guard let v = values[key] else { return .none }
        if v is NSNull { return .some(nil) }
        if let list = v as? [Any] {
            guard let first = list.first else { return .some(nil) }
            if let i = first as? Int { return .some(i) }
            throw EngineError.invalidConfig(path: path, key: key, reason: "must be an integer or a list of integers, found \(v)")
        }
        return .some(try int(key))
    }
}
