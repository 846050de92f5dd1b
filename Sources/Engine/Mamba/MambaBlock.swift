import Foundation
import Kernels

/// One residual block of Mamba-1: x ← x + Mixer(RMSNorm(x)), with the mixer (S6) of
/// transformers' `MambaMixer` / mamba-minimal. The projections are `Weight`s (f32 or bf16, views
/// into the mapped checkpoint when stored that way); the vectors are f32.
final class MambaBlock {
    let norm: Tensor          // [hidden]
    let inProj: Weight        // [2·inner, hidden]
    let inProjBias: Tensor?   // [2·inner]
    let convWeight: Tensor    // [inner, 1, kernel]
    let convBias: Tensor?     // [inner]
    let xProj: Weight         // [rank + 2·state, inner]
    let dtProj: Weight        // [inner, rank]
    let dtProjBias: Tensor    // [inner]
    let a: Tensor             // [inner, state] = −exp(A_log), computed once at load
    let d: Tensor             // [inner]
    let outProj: Weight       // [hidden, inner]
    let outProjBias: Tensor?  // [hidden]

    let hidden: Int, inner: Int, stateSize: Int, rank: Int, kernel: Int, eps: Float

    init(file: SafeTensorsFile, prefix p: String, config c: MambaConfig) throws {
        hidden = c.hiddenSize; inner = c.intermediateSize; stateSize = c.stateSize
        rank = c.timeStepRank; kernel = c.convKernel; eps = c.layerNormEpsilon
        norm = try file.tensor(p + "norm.weight", shape: [hidden])
        let m = p + "mixer."
        inProj = try file.matrix(m + "in_proj.weight", shape: [2 * inner, hidden])
        inProjBias = c.useBias ? try file.tensor(m + "in_proj.bias", shape: [2 * inner]) : nil
        convWeight = try file.tensor(m + "conv1d.weight", shape: [inner, 1, kernel])
        convBias = c.useConvBias ? try file.tensor(m + "conv1d.bias", shape: [inner]) : nil
        xProj = try file.matrix(m + "x_proj.weight", shape: [rank + 2 * stateSize, inner])
        dtProj = try file.matrix(m + "dt_proj.weight", shape: [inner, rank])
        dtProjBias = try file.tensor(m + "dt_proj.bias", shape: [inner])
        let aLog = try file.tensor(m + "A_log", shape: [inner, stateSize])
        a = Tensor(shape: [inner, stateSize], values: (0..<aLog.count).map { -expf(aLog.pointer[$0]) })
        d = try file.tensor(m + "D", shape: [inner])
        outProj = try file.matrix(m + "out_proj.weight", shape: [hidden, inner])
        outProjBias = c.useBias ? try file.tensor(m + "out_proj.bias", shape: [hidden]) : nil
    }

    var weightBytes: Int {
        [norm, convWeight, dtProjBias, a, d].reduce(0) { $0 + $1.byteCount }
            + [inProj, xProj, dtProj, outProj].reduce(0) { $0 + $1.byteCount }
            + [inProjBias, convBias, outProjBias].reduce(0) { $0 + ($1?.byteCount ?? 0) }
    }

    /// Floats of recurrent state per sequence: the conv history and the SSM state.
    var convStateCount: Int { (kernel - 1) * inner }
    var ssmStateCount: Int { inner * stateSize }

    /// A run of consecutive rows of `x` that belong to one sequence, with that sequence's state
    /// for this layer. Prefill is one segment of many rows; a batched decode step is one
    /// single-row segment per sequence.
    struct Segment {
        var firstRow: Int
        var rows: Int
        var convState: UnsafeMutablePointer<Float>   // [(kernel−1) × inner]
        var ssmState: UnsafeMutablePointer<Float>    // [inner × state]
    }

