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
    /// or NUL; names must not contain `:`. An empty value is sent as an empty field.
    public var headers: [(name: String, value: String)]
    /// The request body; sent with `Content-Length` when not empty, or when the method is
    /// neither GET nor HEAD.
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
    /// The header fields of the final response in the order received, names lower-cased
    /// (ASCII) and values trimmed.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The value of the first header field called `name` (compared without regard to ASCII
    /// case), or nil.
    public func header(_ name: String) -> String? {
        let wanted = HeaderName.lowercased(name)
        for field in headers where HeaderName.lowercased(field.name) == wanted {
            return field.value
        }
        return nil
    }
}

/// ASCII-only header-name helpers: header names are tokens, so Unicode case rules do not apply.
enum HeaderName {
    static func lowercased(_ name: String) -> String {
        var needsChange = false
        for byte in name.utf8 where byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") {
            needsChange = true
            break
        }
        guard needsChange else { return name }
        return String(decoding: name.utf8.map(lowercased), as: UTF8.self)
    }

    @inline(__always)
    static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }
}
