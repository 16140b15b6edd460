/// Why an HTTP request got no response.
///
/// Its `description` is safe to log: it never contains the request's query string, its
/// headers or its body. Text that libcurl wrote is kept only up to the first `?`.
public struct HTTPClientError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure; switch on it to decide whether to retry.
    public enum Code: Sendable, Hashable {
        /// The request's timeout elapsed (while connecting, sending or receiving).
        case timeout
        /// No connection could be made: refused, unreachable, or the host name did not resolve.
        case couldNotConnect
        /// The connection broke while the request was being sent or the response received,
        /// or the server closed it without answering.
        case connectionReset
        /// The TLS handshake failed; the text says why (e.g. the certificate problem).
        case tls(String)
        /// The URL is malformed or not `http`/`https`.
        case invalidURL
        /// A header name or value is not allowed (CR, LF, NUL, or `:` in a name).
        case invalidRequest
        /// The response body was larger than the configured maximum.
        case responseTooLarge
        /// The calling task was cancelled before the response arrived.
        case cancelled
        /// The client was shut down before the response arrived.
        case shutdown
        /// Any other libcurl failure, with its `CURLcode`.
        case other(Int)
    }

    public let code: Code
    /// What went wrong, without the URL's query string, headers or bodies.
    public let detail: String

    public init(code: Code, detail: String) {
        self.code = code
        self.detail = detail
    }

    public var description: String {
        let kind: String
        switch code {
        case .timeout: kind = "timeout"
        case .couldNotConnect: kind = "could not connect"
        case .connectionReset: kind = "connection reset"
        case .tls: kind = "TLS failure"
        case .invalidURL: kind = "invalid URL"
        case .invalidRequest: kind = "invalid request"
        case .responseTooLarge: kind = "response too large"
        case .cancelled: kind = "cancelled"
        case .shutdown: kind = "HTTP client shut down"
        case .other(let curlCode): kind = "libcurl error \(curlCode)"
        }
        return detail.isEmpty ? kind : "\(kind): \(detail)"
    }

    /// Makes text from libcurl fit for a log line: cut at the first `?` (so no query string
    /// survives even if the text quoted the URL), control characters dropped, at most 240
    /// characters.
    static func sanitized(_ text: some StringProtocol) -> String {
        var kept: [UInt8] = []
        kept.reserveCapacity(min(text.utf8.count, 240))
        for byte in text.utf8 {
            if byte == UInt8(ascii: "?") || kept.count >= 240 { break }
            if byte < 0x20 || byte == 0x7F { continue }
            kept.append(byte)
        }
        while let last = kept.last, last == UInt8(ascii: " ") { kept.removeLast() }
        return String(decoding: kept, as: UTF8.self)
    }
}
