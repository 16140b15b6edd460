/// A value in an AMQP field table (message headers, queue arguments, client properties).
public indirect enum AMQPValue: Sendable, Equatable {
    case bool(Bool)
    case int8(Int8)
    case uint8(UInt8)
    case int16(Int16)
    case uint16(UInt16)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case uint64(UInt64)
    case float(Float)
    case double(Double)
    case decimal(decimals: UInt8, value: UInt32)
    /// A long string that is valid UTF-8.
    case string(String)
    /// A long string that is not valid UTF-8, or a byte array.
    case bytes([UInt8])
    case array([AMQPValue])
    case timestamp(UInt64)
    case table(AMQPTable)
    case void

    /// The value as a whole number, whatever its width, or a numeric string.
    public var integerValue: Int64? {
        switch self {
        case .int8(let v): Int64(v)
        case .uint8(let v): Int64(v)
        case .int16(let v): Int64(v)
        case .uint16(let v): Int64(v)
        case .int32(let v): Int64(v)
        case .uint32(let v): Int64(v)
        case .int64(let v): v
        case .uint64(let v): Int64(exactly: v)
        case .string(let text): Int64(text)
        default: nil
        }
    }

    /// The value as text when it is a string.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }
}

/// An ordered AMQP field table. Keys keep the order they were added or received in.
public struct AMQPTable: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public var entries: [(key: String, value: AMQPValue)]

    public init(_ entries: [(key: String, value: AMQPValue)] = []) { self.entries = entries }

    public init(dictionaryLiteral elements: (String, AMQPValue)...) {
        entries = elements.map { (key: $0.0, value: $0.1) }
    }

    /// The first value stored under `key`; setting replaces it in place or appends.
    public subscript(key: String) -> AMQPValue? {
        get { entries.first(where: { $0.key == key })?.value }
        set {
            if let index = entries.firstIndex(where: { $0.key == key }) {
                if let newValue { entries[index].value = newValue } else { entries.remove(at: index) }
            } else if let newValue {
                entries.append((key: key, value: newValue))
            }
        }
    }

    public var isEmpty: Bool { entries.isEmpty }

    public static func == (lhs: AMQPTable, rhs: AMQPTable) -> Bool {
        lhs.entries.count == rhs.entries.count
            && zip(lhs.entries, rhs.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}
