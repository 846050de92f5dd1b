/// An expert process: serves one model (EMamba or ET5) to the router with continuous batching and a session cache.
///
/// See ../../README.md for the architecture.
public enum ExpertNodeModule {
    /// Shown by `mambaformer --version` per component.
    public static let name = "ExpertNode"
}
