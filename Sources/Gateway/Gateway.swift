/// The HTTP front door: validates requests, sends them to the router, merges span results, streams answers, serves health and metrics.
///
/// See ../../README.md for the architecture.
public enum GatewayModule {
    /// Shown by `mambaformer --version` per component.
    public static let name = "Gateway"
}
