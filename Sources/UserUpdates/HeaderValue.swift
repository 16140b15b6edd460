/// A value of an AMQP 0-9-1 field table (message headers, queue arguments), as RabbitMQ
/// defines the field types. The `AMQP` module converts it to and from rabbitmq-c's
/// `amqp_field_value_t`; having every type here lets a retry or dead-letter copy carry the
/// producer's headers unchanged.
public enum HeaderValue: Sendable {
    /// `t`
    case bool(Bool)
    /// `b`
    case int8(Int8)
    /// `B`
    case uint8(UInt8)
    /// `s` (RabbitMQ's reading)
    case int16(Int16)
    /// `u`
    case uint16(UInt16)
    /// `I`
    case int32(Int32)
    /// `i`
    case uint32(UInt32)
    /// `l`: druid-sync writes its own numbers with this type.
    case int64(Int64)
    /// `L` (rabbitmq-c only)
    case uint64(UInt64)
    /// `f`
    case float(Float)
    /// `d`
    case double(Double)
    /// `D`: `value` × 10^-`scale`.
    case decimal(scale: UInt8, value: UInt32)
    /// `S`, a long string holding UTF-8 text.
    case string(String)
    /// `x`, or an `S` long string whose bytes are not UTF-8 text.
    case bytes([UInt8])
    /// `T`: seconds since 1970-01-01 UTC.
    case timestamp(UInt64)
    /// `A`
    case array([HeaderValue])
    /// `F`: a nested table, entries in order.
    case table([(String, HeaderValue)])
    /// `V`
    case void

    /// The value as a whole number, when it is an integer of any width that fits in `Int`,
    /// or a string of decimal digits that does. Used to read counters other clients may have
    /// written with a different type.
    public var integerValue: Int? {
        switch self {
        case .int8(let number): Int(exactly: number)
        case .uint8(let number): Int(exactly: number)
        case .int16(let number): Int(exactly: number)
        case .uint16(let number): Int(exactly: number)
        case .int32(let number): Int(exactly: number)
        case .uint32(let number): Int(exactly: number)
        case .int64(let number): Int(exactly: number)
        case .uint64(let number): Int(exactly: number)
        case .string(let text):
            !text.isEmpty && text.utf8.allSatisfy(FieldSyntax.isDigit) ? Int(text) : nil
        default: nil
        }
    }

    /// The text, when this is a string.
    public var stringValue: String? {
        if case .string(let text) = self { return text }
        return nil
    }
}

extension HeaderValue: Equatable {
    public static func == (lhs: HeaderValue, rhs: HeaderValue) -> Bool {
        switch (lhs, rhs) {
        case (.bool(let a), .bool(let b)): a == b
        case (.int8(let a), .int8(let b)): a == b
        case (.uint8(let a), .uint8(let b)): a == b
        case (.int16(let a), .int16(let b)): a == b
        case (.uint16(let a), .uint16(let b)): a == b
        case (.int32(let a), .int32(let b)): a == b
        case (.uint32(let a), .uint32(let b)): a == b
        case (.int64(let a), .int64(let b)): a == b
        case (.uint64(let a), .uint64(let b)): a == b
        case (.float(let a), .float(let b)): a == b
        case (.double(let a), .double(let b)): a == b
        case (.decimal(let scaleA, let valueA), .decimal(let scaleB, let valueB)): scaleA == scaleB && valueA == valueB
        case (.string(let a), .string(let b)): a == b
        case (.bytes(let a), .bytes(let b)): a == b
        case (.timestamp(let a), .timestamp(let b)): a == b
        case (.array(let a), .array(let b)): a == b
        case (.table(let a), .table(let b)): HeaderTable.equal(a, b)
        case (.void, .void): true
        default: false
        }
    }
}

/// Helpers for AMQP tables held as ordered `[(String, HeaderValue)]` lists.
public enum HeaderTable {
    /// Whether two tables hold the same entries in the same order.
    public static func equal(_ lhs: [(String, HeaderValue)], _ rhs: [(String, HeaderValue)]) -> Bool {
        lhs.count == rhs.count && zip(lhs, rhs).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    /// The value of the first entry named `name`.
    public static func value(_ name: String, in table: [(String, HeaderValue)]) -> HeaderValue? {
        table.first { $0.0 == name }?.1
    }
}
