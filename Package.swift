// swift-tools-version:6.0
// MambaFormer cluster: one target per part, dependencies pointing one way:
//   mambaformer (CLI) → nodes (RouterNode, ExpertNode, Gateway, LoadGen)
//                     → Engine / Gate → Kernels → COpenBLAS
//   everything that crosses a process → Wire → CZmq, CProtobufC
import PackageDescription

// Language mode 5: the nodes own C pointers (zmq sockets, protobuf-c structs) on
// one thread each; Swift 6's strict sendability checking would only add noise there.
let v5: [SwiftSetting] = [.swiftLanguageMode(.v5)]

let package = Package(
    name: "mambaformer",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "mambaformer", targets: ["mambaformer"]),
    ],
    // Every dependency pinned exactly (Package.resolved cannot be committed here): a build takes
    // these versions or fails, never whatever newer ones a package cache offers. The whole
    // resolved graph, transitive packages included, is recorded in dependencies.lock and
    // checked by scripts/check-dependencies.sh in `make test`.
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", exact: "0.2.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
        // Already in the graph through hummingbird; named here for LoadGen's small HTTP/1.1 client.
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.3"),
        // Also through hummingbird; named for the gateway's request read timeout (a NIO handler).
        .package(url: "https://github.com/apple/swift-nio-extras", exact: "1.35.2"),
    ],
    targets: [
        // System libraries (Debian packages, see scripts/install-deps.sh).
        // libzmq deliberately has no pkgConfig: libzmq.pc pulls a -isystem flag SwiftPM rejects.
        .systemLibrary(name: "CZmq", path: "Sources/CZmq"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas"),
        .systemLibrary(name: "CProtobufC", path: "Sources/CProtobufC", pkgConfig: "libprotobuf-c"),

        // POSIX helpers Swift cannot call directly (prctl, CPU feature detection).
        .target(name: "CSupport", path: "Sources/CSupport"),

        // The wire contract: protobuf messages over ZeroMQ.
        // protoc-c output for Sources/Wire/proto (committed; regenerate with tools/gen-wire.sh).
        .target(name: "CWireProto", dependencies: ["CProtobufC"], path: "Sources/CWireProto"),
        .target(name: "Wire", dependencies: [
            "CZmq", "CProtobufC", "CWireProto", "CSupport",
            .product(name: "Logging", package: "swift-log"),
        ], exclude: ["proto"], swiftSettings: v5),

        // Numerics: BLAS wrappers, norms, activations, selective scan.
        .target(name: "Kernels", dependencies: ["COpenBLAS", "CKernels"], swiftSettings: v5),
        // The selective scan in C: vectorised exp, AVX2+FMA chosen at run time.
        .target(name: "CKernels", path: "Sources/CKernels"),
        // Hugging Face tokenizer.json (Unigram, BPE) and incremental detokenization.
        .target(name: "Tokenizers", swiftSettings: v5),
        // Models (ET5, EMamba), safetensors, configs, decoding.
        .target(name: "Engine", dependencies: ["Kernels", "Tokenizers"], swiftSettings: v5),
        // The token-level router gate: features, network, policy, training.
        .target(name: "Gate", dependencies: ["Wire", "Engine", "Kernels", "Tokenizers"], swiftSettings: v5),
        // Offline work on the gate: teacher forcing both experts, training, evaluation.
        // Apart from Gate because it runs the experts in-process (ExpertNode's span loop).
        .target(name: "GateTraining", dependencies: ["Gate", "ExpertNode", "Engine", "Kernels", "Tokenizers", "Wire"],
                swiftSettings: v5),

        // Processes.
        .target(name: "RouterNode", dependencies: [
            "Wire", "Gate", "Tokenizers",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], swiftSettings: v5),
        .target(name: "ExpertNode", dependencies: [
            "Wire", "Engine", "Tokenizers", "CSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], swiftSettings: v5),
        .target(name: "Gateway", dependencies: [
            "Wire",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
        ], swiftSettings: v5),
        // GET /metrics for the router and the experts (the gateway serves its own).
        .target(name: "MetricsEndpoint", dependencies: [
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], swiftSettings: v5),
        .target(name: "LoadGen", dependencies: [
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: v5),

        // Deployment: the cluster configuration file (TOML), systemd readiness, scale planning.
        .target(name: "ClusterConfig", dependencies: [
            .product(name: "TOMLKit", package: "TOMLKit"),
        ], swiftSettings: v5),

        // The one executable.
        .executableTarget(name: "mambaformer", dependencies: [
            "Wire", "Kernels", "Tokenizers", "Engine", "Gate", "GateTraining",
            "RouterNode", "ExpertNode", "Gateway", "LoadGen", "MetricsEndpoint", "CSupport", "ClusterConfig",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "TOMLKit", package: "TOMLKit"),
        ], swiftSettings: v5),

        // Micro-benchmark of the wire layer (benchmarks/wire/run.sh; not a test).
        .executableTarget(name: "wire-bench", dependencies: ["Wire"], path: "benchmarks/wire/swift",
                          swiftSettings: v5),
        // Engine benchmark tool (random paper-shape checkpoints, prefill/decode timings).
        .executableTarget(name: "engine-bench", dependencies: ["Engine", "Kernels"],
                          path: "benchmarks/engine", swiftSettings: v5),

        // What the cluster's processes add: router dispatch cost per span, batching through an expert.
        .executableTarget(name: "cluster-bench", dependencies: ["Wire", "RouterNode", "Gate", "Engine", "ExpertNode", "LoadGen",
                                                          .product(name: "Logging", package: "swift-log")],
                          path: "benchmarks/cluster", swiftSettings: v5),

        // Unit tests next to each part; integration tests start real processes.
        // Helpers several test targets share (paths, running a command).
        .target(name: "TestCommon", path: "Tests/TestCommon", swiftSettings: v5),
        .testTarget(name: "WireTests", dependencies: ["Wire"], swiftSettings: v5),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], swiftSettings: v5),
        .testTarget(name: "GateTests", dependencies: ["Gate", "GateTraining", "Engine", "Tokenizers", "Wire", "RouterNode", "TestCommon"], swiftSettings: v5),
        .testTarget(name: "RouterNodeTests", dependencies: ["RouterNode", "Gate"], swiftSettings: v5),
        .testTarget(name: "IntegrationTests", dependencies: [
            "mambaformer", "Wire", "Engine", "ExpertNode", "Gateway", "LoadGen", "TestCommon",
        ], swiftSettings: v5),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Kernels"],
                    resources: [.copy("Fixtures")], swiftSettings: v5),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers"], resources: [.copy("Fixtures")], swiftSettings: v5),
        .testTarget(name: "DeployTests", dependencies: ["ClusterConfig", "TestCommon"], swiftSettings: v5),
        .testTarget(name: "GatewayTests", dependencies: [
            "Gateway", "Wire", "TestCommon",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ], swiftSettings: v5),
        .testTarget(name: "LoadGenTests", dependencies: [
            "LoadGen", "TestCommon",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ], swiftSettings: v5),
    ]
)
