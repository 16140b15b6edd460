import Locking
import Synchronization

/// A publishing connection with publisher confirms, on a thread of its own, that
/// reconnects by itself.
///
/// `publish` returns only once the broker has confirmed the message (it is then the
/// broker's responsibility) and throws when it was refused, could not be routed, or the
/// connection died before the confirm came (the message may or may not have been taken:
/// the caller must keep its original and may publish again). While the broker blocks
/// publishing connections (a resource alarm), publishes wait.
public final class ConfirmingPublisher: Sendable {
    public enum Event: Sendable {
        case connected(endpoint: String)
        case connectFailed(AMQPError, endpoint: String, retryIn: Duration)
        case connectionLost(AMQPError)
        case blocked(reason: String)
        case unblocked
    }

    /// The header that identifies a copy in a `basic.return`, so an unroutable message is
    /// matched to its publish even with many in flight.
    public static let sequenceHeader = "druid-sync-publish-id"

    private struct Request {
        var exchange: String
        var routingKey: String
        var properties: MessageProperties
        var body: [UInt8]
        var completion: @Sendable (Result<Void, AMQPError>) -> Void
    }

    private struct Shared {
        var queued: [Request] = []
        var isShuttingDown = false
    }

    public let events: AsyncStream<Event>
    private let continuation: AsyncStream<Event>.Continuation
    private let shared = Locked(Shared())
    private let wakeup = Wakeup()
    private let endpoints: [AMQPEndpoint]
    private let options: AMQPConnectionOptions
    private let publishIdentifiers = Atomic<UInt64>(0)

    public init(endpoints: [AMQPEndpoint], options: AMQPConnectionOptions) {
        self.endpoints = endpoints
        var options = options
        options.connectionName += " (publisher)"
        self.options = options
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
        DedicatedThread.start(named: "amqp-publisher") { [self] in run() }
    }

    /// Publishes with `mandatory` set and waits for the broker's confirm.
    public func publish(
        exchange: String, routingKey: String, properties: MessageProperties, body: [UInt8]
    )
        async throws(AMQPError)
    {
        let result: Result<Void, AMQPError> = await withCheckedContinuation { waiter in
            let request = Request(
                exchange: exchange, routingKey: routingKey, properties: properties, body: body,
                completion: { waiter.resume(returning: $0) })
            let accepted = shared.withLock { state -> Bool in
                guard !state.isShuttingDown else { return false }
                state.queued.append(request)
                return true
            }
            if accepted {
                wakeup.signal()
            } else {
                waiter.resume(
                    returning: .failure(
                        AMQPError(code: .closed, context: "publish", detail: "the publisher is shut down")))
            }
        }
        try result.get()
    }

    /// Fails what is queued, closes the connection and ends the thread.
    public func shutdown() {
        shared.withLock { $0.isShuttingDown = true }
        wakeup.signal()
    }

    // MARK: The connection's thread

    private func run() {
        var backoff = Backoff()
        var generation: UInt64 = 0
        var endpointIndex = 0
        while !shared.withLock({ $0.isShuttingDown }) {
            generation += 1
            let endpoint = endpoints[endpointIndex]
            let connection: AMQPConnection
            do throws(AMQPError) {
                connection = try AMQPConnection(endpoint: endpoint, options: options, generation: generation)
                try connection.enableConfirms()
            } catch {
                let wait = backoff.next()
                continuation.yield(.connectFailed(error, endpoint: endpoint.description, retryIn: wait))
                endpointIndex = (endpointIndex + 1) % endpoints.count
                _ = wakeup.wait(socket: -1, timeout: wait)
                continue
            }
            backoff.reset()
            continuation.yield(.connected(endpoint: endpoint.description))
            var inFlight: [UInt64: InFlight] = [:]
            do throws(AMQPError) {
                try serve(connection, inFlight: &inFlight)
                connection.close()
            } catch {
                continuation.yield(.connectionLost(error))
                endpointIndex = (endpointIndex + 1) % endpoints.count
            }
            let lost = AMQPError(
                code: .connectionClosed, context: "publish",
                detail: "the connection closed before the broker confirmed the message")
            for pending in inFlight.values { pending.completion(.failure(lost)) }
        }
        let remaining = shared.withLock { state in
            let taken = state.queued
            state.queued.removeAll()
            return taken
        }
        let closed = AMQPError(code: .closed, context: "publish", detail: "the publisher is shut down")
        for request in remaining { request.completion(.failure(closed)) }
        continuation.finish()
    }

