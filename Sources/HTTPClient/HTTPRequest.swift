/// The method of an HTTP request.
public struct HTTPMethod: Sendable, Hashable, CustomStringConvertible {
    /// The method token as sent on the request line, e.g. `POST`.
    public let rawValue: String

    public init(_ rawValue: String) { self.rawValue = rawValue }

    public static let get = HTTPMethod("GET")
    public static let head = HTTPMethod("HEAD")
    public static let post = HTTPMethod("POST")
    public static let put = HTTPMethod("PUT")
    public static let patch = HTTPMethod("PATCH")
    public static let delete = HTTPMethod("DELETE")

    public var description: String { rawValue }
}

/// One HTTP/1.1 request for ``HTTPClient/execute(_:)``.
///
/// The URL may carry secrets in its query string and the headers may carry credentials:
/// neither ever appears in an ``HTTPClientError``.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// An absolute `http://` or `https://` URL, already percent-encoded.
    public var url: String
    /// Header fields in the order they are sent. Names and values must not contain CR, LF
    /// or NUL; names must not contain spaces or `:`. An empty value is sent as an empty field.
    public var headers: [(name: String, value: String)]
    /// The request body; sent with `Content-Length` unless the method is GET (with an
    /// empty body) or HEAD.
    public var body: [UInt8]
    /// The whole exchange (connect, send, receive) must finish within this time, or the
    /// request fails with ``HTTPClientError/Code/timeout``.
    public var timeout: Duration

    public init(
        method: HTTPMethod = .get,
        url: String,
        headers: [(name: String, value: String)] = [],
        body: [UInt8] = [],
        timeout: Duration = .seconds(10)
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

/// The answer to an ``HTTPRequest``: any status, including 4xx and 5xx.
public struct HTTPResponse: Sendable {
    /// The status code of the final response, e.g. 200.
    public var status: Int
    public var body: [UInt8]
    /// The final response's header lines as received (`name: value\r\n` each), parsed only
    /// when asked: most callers read one or two fields, or none.
    private var headerBlock: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.body = body
        var block: [UInt8] = []
        for (name, value) in headers {
            block.append(contentsOf: name.utf8)
            block.append(contentsOf: ": ".utf8)
            block.append(contentsOf: value.utf8)
            block.append(contentsOf: "\r\n".utf8)
        }
        headerBlock = block
    }

    init(status: Int, headerBlock: [UInt8], body: [UInt8]) {
        self.status = status
        self.headerBlock = headerBlock
        self.body = body
    }

    /// The header fields in the order received, names lower-cased (ASCII) and values trimmed.
    public var headers: [(name: String, value: String)] {
        var fields: [(name: String, value: String)] = []
        forEachField { name, value in
            let lowered = String(decoding: name.lazy.map(HeaderName.lowercased), as: UTF8.self)
            fields.append((lowered, String(decoding: value, as: UTF8.self)))
            return true
        }
        return fields
    }

    /// The value of the first header field called `name` (compared without regard to ASCII
    /// case), or nil.
    public func header(_ name: String) -> String? {
        var found: String?
        let wanted = Array(name.utf8)
        forEachField { fieldName, value in
            guard fieldName.count == wanted.count else { return true }
            for (index, byte) in fieldName.enumerated()
            where HeaderName.lowercased(byte) != HeaderName.lowercased(wanted[index]) {
                return true
            }
            found = String(decoding: value, as: UTF8.self)
            return false
        }
        return found
    }

    /// Calls `body` with each field's name and trimmed value until it returns false.
    private func forEachField(_ body: (ArraySlice<UInt8>, ArraySlice<UInt8>) -> Bool) {
        var lineStart = headerBlock.startIndex
        while lineStart < headerBlock.endIndex {
            let lineEnd = headerBlock[lineStart...].firstIndex(of: 0x0A) ?? headerBlock.endIndex
            let line = headerBlock[lineStart..<lineEnd]
            lineStart = lineEnd + 1
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { continue }
            var value = line[(colon + 1)...]
            while let first = value.first, HeaderName.isWhitespace(first) { value = value.dropFirst() }
            while let last = value.last, HeaderName.isWhitespace(last) { value = value.dropLast() }
            if !body(line[..<colon], value) { return }
        }
    }
}

/// ASCII-only header-name helpers: header names are tokens, so Unicode case rules do not apply.
enum HeaderName {
    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    @inline(__always)
    static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }
}
