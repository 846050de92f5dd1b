// The engine's models are built from tensors: a caller of Engine sees Tensor, SafeTensorsFile,
// Weight and EngineError without importing Tensors itself.
@_exported import Tensors
