/// The router: a ZeroMQ broker that owns the gate, dispatches token spans to expert pools and forwards span results to gateways.
///
/// See ../../README.md for the architecture.
public enum RouterNodeModule {
    /// Shown by `mambaformer --version` per component.
    public static let name = "RouterNode"
}
