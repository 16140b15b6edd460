/// Settings of one ``HTTPClient``: its connection pool and its TLS trust.
public struct HTTPClientConfiguration: Sendable {
    /// Idle connections kept open for reuse (`CURLMOPT_MAXCONNECTS`). Keep it at least as
    /// large as the number of requests in flight, or connections are closed and reopened.
    /// Default 256.
    public var maximumIdleConnections: Int
    /// Connections to one host at a time (`CURLMOPT_MAX_HOST_CONNECTIONS`); 0, the default,
    /// means no limit, so every request in flight gets a connection at once.
    public var maximumConnectionsPerHost: Int
    /// Time allowed to establish a connection, TLS handshake included
    /// (`CURLOPT_CONNECTTIMEOUT_MS`). Default 5 s; a request's own timeout still bounds it.
    public var connectTimeout: Duration
    /// A PEM file of the certificate authorities to trust (`CURLOPT_CAINFO`); nil, the
    /// default, trusts the system's store. Peer and host-name verification are always on.
    public var certificateAuthorityFile: String?
    /// A larger response body fails the request with
    /// ``HTTPClientError/Code/responseTooLarge``. Default 8 MiB.
    public var maximumResponseBodySize: Int
    /// Sent as `User-Agent` on every request when not nil. Default nil (no header).
    public var userAgent: String?
    /// The idle time before TCP keep-alive probes start (`CURLOPT_TCP_KEEPIDLE`). Default 60 s.
    public var tcpKeepAliveIdle: Duration
    /// An HTTP proxy for every request, e.g. `http://proxy.internal:3128` (`CURLOPT_PROXY`).
    /// Nil, the default, means no proxy: `http_proxy` and friends in the environment are
    /// ignored, so a daemon's route never depends on its environment by accident.
    public var proxyURL: String?

    public init(
        maximumIdleConnections: Int = 256,
        maximumConnectionsPerHost: Int = 0,
        connectTimeout: Duration = .seconds(5),
        certificateAuthorityFile: String? = nil,
        maximumResponseBodySize: Int = 8 << 20,
        userAgent: String? = nil,
        tcpKeepAliveIdle: Duration = .seconds(60),
        proxyURL: String? = nil
    ) {
        self.maximumIdleConnections = maximumIdleConnections
        self.maximumConnectionsPerHost = maximumConnectionsPerHost
        self.connectTimeout = connectTimeout
        self.certificateAuthorityFile = certificateAuthorityFile
        self.maximumResponseBodySize = maximumResponseBodySize
        self.userAgent = userAgent
        self.tcpKeepAliveIdle = tcpKeepAliveIdle
        self.proxyURL = proxyURL
    }
}

extension Duration {
    /// Whole milliseconds, rounded up so that a positive duration never becomes 0
    /// (which libcurl reads as "no timeout"), and capped to what a C `long` holds.
    var roundedUpMilliseconds: Int {
        let (seconds, attoseconds) = components
        if seconds < 0 || (seconds == 0 && attoseconds <= 0) { return 0 }
        if seconds >= Int64(Int.max / 1000 - 1) { return Int.max }
        let milliseconds = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return Int(milliseconds)
    }
}
