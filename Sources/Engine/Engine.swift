/// The inference engine: safetensors loading, Hugging Face configs, the ET5 (T5) and EMamba (Mamba-1) models, batched decoding with per-sequence caches.
///
/// See ../../README.md for the architecture.
public enum EngineModule {
    /// Shown by `mambaformer --version` per component.
    public static let name = "Engine"
}
