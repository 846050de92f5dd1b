/// The token-level gate: per-token features, the small causal network giving P(ET5), the span policy, and training.
///
/// See ../../README.md for the architecture.
public enum GateModule {
    /// Shown by `mambaformer --version` per component.
    public static let name = "Gate"
}
