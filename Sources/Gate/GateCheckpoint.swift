import Tensors
import Foundation
import Tokenizers
import Vocabulary

/// A trained gate on disk, the `gate/` folder of a MambaFormer checkpoint:
///
///     gate.json          format, feature spec, vocabulary source, lexicon, policy thresholds,
///                        network shape, training metadata
///     gate.safetensors   the network's weights + per-vocabulary feature tables (f32)
///
/// The gate tokenizes with EMamba's tokenizer (`vocabulary.tokenizer`, relative to the gate
/// folder); its fingerprint is checked at load so a retrained tokenizer cannot silently
/// shift every token id under the gate.
public struct GateFile: Codable, Sendable, Equatable {
    public struct Vocabulary: Codable, Sendable, Equatable {
        /// tokenizer.json path relative to the gate folder.
        public var tokenizer: String
        public var size: Int
        /// FNV-1a 64 of the tokenizer.json bytes, hex.
        public var fingerprint: String
        public init(tokenizer: String, size: Int, fingerprint: String) {
            self.tokenizer = tokenizer; self.size = size; self.fingerprint = fingerprint
        }
    }

    public struct Training: Codable, Sendable, Equatable {
        public var data: String = ""
        public var examples = 0
        public var heldOutExamples = 0
        public var epochs = 0
        public var bestEpoch = 0
        public var seed: UInt64 = 0
        public var lambdaCost: Float = 0
        public var targetEt5Share: Float = 0
        /// Loss coefficients: utility-weighted BCE, expected cost, utilisation, switching.
        public var coefficients: [String: Float] = [:]
        /// Positions ahead whose utility labels a position (the next span, roughly).
        public var horizon = 0
        /// Mean measured per-token decode cost (µs) of each expert during teacher forcing.
        public var costUs: [String: Float] = [:]
        public var heldOut: [String: Float] = [:]
        public var secondsPerExample: Float = 0
        public var createdAt = ""
        public init() {}
    }

    public var format = 1
    public var kind = "trained"
    public var vocabulary: Vocabulary
    public var features: FeatureSpec
    public var featureNames: [String]
    public var network: GateNetworkShape
    public var lexicon: [String]
    public var policy: GatePolicy
    public var training: Training

    public init(vocabulary: Vocabulary, features: FeatureSpec, featureNames: [String], network: GateNetworkShape,
                lexicon: [String], policy: GatePolicy, training: Training) {
        self.vocabulary = vocabulary; self.features = features; self.featureNames = featureNames
        self.network = network; self.lexicon = lexicon; self.policy = policy; self.training = training
    }
}

/// Everything a trained gate needs at run time, loaded.
// Sendable: a value loaded once and read by the router's one thread; its featurizer is
// immutable.
public struct GateBundle: @unchecked Sendable {
    public var file: GateFile
    public var network: GateNetwork
    public var featurizer: GateFeaturizer

    public init(file: GateFile, network: GateNetwork, featurizer: GateFeaturizer) {
        self.file = file; self.network = network; self.featurizer = featurizer
    }

    public static let jsonName = "gate.json"
    public static let weightsName = "gate.safetensors"

