internal import CRabbitMQ

#if canImport(Glibc)
    import Glibc
#endif

/// Something the broker sent that is not the answer to a call we made.
public enum AMQPEvent: Sendable {
    case delivery(Delivery)
    /// Publisher confirm: the broker took responsibility for `sequence` (and all before it when `multiple`).
    case confirmed(sequence: UInt64, multiple: Bool)
    /// Publisher confirm: the broker could not take the message(s).
    case refused(sequence: UInt64, multiple: Bool)
    /// A mandatory publish could not be routed; `properties` identify which one.
    case returned(replyText: String, properties: MessageProperties)
    /// The broker cancelled our consumer (queue deleted, consumer timeout, node down).
    case consumerCancelled(consumerTag: String)
    /// The broker raised a resource alarm and blocks connections that publish.
    case blocked(reason: String)
    case unblocked
}

/// One AMQP 0-9-1 connection with one channel (number 1), over rabbitmq-c.
///
/// Not thread-safe, like the library under it: one thread owns it for its whole life.
/// Every method throws `AMQPError`; after an error whose `isConnectionLost` is true the
/// connection is dead: close it and open a new one.
public final class AMQPConnection {
    private let state: amqp_connection_state_t
    private var isOpen = false
    /// Bumped by the owner on each new connection; stamped on every delivery.
    public let generation: UInt64
    public let endpoint: AMQPEndpoint
    private let channel: amqp_channel_t = 1
    /// Publish sequence numbers, counted from 1 once confirms are on.
    public private(set) var nextPublishSequence: UInt64 = 0

    /// Opens TCP (or TLS), logs in and opens channel 1.
    ///
    /// Wraps `amqp_socket_open_noblock`, `amqp_login_with_properties`, `amqp_channel_open`.
    public init(endpoint: AMQPEndpoint, options: AMQPConnectionOptions, generation: UInt64 = 0) throws(AMQPError) {
        guard let state = amqp_new_connection() else {
            throw AMQPError(code: .protocolError, context: "connect", detail: "out of memory")
        }
        self.state = state
        self.endpoint = endpoint
        self.generation = generation
        // From here on every property is set, so a throw runs deinit, which destroys `state`.
        let where_ = "connect to \(endpoint.host):\(endpoint.port)"

        var handshake = timeval(options.connectTimeout)
        var rpc = timeval(options.rpcTimeout)
        amqp_set_handshake_timeout(state, &handshake)
        amqp_set_rpc_timeout(state, &rpc)

        let socket: OpaquePointer?
        if let tls = endpoint.tls {
            socket = amqp_ssl_socket_new(state)
            guard let socket else {
                throw AMQPError(code: .tlsFailed, context: where_, detail: "could not create a TLS socket")
            }
            let caFile = tls.caFile ?? "/etc/ssl/certs/ca-certificates.crt"
            if amqp_ssl_socket_set_cacert(socket, caFile) != AMQP_STATUS_OK.rawValue {
                throw AMQPError(code: .tlsFailed, context: where_, detail: "cannot read the CA file \(caFile)")
            }
            if let cert = tls.certificateFile, let key = tls.keyFile {
                if amqp_ssl_socket_set_key(socket, cert, key) != AMQP_STATUS_OK.rawValue {
                    throw AMQPError(
                        code: .tlsFailed, context: where_,
                        detail: "cannot load the client certificate \(cert) with its key file")
                }
            }
            amqp_ssl_socket_set_verify_peer(socket, 1)
            amqp_ssl_socket_set_verify_hostname(socket, 1)
            _ = amqp_ssl_socket_set_ssl_versions(socket, AMQP_TLSv1_2, AMQP_TLSvLATEST)
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else {
            throw AMQPError(code: .connectionFailed, context: where_, detail: "could not create a socket")
        }

        var connectTimeout = timeval(options.connectTimeout)
        let status = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &connectTimeout)
        if status != AMQP_STATUS_OK.rawValue {
            var error = AMQPError.status(status, context: where_)
            if error.code == .tlsFailed {
                error = AMQPError(
                    code: .tlsFailed, context: where_,
                    detail: Self.describeTLSFailure(status: status) + " (" + error.detail + ")")
            }
            throw error
        }
        Self.tuneSocket(amqp_get_sockfd(state), heartbeatSeconds: options.heartbeatSeconds)

        let arena = CArena()
        let capabilities: AMQPTable = [
            "publisher_confirms": .bool(true),
            "consumer_cancel_notify": .bool(true),
            "connection.blocked": .bool(true),
            "basic.nack": .bool(true),
            "authentication_failure_close": .bool(true),
            "exchange_exchange_bindings": .bool(true),
        ]
        let properties: AMQPTable = [
            "product": .string("druid-sync"),
            "version": .string(options.clientVersion),
            "platform": .string("Swift"),
            "connection_name": .string(options.connectionName),
            "capabilities": .table(capabilities),
        ]
        let propertiesPointer = arena.tablePointer(properties)
        let login = druid_amqp_login_plain(
            state, endpoint.virtualHost, 0, 131_072, Int32(options.heartbeatSeconds), propertiesPointer,
            endpoint.user, endpoint.password)
        if login.reply_type != AMQP_RESPONSE_NORMAL {
            let error = Self.replyError(login, state: state, context: "log in to \(endpoint.description)")
            if error.replyCode == 403 || error.code == .connectionClosed || error.code == .connectionFailed {
                throw AMQPError(
                    code: .authenticationFailed, context: "log in to \(endpoint.description)",
                    detail: "the broker refused the login: check the user, password and virtual host",
                    replyCode: error.replyCode)
            }
            throw error
        }
        isOpen = true
        _ = amqp_channel_open(state, channel)
        try check(amqp_get_rpc_reply(state), "open channel")
    }

