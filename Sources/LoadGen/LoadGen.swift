/// The bundled traffic generator: open- and closed-loop load against a gateway, HDR latency histograms, JSON and HTML reports.
///
/// See ../../README.md for the architecture.
public enum LoadGenModule {
    /// Shown by `mambaformer --version` per component.
    public static let name = "LoadGen"
}
