/// Where and how to reach one broker node.
public struct AMQPEndpoint: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    /// Kept out of `description`.
    public var password: String
    public var virtualHost: String
    /// TLS settings; `nil` for plain `amqp://`.
    public var tls: AMQPTLSSettings?

    public init(
        host: String, port: Int, user: String, password: String, virtualHost: String,
        tls: AMQPTLSSettings? = nil
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.virtualHost = virtualHost
        self.tls = tls
    }

    /// The endpoint as a URL with the password left out, for logs.
    public var description: String {
        let scheme = tls == nil ? "amqp" : "amqps"
        let vhost = virtualHost == "/" ? "%2F" : virtualHost
        return "\(scheme)://\(user)@\(host):\(port)/\(vhost)"
    }
}

/// TLS for `amqps://`. Peer and hostname verification are always on; TLS 1.2 is the minimum.
public struct AMQPTLSSettings: Sendable {
    /// CA bundle used to verify the broker; the system bundle when `nil`.
    public var caFile: String?
    /// Client certificate and key, when the broker asks for one.
    public var certificateFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }
}

/// Connection-level options shared by the consuming and the publishing connection.
public struct AMQPConnectionOptions: Sendable {
    /// Heartbeat interval asked of the broker, in seconds (0 disables; not advised).
    public var heartbeatSeconds: Int = 30
    /// How long to wait for TCP, TLS and the AMQP handshake.
    public var connectTimeout: Duration = .seconds(10)
    /// How long to wait for the answer to a synchronous method (declare, qos, consume …).
    public var rpcTimeout: Duration = .seconds(30)
    /// Shown in the management UI.
    public var connectionName: String = "druid-sync"
    /// Our version, sent in the client properties.
    public var clientVersion: String = "0"

    public init() {}
}