    deinit {
        if isOpen {
            _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
        }
        amqp_destroy_connection(state)
    }

    /// Closes the channel and the connection politely; errors are ignored (we are leaving).
    public func close() {
        guard isOpen else { return }
        isOpen = false
        _ = amqp_channel_close(state, channel, AMQP_REPLY_SUCCESS)
        _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
    }

    /// The socket, for `poll`. Readable means `nextEvent` has something to read.
    public var socketDescriptor: Int32 { amqp_get_sockfd(state) }

    /// Whether frames are already buffered, so `poll` on the socket would miss them.
    public var hasBufferedInput: Bool {
        amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0
    }

    /// The broker's product and version, from its server properties.
    public var serverDescription: String {
        guard let table = amqp_get_server_properties(state) else { return "unknown" }
        let properties = CValues.table(table.pointee)
        let product = properties["product"]?.stringValue ?? "broker"
        let version = properties["version"]?.stringValue ?? "?"
        return "\(product) \(version)"
    }

    /// The version of rabbitmq-c this program runs with.
    public static var libraryVersion: String { String(cString: amqp_version()) }

    // MARK: Declarations

    /// Declares an exchange. Wraps `amqp_exchange_declare`.
    public func declareExchange(
        name: String, type: String, durable: Bool = true, arguments: AMQPTable = [:]
    )
        throws(AMQPError)
    {
        let arena = CArena()
        _ = amqp_exchange_declare(
            state, channel, arena.bytes(name), arena.bytes(type), 0, durable ? 1 : 0, 0, 0,
            arena.table(arguments))
        try check(amqp_get_rpc_reply(state), "declare exchange \(name)")
    }

    /// Declares a queue, or checks it exists when `passive`. Returns its message and consumer counts.
    /// Wraps `amqp_queue_declare`.
    @discardableResult
    public func declareQueue(
        name: String, durable: Bool = true, passive: Bool = false, arguments: AMQPTable = [:]
    )
        throws(AMQPError) -> (messageCount: UInt32, consumerCount: UInt32)
    {
        let arena = CArena()
        let ok = amqp_queue_declare(
            state, channel, arena.bytes(name), passive ? 1 : 0, durable ? 1 : 0, 0, 0, arena.table(arguments))
        try check(amqp_get_rpc_reply(state), passive ? "check queue \(name)" : "declare queue \(name)")
        guard let ok else { return (0, 0) }
        return (ok.pointee.message_count, ok.pointee.consumer_count)
    }

    /// Binds a queue to an exchange. Wraps `amqp_queue_bind`.
    public func bindQueue(_ queue: String, exchange: String, routingKey: String) throws(AMQPError) {
        let arena = CArena()
        _ = amqp_queue_bind(
            state, channel, arena.bytes(queue), arena.bytes(exchange), arena.bytes(routingKey), amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "bind queue \(queue) to \(exchange)")
    }

    /// Deletes a queue (tests and tools). Wraps `amqp_queue_delete`.
    public func deleteQueue(_ queue: String) throws(AMQPError) {
        let arena = CArena()
        _ = amqp_queue_delete(state, channel, arena.bytes(queue), 0, 0)
        try check(amqp_get_rpc_reply(state), "delete queue \(queue)")
    }

