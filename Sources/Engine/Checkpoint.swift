import Foundation

/// A MambaFormer checkpoint folder (README.md, "Checkpoints"):
///
///     mambaformer.json   {"format": 1, "emamba": "emamba", "et5": "et5", "gate": "gate",
///                         "default_cost_weight": 0.25}
///     emamba/  et5/      Hugging Face checkpoints (config.json, model.safetensors, tokenizer.json)
///     gate/              gate.json, gate.safetensors (optional until a gate is trained)
///
/// `default_cost_weight` (optional, 0…1) is the cost weight a router uses for requests that
/// give none: the gate's best held-out point, written by `eval --write-default`.
public struct MambaformerCheckpoint: Sendable {
    public let root: URL
    public let emamba: URL
    public let et5: URL
    public let gate: URL?
    public let defaultCostWeight: Float?

    public enum LoadError: Error, CustomStringConvertible {
        case missing(String)
        case invalid(file: String, reason: String)
        public var description: String {
            switch self {
            case .missing(let path): return "checkpoint: \(path) does not exist"
            case .invalid(let file, let reason): return "checkpoint: \(file): \(reason)"
            }
        }
    }

    public init(root: URL) throws {
        self.root = root
        let manifest = root.appendingPathComponent("mambaformer.json")
        guard let data = FileManager.default.contents(atPath: manifest.path) else { throw LoadError.missing(manifest.path) }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw LoadError.invalid(file: manifest.path, reason: "not a JSON object")
        }
        guard let format = object["format"] as? Int, format == 1 else {
            throw LoadError.invalid(file: manifest.path, reason: "\"format\" must be 1 (this build reads format 1)")
        }
        func folder(_ key: String, required: Bool) throws -> URL? {
            guard let name = object[key] as? String else {
                if required { throw LoadError.invalid(file: manifest.path, reason: "\"\(key)\" must name a sub-folder") }
                return nil
            }
            guard !name.contains(".."), !name.hasPrefix("/") else {
                throw LoadError.invalid(file: manifest.path, reason: "\"\(key)\" must be a folder inside the checkpoint")
            }
            let url = root.appendingPathComponent(name)
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
                if required { throw LoadError.missing(url.path) }
                return nil
            }
            return url
        }
        emamba = try folder("emamba", required: true)!
        et5 = try folder("et5", required: true)!
        gate = try folder("gate", required: false)
        if let value = object["default_cost_weight"] {
            guard let number = value as? NSNumber, !(value is Bool), (0...1).contains(number.doubleValue) else {
                throw LoadError.invalid(file: manifest.path, reason: "\"default_cost_weight\" must be a number in [0, 1]")
            }
            defaultCostWeight = number.floatValue
        } else {
            defaultCostWeight = nil
        }
    }

    /// Sets (or replaces) `default_cost_weight` in `mambaformer.json`, keeping every other key.
    public static func writeDefaultCostWeight(_ weight: Float, root: URL) throws {
        let manifest = root.appendingPathComponent("mambaformer.json")
        guard let data = FileManager.default.contents(atPath: manifest.path),
              var object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw LoadError.invalid(file: manifest.path, reason: "not a JSON object")
        }
        object["default_cost_weight"] = Double((weight * 1000).rounded() / 1000)
        let out = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        try (out + Data("\n".utf8)).write(to: manifest, options: .atomic)
    }

    /// `path` may be a MambaFormer checkpoint (then `expert` selects the sub-folder) or a
    /// single Hugging Face checkpoint folder used as is.
    public static func expertFolder(_ path: String, expert: String) throws -> URL {
        let url = URL(fileURLWithPath: path)
        if FileManager.default.fileExists(atPath: url.appendingPathComponent("mambaformer.json").path) {
            let checkpoint = try MambaformerCheckpoint(root: url)
            return expert == "et5" ? checkpoint.et5 : checkpoint.emamba
        }
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) else {
            throw LoadError.missing(url.appendingPathComponent("config.json").path)
        }
        return url
    }
}
