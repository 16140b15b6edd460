/// Why a body could not be read as JSON, with the byte offset where reading stopped.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The family of the problem; the event decoder turns it into its reason.
    public enum Kind: Sendable, Equatable {
        /// The bytes are not well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates).
        case invalidUTF8
        /// The text is UTF-8 but not JSON as RFC 8259 defines it.
        case invalidSyntax
        /// Arrays and objects are nested deeper than the parser allows.
        case nestingTooDeep
    }

    public let kind: Kind
    /// Offset, in bytes from the start of the body, of the byte that could not be accepted.
    public let offset: Int
    /// What was wrong there, e.g. `unexpected character '}'`. Never quotes more than one byte
    /// of the input, so it cannot leak a password from the body.
    public let detail: String

    public init(kind: Kind, offset: Int, detail: String) {
        self.kind = kind
        self.offset = offset
        self.detail = detail
    }

    public var description: String {
        switch kind {
        case .invalidUTF8: "not UTF-8 (\(detail) at byte \(offset))"
        case .invalidSyntax: "not JSON (\(detail) at byte \(offset))"
        case .nestingTooDeep: "not JSON (\(detail) at byte \(offset))"
        }
    }
}

/// A strict RFC 8259 parser producing order-preserving `JSONValue`s.
///
/// Strict means: one value with optional whitespace around it, no byte order mark, no
/// comments, no trailing commas, no leading zeros or `+` in numbers, no control characters
/// in strings, no lone surrogate escapes, and UTF-8 validated byte by byte.
/// Nesting deeper than `maximumDepth` arrays and objects is refused, which bounds the
/// parser's recursion on hostile input.
public enum JSONParser {
    /// The nesting limit used unless the caller picks another.
    public static let defaultMaximumDepth = 64

    /// Parses `bytes` as one JSON text.
    /// - Throws: `JSONParseError` naming the first problem and its byte offset.
    public static func parse(
        _ bytes: [UInt8], maximumDepth: Int = defaultMaximumDepth
    ) throws(JSONParseError)
        -> JSONValue
    {
        let result: Result<JSONValue, JSONParseError> = bytes.withUnsafeBytes { buffer in
            parseResult(buffer, maximumDepth: maximumDepth)
        }
        return try result.get()
    }

    /// Parses the bytes of `buffer` as one JSON text; the buffer is only read during the call.
    /// - Throws: `JSONParseError` naming the first problem and its byte offset.
    public static func parse(
        _ buffer: UnsafeRawBufferPointer, maximumDepth: Int = defaultMaximumDepth
    )
        throws(JSONParseError) -> JSONValue
    {
        try parseResult(buffer, maximumDepth: maximumDepth).get()
    }

    static func parseResult(_ buffer: UnsafeRawBufferPointer, maximumDepth: Int) -> Result<JSONValue, JSONParseError> {
        let bytes = buffer.bindMemory(to: UInt8.self)
        var reader = JSONReader(bytes: bytes, maximumDepth: maximumDepth)
        do throws(JSONParseError) {
            return .success(try reader.parseDocument())
        } catch {
            return .failure(error)
        }
    }
}

/// The cursor of one parse. Reads through a buffer pointer so the hot loops do no bounds
/// or copy-on-write checks beyond the explicit `index < count` tests.
private struct JSONReader {
    let bytes: UnsafeBufferPointer<UInt8>
    let maximumDepth: Int
    var index = 0

    init(bytes: UnsafeBufferPointer<UInt8>, maximumDepth: Int) {
        self.bytes = bytes
        self.maximumDepth = maximumDepth
    }

    mutating func parseDocument() throws(JSONParseError) -> JSONValue {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF {
            throw syntaxError("byte order mark", at: 0)
        }
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if index < bytes.count {
            throw unexpectedByte(context: "after the JSON value")
        }
        return value
    }