    /// x [rows × hidden] ← x + Mixer(RMSNorm(x)). The projections run as GEMMs over all rows
    /// (every sequence of a batch at once); the convolution and the scan run per segment,
    /// each with its own state.
    func forward(_ x: UnsafeMutablePointer<Float>, rows: Int, segments: [Segment], workspace ws: MambaWorkspace) {
        let twoInner = 2 * inner
        let dbcWidth = rank + 2 * stateSize

        // RMSNorm
        Norms.rmsNorm(x, weight: norm.pointer, output: ws.normed, rows: rows, dim: hidden, eps: eps)

        // in_proj, then split: xz[:, :inner] is the SSM branch x, xz[:, inner:] the gate z.
        inProj.linear(ws.normed, count: rows, into: ws.xz)
        if let bias = inProjBias { addRowBias(ws.xz, rows: rows, width: twoInner, bias: bias.pointer) }

        // Causal depthwise conv1d (carrying each sequence's last kernel−1 inputs), then SiLU.
        for s in segments {
            CausalConv1d.forward(
                input: ws.xz + s.firstRow * twoInner, inputStride: twoInner,
                steps: s.rows, channels: inner, kernel: kernel,
                weight: convWeight.pointer, bias: convBias?.pointer, state: s.convState,
                output: ws.xc + s.firstRow * inner, outputStride: inner)
        }
        Activations.silu(ws.xc, count: rows * inner)

        // x_proj → (Δ low-rank, B, C); dt_proj lifts Δ to every channel (its bias and the
        // softplus are applied inside the scan).
        xProj.linear(ws.xc, count: rows, into: ws.dbc)
        dtProj.linear(ws.dbc, count: rows, ldx: dbcWidth, into: ws.dt)

        // Selective scan with the D skip and the SiLU(z) gate: y [rows × inner].
        for s in segments {
            let r = s.firstRow
            let inputs = SelectiveScan.Inputs(
                u: ws.xc + r * inner, uStride: inner,
                delta: ws.dt + r * inner, deltaStride: inner, deltaBias: dtProjBias.pointer,
                a: a.pointer,
                b: ws.dbc + r * dbcWidth + rank, bStride: dbcWidth,
                c: ws.dbc + r * dbcWidth + rank + stateSize, cStride: dbcWidth,
                d: d.pointer,
                z: ws.xz + r * twoInner + inner, zStride: twoInner)
            SelectiveScan.scan(inputs, steps: s.rows, channels: inner, stateSize: stateSize,
                               state: s.ssmState, y: ws.y + r * inner, yStride: inner)
        }

        // out_proj, accumulated straight into the residual stream (beta = 1: x ← x + y·Woutᵀ).
        outProj.linear(ws.y, count: rows, into: x, accumulate: true)
        if let bias = outProjBias { addRowBias(x, rows: rows, width: hidden, bias: bias.pointer) }
    }
}

@inline(__always)
func addRowBias(_ m: UnsafeMutablePointer<Float>, rows: Int, width: Int, bias: UnsafePointer<Float>) {
    for r in 0..<rows {
        let row = m + r * width
        for i in 0..<width { row[i] += bias[i] }
    }
}

/// Scratch buffers for a forward pass, reused across calls (no per-token allocation).
/// Grown on demand to the largest row count seen.
final class MambaWorkspace {
    private(set) var capacity = 0
    let hidden: Int, inner: Int, dbcWidth: Int
    private(set) var normed: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private(set) var xz: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private(set) var xc: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private(set) var dbc: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private(set) var dt: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private(set) var y: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private(set) var residual: UnsafeMutablePointer<Float> = .allocate(capacity: 1)

    init(config c: MambaConfig) {
        hidden = c.hiddenSize; inner = c.intermediateSize; dbcWidth = c.timeStepRank + 2 * c.stateSize
    }

    func ensure(rows: Int) {
        guard rows > capacity else { return }
        free()
        capacity = rows
        normed = .allocate(capacity: rows * hidden)
        xz = .allocate(capacity: rows * 2 * inner)
        xc = .allocate(capacity: rows * inner)
        dbc = .allocate(capacity: rows * dbcWidth)
        dt = .allocate(capacity: rows * inner)
        y = .allocate(capacity: rows * inner)
        residual = .allocate(capacity: rows * hidden)
    }

    private func free() {
        for p in [normed, xz, xc, dbc, dt, y, residual] { p.deallocate() }
    }

    var bytes: Int { capacity * (2 * hidden + 5 * inner + dbcWidth) * 4 }

    deinit { free() }
}