    /// Removes every message of a queue (tests and tools). Wraps `amqp_queue_purge`.
    public func purgeQueue(_ queue: String) throws(AMQPError) {
        let arena = CArena()
        _ = amqp_queue_purge(state, channel, arena.bytes(queue))
        try check(amqp_get_rpc_reply(state), "purge queue \(queue)")
    }

    // MARK: Consuming

    /// Limits how many unacknowledged deliveries the broker hands us. Wraps `amqp_basic_qos`.
    public func setPrefetch(_ count: UInt16) throws(AMQPError) {
        _ = amqp_basic_qos(state, channel, 0, count, 0)
        try check(amqp_get_rpc_reply(state), "set prefetch to \(count)")
    }

    /// Starts consuming; deliveries then come through `nextEvent`. Wraps `amqp_basic_consume`.
    @discardableResult
    public func consume(queue: String, consumerTag: String = "") throws(AMQPError) -> String {
        let arena = CArena()
        let ok = amqp_basic_consume(
            state, channel, arena.bytes(queue), arena.bytes(consumerTag), 0, 0, 0, amqp_empty_table)
        try check(amqp_get_rpc_reply(state), "consume from \(queue)")
        return ok.map { CValues.string($0.pointee.consumer_tag) } ?? consumerTag
    }

    /// Stops a consumer; deliveries already sent may still arrive. Wraps `amqp_basic_cancel`.
    /// Not for use while frames are read elsewhere: it waits for `cancel-ok`.
    public func cancel(consumerTag: String) throws(AMQPError) {
        let arena = CArena()
        _ = amqp_basic_cancel(state, channel, arena.bytes(consumerTag))
        try check(amqp_get_rpc_reply(state), "cancel consumer")
    }

    /// Acknowledges a delivery. Wraps `amqp_basic_ack`.
    public func ack(_ deliveryTag: UInt64, multiple: Bool = false) throws(AMQPError) {
        let status = amqp_basic_ack(state, channel, deliveryTag, multiple ? 1 : 0)
        if status != AMQP_STATUS_OK.rawValue { throw AMQPError.status(status, context: "ack") }
    }

    /// Runs `body` with the socket corked when `isBatch` (`TCP_CORK`): the frames it writes
    /// leave together when it returns, in as few TCP segments as fit.
    public func corked(_ isBatch: Bool, _ body: () throws(AMQPError) -> Void) throws(AMQPError) {
        guard isBatch else { return try body() }
        let descriptor = socketDescriptor
        _ = druid_amqp_set_socket_int_option(descriptor, Int32(IPPROTO_TCP), TCP_CORK, 1)
        defer { _ = druid_amqp_set_socket_int_option(descriptor, Int32(IPPROTO_TCP), TCP_CORK, 0) }
        try body()
    }

    /// Rejects a delivery, back to the queue when `requeue`. Wraps `amqp_basic_nack`.
    public func reject(_ deliveryTag: UInt64, requeue: Bool) throws(AMQPError) {
        let status = amqp_basic_nack(state, channel, deliveryTag, 0, requeue ? 1 : 0)
        if status != AMQP_STATUS_OK.rawValue { throw AMQPError.status(status, context: "reject") }
    }

    /// Reads one message with `basic.get`, or `nil` when the queue is empty. Wraps `amqp_basic_get`.
    public func get(queue: String, autoAck: Bool = false) throws(AMQPError) -> GetResult? {
        let arena = CArena()
        amqp_maybe_release_buffers(state)
        let reply = amqp_basic_get(state, channel, arena.bytes(queue), autoAck ? 1 : 0)
        try check(reply, "get from \(queue)")
        guard reply.reply.id == AMQP_BASIC_GET_OK_METHOD, let decoded = reply.reply.decoded else { return nil }
        let ok = decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
        var message = amqp_message_t()
        let read = amqp_read_message(state, channel, &message, 0)
        try check(read, "read message from \(queue)")
        defer { amqp_destroy_message(&message) }
        return GetResult(
            deliveryTag: ok.delivery_tag, isRedelivered: ok.redelivered != 0, exchange: CValues.string(ok.exchange),
            routingKey: CValues.string(ok.routing_key), messageCount: ok.message_count,
            properties: CValues.properties(message.properties), body: CValues.byteArray(message.body))
    }

    // MARK: Publishing