    // MARK: Values

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard index < bytes.count else { throw syntaxError("unexpected end of input", at: index) }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try parseNumber())
        default:
            throw unexpectedByte(context: "where a value was expected")
        }
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maximumDepth {
            throw JSONParseError(kind: .nestingTooDeep, offset: index, detail: "nesting deeper than \(maximumDepth)")
        }
        index += 1  // "{"
        var members: [(key: String, value: JSONValue)] = []
        members.reserveCapacity(8)  // saves the 1 → 2 → 4 → 8 regrowths of typical event objects
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return .object(members)
        }
        while true {
            guard index < bytes.count else { throw syntaxError("unterminated object", at: index) }
            guard bytes[index] == UInt8(ascii: "\"") else {
                throw unexpectedByte(context: "where a member name was expected")
            }
            let key = try parseString()
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                throw index < bytes.count
                    ? unexpectedByte(context: "where ':' was expected")
                    : syntaxError("unterminated object", at: index)
            }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            members.append((key: key, value: value))
            skipWhitespace()
            guard index < bytes.count else { throw syntaxError("unterminated object", at: index) }
            switch bytes[index] {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "}"):
                index += 1
                return .object(members)
            default:
                throw unexpectedByte(context: "where ',' or '}' was expected")
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        if depth > maximumDepth {
            throw JSONParseError(kind: .nestingTooDeep, offset: index, detail: "nesting deeper than \(maximumDepth)")
        }
        index += 1  // "["
        var elements: [JSONValue] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(elements)
        }
        while true {
            elements.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw syntaxError("unterminated array", at: index) }
            switch bytes[index] {
            case UInt8(ascii: ","):
                index += 1
                skipWhitespace()
            case UInt8(ascii: "]"):
                index += 1
                return .array(elements)
            default:
                throw unexpectedByte(context: "where ',' or ']' was expected")
            }
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        let text = literal.utf8Start
        for offset in 0..<count {
            guard index + offset < bytes.count else { throw syntaxError("unexpected end of input", at: index + offset) }
            if bytes[index + offset] != text[offset] {
                index += offset
                throw unexpectedByte(context: "in a literal")
            }
        }
        index += count
    }

    /// Reads a number, checking RFC 8259's grammar, and returns its text unchanged.
    mutating func parseNumber() throws(JSONParseError) -> String {
        let start = index
        if bytes[index] == UInt8(ascii: "-") { index += 1 }
        guard index < bytes.count else { throw syntaxError("unexpected end of input in a number", at: index) }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, isDigit(bytes[index]) {
                throw syntaxError("leading zero in a number", at: index - 1)
            }
        } else if isDigit(bytes[index]) {
            skipDigits()
        } else {
            throw unexpectedByte(context: "in a number")
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            index += 1
            try requireDigits()
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                index += 1
            }
            try requireDigits()
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    mutating func requireDigits() throws(JSONParseError) {
        guard index < bytes.count else { throw syntaxError("unexpected end of input in a number", at: index) }
        guard isDigit(bytes[index]) else { throw unexpectedByte(context: "in a number") }
        skipDigits()
    }

    mutating func skipDigits() {
        while index < bytes.count, isDigit(bytes[index]) { index += 1 }
    }

    // MARK: Strings

    /// Reads a string starting at its opening quote. Strings without escapes (nearly all
    /// of them) are copied straight from the buffer; escapes switch to a byte accumulator.
    mutating func parseString() throws(JSONParseError) -> String {
        let openingQuote = index
        index += 1
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return text
            } else if byte == UInt8(ascii: "\\") {
                return try parseEscapedString(from: start)
            } else if byte < 0x20 {
                throw syntaxError("control character in a string", at: index)
            } else if byte < 0x80 {
                index += 1
            } else {
                index += try validatedSequenceLength()
            }
        }
        throw syntaxError("unterminated string", at: openingQuote)
    }

    mutating func parseEscapedString(from start: Int) throws(JSONParseError) -> String {
        var utf8: [UInt8] = []
        utf8.reserveCapacity(index - start + 16)
        utf8.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: utf8, as: UTF8.self)
            } else if byte == UInt8(ascii: "\\") {
                try appendEscape(to: &utf8)
            } else if byte < 0x20 {
                throw syntaxError("control character in a string", at: index)
            } else if byte < 0x80 {
                utf8.append(byte)
                index += 1
            } else {
                let length = try validatedSequenceLength()
                utf8.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<index + length]))
                index += length
            }
        }
        throw syntaxError("unterminated string", at: start - 1)
    }

    mutating func appendEscape(to utf8: inout [UInt8]) throws(JSONParseError) {
        let escapeStart = index
        index += 1  // backslash
        guard index < bytes.count else { throw syntaxError("unterminated string", at: escapeStart) }
        let letter = bytes[index]
        index += 1
        switch letter {
        case UInt8(ascii: "\""): utf8.append(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): utf8.append(UInt8(ascii: "\\"))
        case UInt8(ascii: "/"): utf8.append(UInt8(ascii: "/"))
        case UInt8(ascii: "b"): utf8.append(0x08)
        case UInt8(ascii: "f"): utf8.append(0x0C)
        case UInt8(ascii: "n"): utf8.append(0x0A)
        case UInt8(ascii: "r"): utf8.append(0x0D)
        case UInt8(ascii: "t"): utf8.append(0x09)
        case UInt8(ascii: "u"):
            let unit = try readHexQuad()
            var scalarValue = UInt32(unit)
            if (0xD800...0xDBFF).contains(unit) {
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                else { throw syntaxError("lone surrogate escape", at: escapeStart) }
                index += 2
                let low = try readHexQuad()
                guard (0xDC00...0xDFFF).contains(low) else {
                    throw syntaxError("lone surrogate escape", at: escapeStart)
                }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(unit) {
                throw syntaxError("lone surrogate escape", at: escapeStart)
            }
            // Every value left is a valid scalar: surrogates were combined or refused above.
            appendUTF8(of: scalarValue, to: &utf8)
        default:
            throw syntaxError("invalid escape", at: escapeStart)
        }
    }

    mutating func readHexQuad() throws(JSONParseError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            guard index < bytes.count else { throw syntaxError("unterminated string", at: index) }
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw syntaxError("invalid \\u escape", at: index)
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }

    func appendUTF8(of scalar: UInt32, to utf8: inout [UInt8]) {
        switch scalar {
        case 0..<0x80:
            utf8.append(UInt8(scalar))
        case 0x80..<0x800:
            utf8.append(UInt8(0xC0 | scalar >> 6))
            utf8.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            utf8.append(UInt8(0xE0 | scalar >> 12))
            utf8.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            utf8.append(UInt8(0x80 | scalar & 0x3F))
        default:
            utf8.append(UInt8(0xF0 | scalar >> 18))
            utf8.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            utf8.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            utf8.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// The length of the well-formed multi-byte UTF-8 sequence at `index` (RFC 3629 table 2).
    func validatedSequenceLength() throws(JSONParseError) -> Int {
        let length = UTF8Validation.sequenceLength(in: bytes, at: index)
        if length == 0 { throw JSONParseError(kind: .invalidUTF8, offset: index, detail: "invalid byte") }
        return length
    }

    // MARK: Helpers

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }

    func syntaxError(_ detail: String, at offset: Int) -> JSONParseError {
        JSONParseError(kind: .invalidSyntax, offset: offset, detail: detail)
    }

    /// The error for the byte at `index`: not UTF-8 if it starts no well-formed sequence,
    /// else an unexpected character (shown only when it is printable ASCII).
    func unexpectedByte(context: String) -> JSONParseError {
        guard index < bytes.count else { return syntaxError("unexpected end of input", at: index) }
        let byte = bytes[index]
        if byte >= 0x80 {
            if UTF8Validation.sequenceLength(in: bytes, at: index) == 0 {
                return JSONParseError(kind: .invalidUTF8, offset: index, detail: "invalid byte")
            }
            return syntaxError("unexpected non-ASCII character \(context)", at: index)
        }
        if byte >= 0x20 && byte < 0x7F {
            return syntaxError("unexpected character '\(Character(Unicode.Scalar(byte)))' \(context)", at: index)
        }
        return syntaxError("unexpected control character \(context)", at: index)
    }
}

/// Byte-level UTF-8 well-formedness, shared by the parser and its tests.
enum UTF8Validation {
    /// The length (2…4) of the well-formed sequence starting with the non-ASCII byte at
    /// `index`, or 0 when it is not one: RFC 3629 refuses overlong forms, UTF-16
    /// surrogates (U+D800…U+DFFF) and anything above U+10FFFF.
    static func sequenceLength(in bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> Int {
        let lead = bytes[index]
        let remaining = bytes.count - index
        func continuation(_ offset: Int, _ range: ClosedRange<UInt8> = 0x80...0xBF) -> Bool {
            offset < remaining && range.contains(bytes[index + offset])
        }
        switch lead {
        case 0xC2...0xDF:
            return continuation(1) ? 2 : 0
        case 0xE0:
            return continuation(1, 0xA0...0xBF) && continuation(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF:
            return continuation(1) && continuation(2) ? 3 : 0
        case 0xED:
            return continuation(1, 0x80...0x9F) && continuation(2) ? 3 : 0
        case 0xF0:
            return continuation(1, 0x90...0xBF) && continuation(2) && continuation(3) ? 4 : 0
        case 0xF1...0xF3:
            return continuation(1) && continuation(2) && continuation(3) ? 4 : 0
        case 0xF4:
            return continuation(1, 0x80...0x8F) && continuation(2) && continuation(3) ? 4 : 0
        default:
            return 0
        }
    }
}
