internal import CRabbitMQ

/// A failure talking to the broker. Its description names what failed and never
/// contains a password or message body.
public struct AMQPError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is; callers decide whether to reconnect on it.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// The TCP connection could not be opened or broke.
        public static let connectionFailed = Code(name: "connection-failed")
        /// The TLS handshake failed (unknown CA, hostname mismatch, expired certificate …).
        public static let tlsFailed = Code(name: "tls-failed")
        /// The broker refused the user name or password.
        public static let authenticationFailed = Code(name: "authentication-failed")
        /// The broker closed the connection (`connection.close`).
        public static let connectionClosed = Code(name: "connection-closed")
        /// The broker closed the channel (`channel.close`), e.g. a declaration did not match.
        public static let channelClosed = Code(name: "channel-closed")
        /// No frame arrived within two heartbeat intervals, or an RPC timed out.
        public static let timeout = Code(name: "timeout")
        /// A publish was refused by the broker (`basic.nack`) or could not be routed.
        public static let publishRefused = Code(name: "publish-refused")
        /// The object was closed by its owner.
        public static let closed = Code(name: "closed")
        /// Anything else the library reported.
        public static let protocolError = Code(name: "protocol-error")
    }

    public let code: Code
    /// What was being done, e.g. `declare queue druid-sync.user-updates`.
    public let context: String
    /// The library's or the broker's explanation.
    public let detail: String
    /// The AMQP reply code when the broker closed the channel or connection.
    public let replyCode: UInt16?

    public init(code: Code, context: String, detail: String, replyCode: UInt16? = nil) {
        self.code = code
        self.context = context
        self.detail = detail
        self.replyCode = replyCode
    }

    public var description: String {
        var text = "\(context): \(detail)"
        if let replyCode { text += " (AMQP \(replyCode))" }
        return text
    }

    /// Whether the connection is unusable after this error and must be rebuilt.
    public var isConnectionLost: Bool { code != .publishRefused }

    /// Turns a rabbitmq-c status code into an error.
    static func status(_ status: Int32, context: String) -> AMQPError {
        let detail = String(cString: amqp_error_string2(status))
        let code: Code
        switch status {
        case AMQP_STATUS_TIMEOUT.rawValue, AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue:
            code = .timeout
        case AMQP_STATUS_SSL_ERROR.rawValue, AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue,
            AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue, AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue:
            code = .tlsFailed
        case AMQP_STATUS_CONNECTION_CLOSED.rawValue:
            code = .connectionClosed
        case AMQP_STATUS_SOCKET_ERROR.rawValue, AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED.rawValue,
            AMQP_STATUS_SOCKET_CLOSED.rawValue, AMQP_STATUS_TCP_ERROR.rawValue:
            code = .connectionFailed
        default:
            code = .protocolError
        }
        return AMQPError(code: code, context: context, detail: detail)
    }
}