    /// Writes gate.json and gate.safetensors into `directory` (created if needed).
    public func save(to directory: URL) throws {
        do { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        catch { throw GateError.invalidFile(file: directory.path, reason: "cannot create the folder: \(error)") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let json = try encoder.encode(file)
        let jsonURL = directory.appendingPathComponent(Self.jsonName)
        do { try json.write(to: jsonURL) } catch { throw GateError.invalidFile(file: jsonURL.path, reason: "\(error)") }
        let shape = network.shape
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for (i, name) in GateParameters.names.enumerated() {
            tensors.append((name, GateParameters.shapes(shape)[i], network.parameters[keyPath: GateParameters.keyPaths[i]]))
        }
        tensors.append(("features.rarity", [shape.vocabSize], featurizer.statistics.rarity))
        tensors.append(("features.embedding_norm", [shape.vocabSize], featurizer.statistics.embeddingNorm))
        try SafeTensorsWriter.write(tensors, dtype: .f32, to: directory.appendingPathComponent(Self.weightsName))
    }

    /// Loads a gate folder; the tokenizer comes from the path gate.json names.
    public static func load(from directory: URL) throws -> GateBundle {
        let jsonURL = directory.appendingPathComponent(jsonName)
        guard let data = FileManager.default.contents(atPath: jsonURL.path) else { throw GateError.missingFile(jsonURL.path) }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let file: GateFile
        do { file = try decoder.decode(GateFile.self, from: data) }
        catch { throw GateError.invalidFile(file: jsonURL.path, reason: "not a gate file: \(error)") }
        guard file.format == 1 else { throw GateError.invalidFile(file: jsonURL.path, reason: "format \(file.format) (this build reads 1)") }
        guard file.featureNames == FeatureSpec.numericNames else {
            throw GateError.invalidFile(file: jsonURL.path, reason: "feature_names \(file.featureNames) differ from this build's \(FeatureSpec.numericNames); retrain the gate")
        }
        let shape = file.network
        guard shape.numericCount == file.features.numericCount, shape.embeddingDims == file.features.embeddingDims,
              shape.vocabSize > 0, shape.vocabSize == file.vocabulary.size, shape.convKernel >= 1, shape.hidden >= 1 else {
            throw GateError.invalidFile(file: jsonURL.path, reason: "network shape \(shape) does not match the feature spec and vocabulary")
        }
        guard file.policy.window >= 1, !file.policy.points.isEmpty else {
            throw GateError.invalidFile(file: jsonURL.path, reason: "policy needs window ≥ 1 and at least one threshold point")
        }

        let tokenizerURL = directory.appendingPathComponent(file.vocabulary.tokenizer).standardizedFileURL
        guard let tokenizerBytes = FileManager.default.contents(atPath: tokenizerURL.path) else {
            throw GateError.missingFile(tokenizerURL.path)
        }
        let fingerprint = fnv1a64Hex(tokenizerBytes)
        guard fingerprint == file.vocabulary.fingerprint else {
            throw GateError.invalidFile(file: tokenizerURL.path, reason: "fingerprint \(fingerprint) differs from gate.json's \(file.vocabulary.fingerprint): the tokenizer changed since the gate was trained; retrain the gate")
        }
        let tokenizer = try Tokenizer(json: tokenizerBytes, file: tokenizerURL.path)
        guard tokenizer.vocabSize <= shape.vocabSize else {
            throw GateError.vocabularyMismatch(file: tokenizerURL.path, expected: shape.vocabSize, actual: tokenizer.vocabSize)
        }

        let weightsURL = directory.appendingPathComponent(weightsName)
        guard FileManager.default.fileExists(atPath: weightsURL.path) else { throw GateError.missingFile(weightsURL.path) }
        let weights = try SafeTensorsFile(contentsOf: weightsURL)
        func read(_ name: String, _ dims: [Int]) throws -> [Float] {
            let t = try weights.tensor(name, shape: dims)
            let values = Array(UnsafeBufferPointer(start: t.pointer, count: t.count))
            guard values.allSatisfy({ $0.isFinite }) else {
                throw GateError.invalidFile(file: weightsURL.path, reason: "tensor \(name) has non-finite values")
            }
            return values
        }
        var parameters = GateParameters(zerosFor: shape)
        for (i, name) in GateParameters.names.enumerated() {
            parameters[keyPath: GateParameters.keyPaths[i]] = try read(name, GateParameters.shapes(shape)[i])
        }
        let statistics = VocabularyStatistics(rarity: try read("features.rarity", [shape.vocabSize]),
                                              embeddingNorm: try read("features.embedding_norm", [shape.vocabSize]))
        let featurizer = GateFeaturizer(tokenizer: tokenizer, spec: file.features, statistics: statistics,
                                        lexicon: Lexicon(words: file.lexicon))
        return GateBundle(file: file, network: GateNetwork(shape: shape, parameters: parameters), featurizer: featurizer)
    }
}
