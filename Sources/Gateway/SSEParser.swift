/// Incremental parser for `text/event-stream` (the subset the gateway emits: `event:`, `id:`,
/// `data:` lines, `:` comments, blank line ends an event). Feed it bytes as they arrive;
/// it returns the complete events. Used by `mambaformer ask --stream` and the tests.
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

    private var buffer: [UInt8] = []
    private var name: String?
    private var id: String?
    private var data: [String] = []

    public init() {}

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [Event] {
        buffer.append(contentsOf: bytes)
        var events: [Event] = []
        while let newline = buffer.firstIndex(of: 0x0A) {
            var line = Array(buffer[..<newline])
            buffer.removeSubrange(...newline)
            if line.last == 0x0D { line.removeLast() }
            if let event = take(String(decoding: line, as: UTF8.self)) { events.append(event) }
        }
        return events
    }

    private mutating func take(_ line: String) -> Event? {
        if line.isEmpty {
            defer { name = nil; id = nil; data = [] }
            guard !data.isEmpty || name != nil else { return nil }
            return Event(name: name ?? "message", id: id, data: data.joined(separator: "\n"))
        }
        if line.hasPrefix(":") { return nil }
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