    private struct InFlight {
        var identifier: UInt64
        var isReturned = false
        var returnText = ""
        var completion: @Sendable (Result<Void, AMQPError>) -> Void
    }

    private func serve(_ connection: AMQPConnection, inFlight: inout [UInt64: InFlight]) throws(AMQPError) {
        var isBlocked = false
        var sequenceByIdentifier: [UInt64: UInt64] = [:]
        while true {
            let (requests, stopping): ([Request], Bool) = shared.withLock { state in
                guard !isBlocked else { return ([], state.isShuttingDown) }
                let taken = state.queued
                state.queued.removeAll(keepingCapacity: true)
                return (taken, state.isShuttingDown)
            }
            if stopping && inFlight.isEmpty { return }
            for var request in requests {
                let identifier = publishIdentifiers.add(1, ordering: .relaxed).newValue
                var headers = request.properties.headers ?? AMQPTable()
                headers[Self.sequenceHeader] = .uint64(identifier)
                request.properties.headers = headers
                let sequence: UInt64
                do throws(AMQPError) {
                    sequence = try connection.publish(
                        exchange: request.exchange, routingKey: request.routingKey, body: request.body,
                        properties: request.properties, mandatory: true)
                } catch {
                    request.completion(.failure(error))
                    throw error
                }
                inFlight[sequence] = InFlight(identifier: identifier, completion: request.completion)
                sequenceByIdentifier[identifier] = sequence
            }
            if !connection.hasBufferedInput {
                _ = wakeup.wait(socket: connection.socketDescriptor, timeout: .milliseconds(500))
            }
            for _ in 0..<1024 {
                guard let event = try connection.nextSignal(timeout: .zero) else { break }
                switch event {
                case .confirmed(let sequence, let multiple), .refused(let sequence, let multiple):
                    var isRefused = false
                    if case .refused = event { isRefused = true }
                    let done = multiple ? inFlight.keys.filter { $0 <= sequence } : [sequence]
                    for key in done {
                        guard let pending = inFlight.removeValue(forKey: key) else { continue }
                        sequenceByIdentifier.removeValue(forKey: pending.identifier)
                        if isRefused {
                            pending.completion(
                                .failure(
                                    AMQPError(
                                        code: .publishRefused, context: "publish",
                                        detail: "the broker refused the message (basic.nack)")))
                        } else if pending.isReturned {
                            pending.completion(
                                .failure(
                                    AMQPError(
                                        code: .publishRefused, context: "publish",
                                        detail: "the message could not be routed: \(pending.returnText)")))
                        } else {
                            pending.completion(.success(()))
                        }
                    }
                case .returned(let text, let properties):
                    if let identifier = properties.headers?[Self.sequenceHeader]?.integerValue,
                        let sequence = sequenceByIdentifier[UInt64(identifier)]
                    {
                        inFlight[sequence]?.isReturned = true
                        inFlight[sequence]?.returnText = text
                    }
                case .blocked(let reason):
                    isBlocked = true
                    continuation.yield(.blocked(reason: reason))
                case .unblocked:
                    isBlocked = false
                    continuation.yield(.unblocked)
                case .delivery, .consumerCancelled:
                    break
                }
                if !connection.hasBufferedInput { break }
            }
        }
    }
}
