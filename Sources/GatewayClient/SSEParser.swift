/// Incremental parser for `text/event-stream` (the subset the gateway emits: `event:`, `id:`,
/// `data:` lines, `:` comments, blank line ends an event). Feed it bytes as they arrive;
/// it returns the complete events. The one SSE parser: `mambaformer ask --stream`, the load
/// generator and the tests.
public struct SSEParser: Sendable {
    public struct Event: Sendable, Equatable {
        /// "message" when the event had no `event:` line (e.g. OpenAI chunks).
        public var name: String
        public var id: String?
        public var data: String
        public init(name: String, id: String? = nil, data: String) {
            self.name = name; self.id = id; self.data = data
        }
    }

    private var line: [UInt8] = []
    private var name: String?
    private var id: String?
    private var data: [String] = []

    public init() {}

    /// The events completed by `bytes` (a chunk of any size, split anywhere).
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Event] {
        var events: [Event] = []
        for byte in bytes {
            guard byte == 0x0A else { line.append(byte); continue }
            if line.last == 0x0D { line.removeLast() }
            let text = String(decoding: line, as: UTF8.self)
            line.removeAll(keepingCapacity: true)
            if let event = take(text) { events.append(event) }
        }
        return events
    }

    private mutating func take(_ line: String) -> Event? {
        if line.isEmpty {
            defer { name = nil; id = nil; data = [] }
            guard !data.isEmpty || name != nil else { return nil }
            return Event(name: name ?? "message", id: id, data: data.joined(separator: "\n"))
        }
        if line.hasPrefix(":") { return nil }  // a comment (the gateway's keep-alives)
        let field: Substring, value: Substring
        if let colon = line.firstIndex(of: ":") {
            field = line[..<colon]
            var v = line[line.index(after: colon)...]
            if v.hasPrefix(" ") { v = v.dropFirst() }
            value = v
        } else {
            field = Substring(line); value = ""
        }
        switch field {
        case "event": name = String(value)
        case "id": id = String(value)
        case "data": data.append(String(value))
        default: break
        }
        return nil
    }
}