    /// Turns on publisher confirms for this channel. Wraps `amqp_confirm_select`.
    public func enableConfirms() throws(AMQPError) {
        _ = amqp_confirm_select(state, channel)
        try check(amqp_get_rpc_reply(state), "enable publisher confirms")
        nextPublishSequence = 1
    }

    /// Publishes a message and returns its confirm sequence number (0 without confirms).
    /// Wraps `amqp_basic_publish`; the confirm arrives later through `nextEvent`.
    @discardableResult
    public func publish(
        exchange: String, routingKey: String, body: [UInt8], properties: MessageProperties, mandatory: Bool = false
    ) throws(AMQPError) -> UInt64 {
        let arena = CArena()
        var props = arena.properties(properties)
        let status = body.withUnsafeBytes { buffer in
            amqp_basic_publish(
                state, channel, arena.bytes(exchange), arena.bytes(routingKey), mandatory ? 1 : 0, 0, &props,
                amqp_bytes_t(len: buffer.count, bytes: UnsafeMutableRawPointer(mutating: buffer.baseAddress)))
        }
        if status != AMQP_STATUS_OK.rawValue { throw AMQPError.status(status, context: "publish to \(exchange)") }
        let sequence = nextPublishSequence
        if nextPublishSequence > 0 { nextPublishSequence += 1 }
        return sequence
    }

    // MARK: Reading

