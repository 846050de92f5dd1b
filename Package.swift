// swift-tools-version:6.0
// MambaFormer cluster: one target per part, dependencies pointing one way (ARCHITECTURE.md):
//   mambaformer (CLI) → nodes (RouterNode, ExpertNode, Gateway, LoadGen)
//     → GateTraining → Generation → Engine → Tensors → Kernels → COpenBLAS, COneDNN, CKernels
//     → Gate → Tensors, Kernels (a policy: no models, no sockets)
//   nodes → Wire (codec, ZeroMQ, ZAP) → CZmq, CProtobufC
//   Vocabulary (messages, deadlines, log hygiene) and Random are shared; Tokenizers stand alone.
// scripts/check-layering.py (in `make test`) fails when an import breaks this.
import PackageDescription

// Swift 6 language mode (strict concurrency checking) for the libraries and the gateway and
// load generator; each `@unchecked Sendable` left in them says why in a comment.
let v6: [SwiftSetting] = [.swiftLanguageMode(.v6)]
// Swift 5 mode where C pointers cross threads by design: Wire, the router and expert nodes
// (zmq sockets and protobuf-c structs owned by one loop thread each), Kernels (pointer ranges
// split across concurrentPerform), the CLI, and the tests and benchmarks.
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
        // Also through hummingbird; named for the HTTP field types the gateway's middleware reads.
        .package(url: "https://github.com/apple/swift-http-types", exact: "1.8.0"),
        // Also through hummingbird; named for the audit trail's HMAC-SHA-256 chain.
        .package(url: "https://github.com/apple/swift-crypto", exact: "4.5.2"),
        // Also through hummingbird; named for HTTPS at the gateway (a context swapped on SIGHUP).
        .package(url: "https://github.com/apple/swift-nio-ssl", exact: "2.37.6"),
    ],
    targets: [
        // System libraries (Debian packages, see scripts/install-deps.sh).
        // libzmq deliberately has no pkgConfig: libzmq.pc pulls a -isystem flag SwiftPM rejects.
        .systemLibrary(name: "CZmq", path: "Sources/CZmq"),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas"),
        // oneDNN: the integer GEMM of many rows (w8a8 prefill and T5 encoder; BENCHMARKS.md).
        .systemLibrary(name: "COneDNN", path: "Sources/COneDNN"),
        .systemLibrary(name: "CProtobufC", path: "Sources/CProtobufC", pkgConfig: "libprotobuf-c"),

        // POSIX helpers Swift cannot call directly (prctl, CPU feature detection).
        .target(name: "CSupport", path: "Sources/CSupport"),

        // The shared vocabulary: the messages of the wire contract as Swift values, prompt
        // canonicalisation, clocks and deadlines, log hygiene. Pure Swift: libraries speak it
        // without linking ZeroMQ or protobuf-c.
        .target(name: "Vocabulary", swiftSettings: v6),
        // The wire itself: protobuf-c codec, ZeroMQ sockets, ZAP (CURVE allow-lists), keys.
        // protoc-c output for Sources/Wire/proto (committed; regenerate with tools/gen-wire.sh).
        .target(name: "CWireProto", dependencies: ["CProtobufC"], path: "Sources/CWireProto"),
        .target(name: "Wire", dependencies: [
            "Vocabulary", "CZmq", "CProtobufC", "CWireProto", "CSupport",
            .product(name: "Logging", package: "swift-log"),
        ], exclude: ["proto"], swiftSettings: v5),

        // Numerics: BLAS wrappers (OpenBLAS for f32, oneDNN for int8 × int8), norms, activations, selective scan.
        // Swift 5 mode: DispatchQueue.concurrentPerform runs closures over raw pointers, each on a
        // disjoint range; Swift 6 would want every such closure and pointer proven Sendable.
        .target(name: "Kernels", dependencies: ["COpenBLAS", "COneDNN", "CKernels"], swiftSettings: v5),
        // The selective scan in C: vectorised exp, AVX2+FMA chosen at run time.
        .target(name: "CKernels", path: "Sources/CKernels"),
        // The one random number generator (SplitMix64): seeded, the same on every platform.
        .target(name: "Random", swiftSettings: v6),
        // Hugging Face tokenizer.json (Unigram, BPE) and incremental detokenization.
        .target(name: "Tokenizers", swiftSettings: v6),
        // Tensors on disk and in memory: safetensors reading and writing, weight formats.
        .target(name: "Tensors", dependencies: ["Kernels"], swiftSettings: v6),
        // Models (ET5, EMamba), configs, sessions, sampling.
        .target(name: "Engine", dependencies: ["Tensors", "Kernels", "Random"], swiftSettings: v6),
        // The token-level router gate: features, network, policy.
        .target(name: "Gate", dependencies: ["Vocabulary", "Tensors", "Kernels", "Tokenizers", "Random"], swiftSettings: v6),
        // Generating answers span by span: the prompt template, the batched span scheduler, the
        // session cache, and LocalExperts (both pools in one process, for evaluation and training).
        .target(name: "Generation", dependencies: ["Vocabulary", "Engine", "Tokenizers", "CSupport"], swiftSettings: v6),
        // How many replicas each pool should have: a pure policy (observations in, decisions
        // out) that both actuators share (`up --autoscale` and the autoscaler service).
        .target(name: "Autoscaling", dependencies: ["Vocabulary"], swiftSettings: v6),
        // Offline work on the gate: teacher forcing both experts, training, evaluation.
        // Apart from Gate because it runs the experts in-process (Generation's LocalExperts).
        .target(name: "GateTraining", dependencies: ["Gate", "Generation", "Engine", "Tokenizers", "Vocabulary", "Random"],
                swiftSettings: v6),

        // Processes.
        .target(name: "RouterNode", dependencies: [
            "Wire", "Gate", "Tokenizers", "ClusterConfig",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], swiftSettings: v5),
        .target(name: "ExpertNode", dependencies: [
            "Wire", "Generation", "Engine", "Tokenizers", "ClusterConfig",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ], swiftSettings: v5),
        // The gateway's HTTP API from the outside: its JSON models, the one SSE parser, and a
        // URLSession client (`mambaformer ask`, the tests); the load generator parses with it too.
        .target(name: "GatewayClient", swiftSettings: v6),
        // The gateway's tamper-evident audit trail: HMAC-chained JSON lines, their writer, the verifier.
        .target(name: "Audit", dependencies: [
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: v6),
        .target(name: "Gateway", dependencies: [
            "Wire", "GatewayClient", "ClusterConfig", "Audit",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
        ], swiftSettings: v6),
        // GET /metrics for the router and the experts (the gateway serves its own).
        .target(name: "MetricsEndpoint", dependencies: [
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ], swiftSettings: v5),
        .target(name: "LoadGen", dependencies: [
            "Random", "GatewayClient",
            .product(name: "Histogram", package: "hdrhistogram-swift"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: v6),

        // Deployment: the cluster configuration file (TOML), systemd readiness, scale planning.
        .target(name: "ClusterConfig", dependencies: [
            .product(name: "TOMLKit", package: "TOMLKit"),
        ], swiftSettings: v6),

        // The one executable.
        .executableTarget(name: "mambaformer", dependencies: [
            "Wire", "Kernels", "Tokenizers", "Engine", "Gate", "GateTraining",
            "RouterNode", "ExpertNode", "Gateway", "GatewayClient", "LoadGen", "MetricsEndpoint", "CSupport", "ClusterConfig", "Autoscaling", "Audit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], swiftSettings: v5),

        // Micro-benchmark of the wire layer (benchmarks/wire/run.sh; not a test).
        .executableTarget(name: "wire-bench", dependencies: ["Wire"], path: "benchmarks/wire/swift",
                          swiftSettings: v5),
        // Engine benchmark tool (random paper-shape checkpoints, prefill/decode timings).
        .executableTarget(name: "engine-bench", dependencies: ["Engine", "Kernels", "COpenBLAS", "Random"],
                          path: "benchmarks/engine", swiftSettings: v5),

        // What the cluster's processes add: router dispatch cost per span, batching through an expert.
        .executableTarget(name: "cluster-bench", dependencies: ["Wire", "RouterNode", "Gate", "Engine", "Generation", "LoadGen",
                                                          .product(name: "Logging", package: "swift-log")],
                          path: "benchmarks/cluster", swiftSettings: v5),

        // Unit tests next to each part; integration tests start real processes.
        // Helpers several test targets share (paths, running a command).
        .target(name: "TestCommon", path: "Tests/TestCommon", swiftSettings: v5),
        .testTarget(name: "WireTests", dependencies: ["Wire", "Random"], swiftSettings: v5),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels", "COpenBLAS"], swiftSettings: v5),
        .testTarget(name: "GateTests", dependencies: ["Gate", "GateTraining", "Random", "Engine", "Tokenizers", "Wire", "RouterNode", "TestCommon"], swiftSettings: v5),
        .testTarget(name: "RouterNodeTests", dependencies: ["RouterNode", "Gate", "Wire"], swiftSettings: v5),
        .testTarget(name: "GenerationTests", dependencies: ["Generation", "Engine", "Tokenizers", "Vocabulary", "TestCommon"],
                    swiftSettings: v5),
        .testTarget(name: "AutoscalingTests", dependencies: ["Autoscaling", "Vocabulary"], swiftSettings: v6),
        .testTarget(name: "ExpertNodeTests", dependencies: [
            "ExpertNode", "Generation", "Engine", "Tokenizers", "Wire", "TestCommon",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: v5),
        .testTarget(name: "IntegrationTests", dependencies: [
            "mambaformer", "Wire", "Engine", "Generation", "ExpertNode", "Gateway", "GatewayClient", "LoadGen", "TestCommon",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: v5),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "Tensors", "Kernels"],
                    resources: [.copy("Fixtures")], swiftSettings: v5),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers"], resources: [.copy("Fixtures")], swiftSettings: v5),
        .testTarget(name: "DeployTests", dependencies: [
            "ClusterConfig", "TestCommon", .product(name: "TOMLKit", package: "TOMLKit"),
        ], swiftSettings: v5),
        .testTarget(name: "GatewayTests", dependencies: [
            "Gateway", "GatewayClient", "Wire", "TestCommon", "ClusterConfig", "Audit",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: v5),
        .testTarget(name: "LoadGenTests", dependencies: [
            "LoadGen", "Random", "TestCommon",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ], swiftSettings: v5),
    ]
)
