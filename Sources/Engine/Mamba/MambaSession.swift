import Foundation

/// Where each layer's conv and SSM state lives inside a session's one state buffer.
struct MambaStateLayout {
    let convOffsets: [Int]
    let ssmOffsets: [Int]
    let count: Int

    init(blocks: [MambaBlock]) {
        var conv: [Int] = [], ssm: [Int] = [], offset = 0
        for b in blocks {
            conv.append(offset); offset += b.convStateCount
            ssm.append(offset); offset += b.ssmStateCount
        }
        convOffsets = conv; ssmOffsets = ssm; count = offset
    }
}

/// One EMamba sequence: the token ids consumed and, per layer, the conv history
/// [(kernel−1) × inner] and the SSM state [inner × state]; zero for an empty sequence.
///
/// Mamba's state cannot be rolled back token by token, so `markSnapshot` copies the state at
/// the current position (the node calls it at span boundaries) and `truncate` restores the
/// latest snapshot at or before the requested length (or the empty state).
public final class MambaSession: ModelSession {
    public var encoderInput: [Int]? { nil }
    public private(set) var consumed: [Int] = []
    /// Snapshots kept; the oldest is dropped beyond this (each costs one state copy).
    public var maxSnapshots = 4

    let owner: ObjectIdentifier
    let layout: MambaStateLayout
    private let state: UnsafeMutablePointer<Float>
    private var snapshots: [(position: Int, state: [Float])] = []

    init(owner: ObjectIdentifier, layout: MambaStateLayout) {
        self.owner = owner
        self.layout = layout
        state = .allocate(capacity: max(layout.count, 1))
        state.initialize(repeating: 0, count: max(layout.count, 1))
    }

    deinit { state.deallocate() }

    func convState(layer: Int) -> UnsafeMutablePointer<Float> { state + layout.convOffsets[layer] }
    func ssmState(layer: Int) -> UnsafeMutablePointer<Float> { state + layout.ssmOffsets[layer] }
    func append(_ tokens: [Int]) { consumed += tokens }

    public func markSnapshot() {
        let position = consumed.count
        guard position > 0, snapshots.last?.position != position else { return }
        snapshots.removeAll { $0.position >= position }
        snapshots.append((position, Array(UnsafeBufferPointer(start: state, count: layout.count))))
        if snapshots.count > maxSnapshots { snapshots.removeFirst(snapshots.count - maxSnapshots) }
    }

    public func truncate(to count: Int) -> Int {
        if count >= consumed.count { return consumed.count }
        snapshots.removeAll { $0.position > count }
        if let snap = snapshots.last {
            snap.state.withUnsafeBufferPointer { state.update(from: $0.baseAddress!, count: layout.count) }
            consumed.removeLast(consumed.count - snap.position)
            return snap.position
        }
        state.update(repeating: 0, count: layout.count)
        consumed.removeAll()
        return 0
    }

    public var memoryBytes: Int {
        (layout.count * (1 + snapshots.count)) * MemoryLayout<Float>.stride + consumed.count * MemoryLayout<Int>.stride
    }
}
