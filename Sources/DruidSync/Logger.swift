import Locking
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How much the daemon says. Ordered from most to least verbose.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    case trace, debug, info, notice, warning, error

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .trace: "trace"
        case .debug: "debug"
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        }
    }

    /// The syslog priority journald reads from a `<N>` line prefix.
    var syslogPriority: Int {
        switch self {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        }
    }
}

/// The shape of each log line.
public enum LogFormat: String, Sendable {
    /// `key=value` pairs, values quoted when they need it.
    case logfmt
    /// One JSON object a line.
    case json
}

/// A value in a log line. Only what is safe to print goes in: never a `Secret`,
/// never an event body.
public enum LogValue: Sendable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    case string(String)
    case integer(Int)
    case double(Double)
    case bool(Bool)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
}

/// Writes one line per event to a file descriptor (stderr by default), whole lines only.
///
/// Safe from any thread: each line is built in a local buffer and written with a single
/// `write` under a lock, so lines from different threads never interleave.
public final class Logger: Sendable {
    public let level: LogLevel
    public let format: LogFormat
    private let descriptor: Int32
    /// When stderr is the journal, each line starts with `<priority>` so
    /// `journalctl -p warning` works.
    private let isJournal: Bool
    /// Counts the lines written; the count itself is only there to give the lock a value
    /// (a lock around an empty value confuses ThreadSanitizer's access tracking).
    private let lock = Locked(0)

    public init(level: LogLevel, format: LogFormat, descriptor: Int32 = 2, isJournal: Bool = false) {
        self.level = level
        self.format = format
        self.descriptor = descriptor
        self.isJournal = isJournal
    }

    public func isEnabled(_ level: LogLevel) -> Bool { level >= self.level }

    public func trace(_ message: String, _ fields: [(String, LogValue)] = []) { log(.trace, message, fields) }
    public func debug(_ message: String, _ fields: [(String, LogValue)] = []) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, LogValue)] = []) { log(.info, message, fields) }
    public func notice(_ message: String, _ fields: [(String, LogValue)] = []) { log(.notice, message, fields) }
    public func warning(_ message: String, _ fields: [(String, LogValue)] = []) { log(.warning, message, fields) }
    public func error(_ message: String, _ fields: [(String, LogValue)] = []) { log(.error, message, fields) }

    public func log(_ level: LogLevel, _ message: String, _ fields: [(String, LogValue)]) {
        guard level >= self.level else { return }
        var line: [UInt8] = []
        line.reserveCapacity(256)
        if isJournal {
            line.append(UInt8(ascii: "<"))
            line.append(contentsOf: String(level.syslogPriority).utf8)
            line.append(UInt8(ascii: ">"))
        }
        let time = Self.timestamp()
        switch format {
        case .logfmt:
            appendLogfmt(&line, key: "time", .string(time))
            line.append(UInt8(ascii: " "))
            appendLogfmt(&line, key: "level", .string(level.description))
            line.append(UInt8(ascii: " "))
            appendLogfmt(&line, key: "msg", .string(message))
            for (key, value) in fields {
                line.append(UInt8(ascii: " "))
                appendLogfmt(&line, key: key, value)
            }
        case .json:
            line.append(UInt8(ascii: "{"))
            appendJSON(&line, key: "time", .string(time), first: true)
            appendJSON(&line, key: "level", .string(level.description))
            appendJSON(&line, key: "msg", .string(message))
            for (key, value) in fields { appendJSON(&line, key: key, value) }
            line.append(UInt8(ascii: "}"))
        }
        line.append(UInt8(ascii: "\n"))
        lock.withLock { linesWritten in
            line.withUnsafeBytes { writeFully($0, to: descriptor) }
            linesWritten &+= 1
        }
    }

    private func text(_ value: LogValue) -> String {
        switch value {
        case .string(let s): s
        case .integer(let i): String(i)
        case .double(let d): Self.formatDouble(d)
        case .bool(let b): b ? "true" : "false"
        }
    }

    static func formatDouble(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let scaled = (value * 1000).rounded() / 1000
        return String(scaled)
    }

    private func appendLogfmt(_ line: inout [UInt8], key: String, _ value: LogValue) {
        line.append(contentsOf: key.utf8)
        line.append(UInt8(ascii: "="))
        let value = text(value)
        let needsQuotes = value.isEmpty || value.utf8.contains { $0 <= 0x20 || $0 == 0x22 || $0 == 0x3D || $0 == 0x5C }
        guard needsQuotes else {
            line.append(contentsOf: value.utf8)
            return
        }
        line.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case 0x22: line.append(contentsOf: [0x5C, 0x22])
            case 0x5C: line.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: line.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: line.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: line.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20: line.append(UInt8(ascii: " "))
            default: line.append(byte)
            }
        }
        line.append(UInt8(ascii: "\""))
    }

    private func appendJSON(_ line: inout [UInt8], key: String, _ value: LogValue, first: Bool = false) {
        if !first { line.append(UInt8(ascii: ",")) }
        Self.appendJSONString(&line, key)
        line.append(UInt8(ascii: ":"))
        switch value {
        case .string(let s): Self.appendJSONString(&line, s)
        case .integer(let i): line.append(contentsOf: String(i).utf8)
        case .double(let d): line.append(contentsOf: Self.formatDouble(d).utf8)
        case .bool(let b): line.append(contentsOf: (b ? "true" : "false").utf8)
        }
    }

    static func appendJSONString(_ line: inout [UInt8], _ value: String) {
        let hex = Array("0123456789abcdef".utf8)
        line.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case 0x22: line.append(contentsOf: [0x5C, 0x22])
            case 0x5C: line.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: line.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: line.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: line.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0..<0x20:
                line.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 15)]])
            default: line.append(byte)
            }
        }
        line.append(UInt8(ascii: "\""))
    }

    /// RFC 3339 UTC with milliseconds, without Foundation's formatters (they are slow).
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return rfc3339(seconds: now.tv_sec, milliseconds: Int(now.tv_nsec / 1_000_000))
    }

    static func rfc3339(seconds: Int, milliseconds: Int?) -> String {
        var time = seconds
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        var text = "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
        text += "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
        if let milliseconds {
            text +=
                milliseconds < 10 ? ".00\(milliseconds)" : milliseconds < 100 ? ".0\(milliseconds)" : ".\(milliseconds)"
        }
        return text + "Z"
    }
}

/// Writes every byte of `buffer` to `descriptor`, retrying short writes and EINTR; gives up
/// silently on any other error (there is nowhere left to report it).
func writeFully(_ buffer: UnsafeRawBufferPointer, to descriptor: Int32) {
    var offset = 0
    while offset < buffer.count {
        let written = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
        if written < 0 {
            if errno == EINTR { continue }
            return
        }
        offset += written
    }
}