    /// Waits up to `timeout` for the next delivery or broker signal; `nil` when none came.
    ///
    /// Also services heartbeats: call it at least every few seconds even when idle.
    /// Wraps `amqp_consume_message` and, for frames that are not deliveries, `amqp_simple_wait_frame`.
    public func nextEvent(timeout: Duration) throws(AMQPError) -> AMQPEvent? {
        amqp_maybe_release_buffers(state)
        var envelope = amqp_envelope_t()
        var wait = timeval(timeout)
        let reply = amqp_consume_message(state, &envelope, &wait, 0)
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            defer { amqp_destroy_envelope(&envelope) }
            return .delivery(
                Delivery(
                    deliveryTag: envelope.delivery_tag, channelGeneration: generation,
                    isRedelivered: envelope.redelivered != 0, exchange: CValues.string(envelope.exchange),
                    routingKey: CValues.string(envelope.routing_key),
                    properties: CValues.properties(envelope.message.properties),
                    body: CValues.byteArray(envelope.message.body)))
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_TIMEOUT.rawValue:
            return nil
        case AMQP_RESPONSE_LIBRARY_EXCEPTION where reply.library_error == AMQP_STATUS_UNEXPECTED_STATE.rawValue:
            var frame = amqp_frame_t()
            let status = amqp_simple_wait_frame(state, &frame)
            if status != AMQP_STATUS_OK.rawValue { throw AMQPError.status(status, context: "read frame") }
            return try handle(frame)
        default:
            throw Self.replyError(reply, state: state, context: "read from \(endpoint.description)")
        }
    }

    /// Like `nextEvent` for a connection that only publishes: reads frames without
    /// expecting deliveries. Wraps `amqp_simple_wait_frame_noblock`.
    public func nextSignal(timeout: Duration) throws(AMQPError) -> AMQPEvent? {
        amqp_maybe_release_buffers(state)
        var frame = amqp_frame_t()
        var wait = timeval(timeout)
        let status = amqp_simple_wait_frame_noblock(state, &frame, &wait)
        if status == AMQP_STATUS_TIMEOUT.rawValue { return nil }
        if status != AMQP_STATUS_OK.rawValue { throw AMQPError.status(status, context: "read frame") }
        return try handle(frame)
    }

    private func handle(_ frame: amqp_frame_t) throws(AMQPError) -> AMQPEvent? {
        guard frame.frame_type == UInt8(AMQP_FRAME_METHOD) else { return nil }
        let method = frame.payload.method
        guard let decoded = method.decoded else { return nil }
        switch method.id {
        case AMQP_BASIC_ACK_METHOD:
            let ack = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            return .confirmed(sequence: ack.delivery_tag, multiple: ack.multiple != 0)
        case AMQP_BASIC_NACK_METHOD:
            let nack = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            return .refused(sequence: nack.delivery_tag, multiple: nack.multiple != 0)
        case AMQP_BASIC_RETURN_METHOD:
            let returned = decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            let text = CValues.string(returned.reply_text)
            var message = amqp_message_t()
            let read = amqp_read_message(state, frame.channel, &message, 0)
            try check(read, "read returned message")
            defer { amqp_destroy_message(&message) }
            return .returned(replyText: text, properties: CValues.properties(message.properties))
        case AMQP_BASIC_CANCEL_METHOD:
            let cancel = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            return .consumerCancelled(consumerTag: CValues.string(cancel.consumer_tag))
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let blocked = decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            return .blocked(reason: CValues.string(blocked.reason))
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            return .unblocked
        case AMQP_CHANNEL_CLOSE_METHOD:
            isOpen = false
            let error = Self.answerClose(
                id: method.id, decoded: decoded, channel: frame.channel, state: state, context: "channel")!
            // Our only channel is gone: the connection is of no further use.
            _ = amqp_connection_close(state, AMQP_REPLY_SUCCESS)
            throw error
        case AMQP_CONNECTION_CLOSE_METHOD:
            isOpen = false
            throw Self.answerClose(
                id: method.id, decoded: decoded, channel: 0, state: state, context: "connection")!
        default:
            return nil
        }
    }

    // MARK: Errors

    private func check(_ reply: amqp_rpc_reply_t, _ context: String) throws(AMQPError) {
        guard reply.reply_type != AMQP_RESPONSE_NORMAL else { return }
        let error = Self.replyError(reply, state: state, context: context)
        if error.code == .channelClosed || error.code == .connectionClosed { isOpen = false }
        throw error
    }

    /// Turns a failed RPC reply into an error, answering the broker's close so it is clean.
    private static func replyError(
        _ reply: amqp_rpc_reply_t, state: amqp_connection_state_t, context: String
    )
        -> AMQPError
    {
        switch reply.reply_type {
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return AMQPError.status(reply.library_error, context: context)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            guard let decoded = reply.reply.decoded else {
                return AMQPError(code: .protocolError, context: context, detail: "server exception")
            }
            let channel: amqp_channel_t = reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD ? 0 : 1
            return answerClose(id: reply.reply.id, decoded: decoded, channel: channel, state: state, context: context)
                ?? AMQPError(code: .protocolError, context: context, detail: "unexpected server method")
        default:
            return AMQPError(code: .protocolError, context: context, detail: "no reply from the library")
        }
    }

    /// For a `channel.close` or `connection.close` from the broker: answers it with the
    /// matching `close-ok` (so the broker ends cleanly) and returns the error it carries;
    /// nil for any other method.
    private static func answerClose(
        id: amqp_method_number_t, decoded: UnsafeMutableRawPointer, channel: amqp_channel_t,
        state: amqp_connection_state_t, context: String
    ) -> AMQPError? {
        switch id {
        case AMQP_CONNECTION_CLOSE_METHOD:
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            var ok = amqp_connection_close_ok_t(dummy: 0)
            _ = amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
            return AMQPError(
                code: .connectionClosed, context: context, detail: CValues.string(close.reply_text),
                replyCode: close.reply_code)
        case AMQP_CHANNEL_CLOSE_METHOD:
            let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            var ok = amqp_channel_close_ok_t(dummy: 0)
            _ = amqp_send_method(state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
            return AMQPError(
                code: .channelClosed, context: context, detail: CValues.string(close.reply_text),
                replyCode: close.reply_code)
        default:
            return nil
        }
    }

    private static func describeTLSFailure(status: Int32) -> String {
        switch status {
        case AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue:
            "the broker's certificate does not match the host name"
        case AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue:
            "the broker's certificate could not be verified (unknown CA, expired or not yet valid)"
        default:
            "the TLS handshake failed"
        }
    }

    /// Makes the kernel notice a dead peer in seconds instead of minutes: keepalive probes
    /// while idle, and `TCP_USER_TIMEOUT` so unacknowledged writes fail instead of hanging.
    private static func tuneSocket(_ descriptor: Int32, heartbeatSeconds: Int) {
        guard descriptor >= 0 else { return }
        let interval = Int32(max(5, min(heartbeatSeconds, 30)))
        _ = druid_amqp_set_socket_int_option(descriptor, SOL_SOCKET, SO_KEEPALIVE, 1)
        _ = druid_amqp_set_socket_int_option(descriptor, Int32(IPPROTO_TCP), TCP_KEEPIDLE, interval)
        _ = druid_amqp_set_socket_int_option(descriptor, Int32(IPPROTO_TCP), TCP_KEEPINTVL, interval / 3 + 1)
        _ = druid_amqp_set_socket_int_option(descriptor, Int32(IPPROTO_TCP), TCP_KEEPCNT, 3)
        _ = druid_amqp_set_socket_int_option(descriptor, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, interval * 2 * 1000)
        _ = druid_amqp_set_socket_int_option(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
