import Locking
import Synchronization

/// A consuming connection on a thread of its own that reconnects by itself.
///
/// On every (re)connection it runs `prepare` (declare the topology), sets the prefetch and
/// starts consuming; deliveries and state changes come out of `events` (deliveries go to
/// `Configuration.deliveryHandler` instead when one is set). Settle deliveries
/// with `ack` and `reject` from any thread: they are sent by the connection's thread.
/// A settlement for a delivery of a connection that has since died is dropped: the broker
/// has already put that message back and will deliver it again.
public final class AMQPConsumer: Sendable {
    /// What the consumer needs to know.
    public struct Configuration: Sendable {
        /// Broker nodes, tried in turn.
        public var endpoints: [AMQPEndpoint]
        public var options: AMQPConnectionOptions
        public var queue: String
        /// How many unacknowledged deliveries the broker may hand us (`basic.qos`).
        public var prefetch: UInt16
        /// Runs on the connection's thread after each connect, before consuming: declare here.
        public var prepare: @Sendable (AMQPConnection) throws(AMQPError) -> Void
        public var reconnectBackoff = Backoff()
        /// When set, each delivery is handed to it on the connection's thread instead of
        /// coming out of `events`: no task and no hop per delivery. It must return quickly
        /// (start the work elsewhere): the connection, heartbeats included, waits meanwhile.
        public var deliveryHandler: (@Sendable (Delivery) -> Void)?

        public init(
            endpoints: [AMQPEndpoint], options: AMQPConnectionOptions, queue: String, prefetch: UInt16,
            prepare: @escaping @Sendable (AMQPConnection) throws(AMQPError) -> Void
        ) {
            self.endpoints = endpoints
            self.options = options
            self.queue = queue
            self.prefetch = prefetch
            self.prepare = prepare
        }
    }

    /// What comes out of the consumer, in order.
    public enum Event: Sendable {
        case delivery(Delivery)
        /// Connected and consuming (the first time or again).
        case consuming(endpoint: String, server: String)
        /// A connection attempt failed; the next is in `retryIn`.
        case connectFailed(AMQPError, endpoint: String, retryIn: Duration)
        /// The connection died; unsettled deliveries will come back redelivered.
        case connectionLost(AMQPError)
        /// The broker cancelled our consumer; we declare and consume again.
        case cancelledByBroker
        case blocked(reason: String)
        case unblocked
    }

    private enum Command {
        case ack(tag: UInt64, generation: UInt64)
        case reject(tag: UInt64, generation: UInt64, requeue: Bool)
        case stopConsuming
        case pause
        case resume
    }

    private struct Shared {
        var commands: [Command] = []
        var isShuttingDown = false
        /// Paused or stopped consumers are not restarted on reconnect.
        var wantsDeliveries = true
        /// `stopConsuming` was called: deliveries never start again.
        var isStopRequested = false
        /// The connection's thread is in, or about to enter, `poll`.
        var isPolling = false
        /// A wake-up was sent since the thread last went to poll.
        var isWakeupPending = false
    }

    public let events: AsyncStream<Event>
    /// Counts the connection thread's loop turns (at least two a second while it is alive,
    /// connected or not), so a watchdog can tell a live loop from a stuck one.
    public var loopTurns: UInt64 { turns.load(ordering: .relaxed) }
    private let turns = Atomic<UInt64>(0)
    private let continuation: AsyncStream<Event>.Continuation
    private let shared = Locked(Shared())
    private let wakeup = Wakeup()
    private let configuration: Configuration

    public init(configuration: Configuration) {
        self.configuration = configuration
        (events, continuation) = AsyncStream.makeStream(of: Event.self)
        DedicatedThread.start(named: "amqp-consumer") { [self] in run() }
    }

    /// Acknowledges a delivery: the message is done.
    public func ack(_ delivery: Delivery) {
        submit(.ack(tag: delivery.deliveryTag, generation: delivery.channelGeneration))
    }

    /// Rejects a delivery; with `requeue` the broker delivers it again.
    public func reject(_ delivery: Delivery, requeue: Bool) {
        submit(.reject(tag: delivery.deliveryTag, generation: delivery.channelGeneration, requeue: requeue))
    }

    /// Asks the broker to send no more deliveries (`basic.cancel`); settlements still work.
    /// For a graceful stop: consuming does not start again, not even after a reconnect.
    public func stopConsuming() {
        shared.withLock { state in
            state.wantsDeliveries = false
            state.isStopRequested = true
        }
        submit(.stopConsuming)
    }

    /// Stops deliveries for a while (`basic.cancel`), e.g. while DRUID is down; messages
    /// wait in the queue. Settlements still work. Undo with `resumeConsuming`.
    public func pauseConsuming() {
        shared.withLock { $0.wantsDeliveries = false }
        submit(.pause)
    }

    /// Starts deliveries again after `pauseConsuming` (`basic.consume`).
    /// Does nothing after `stopConsuming`: a stop for shutdown wins over a late resume.
    public func resumeConsuming() {
        let isStopped = shared.withLock { state -> Bool in
            if !state.isStopRequested { state.wantsDeliveries = true }
            return state.isStopRequested
        }
        if !isStopped { submit(.resume) }
    }

    /// Sends the settlements already submitted, closes the connection and ends `events`.
    /// Unsettled deliveries go back to the queue.
    public func shutdown() {
        shared.withLock { $0.isShuttingDown = true }
        wakeup.signal()
    }

    private func submit(_ command: Command) {
        // Wake the thread only if it is (about to be) asleep in poll; a busy thread picks
        // the command up on its next turn, which saves an eventfd write and a wake-up per ack.
        let mustWake = shared.withLock { state -> Bool in
            state.commands.append(command)
            guard state.isPolling && !state.isWakeupPending else { return false }
            state.isWakeupPending = true
            return true
        }
        if mustWake { wakeup.signal() }
    }

    private var isShuttingDown: Bool { shared.withLock { $0.isShuttingDown } }

    // MARK: The connection's thread

    private func run() {
        var backoff = configuration.reconnectBackoff
        var generation: UInt64 = 0
        var endpointIndex = 0
        while !isShuttingDown {
            generation += 1
            let endpoint = configuration.endpoints[endpointIndex]
            let connection: AMQPConnection
            var consumerTag: String
            do throws(AMQPError) {
                connection = try AMQPConnection(
                    endpoint: endpoint, options: configuration.options, generation: generation)
                try configuration.prepare(connection)
                try connection.setPrefetch(configuration.prefetch)
                consumerTag = ""
                if shared.withLock({ $0.wantsDeliveries }) {
                    consumerTag = try connection.consume(queue: configuration.queue)
                }
            } catch {
                let wait = backoff.next()
                continuation.yield(.connectFailed(error, endpoint: endpoint.description, retryIn: wait))
                endpointIndex = (endpointIndex + 1) % configuration.endpoints.count
                idle(for: wait)
                continue
            }
            backoff.reset()
            continuation.yield(.consuming(endpoint: endpoint.description, server: connection.serverDescription))
            do throws(AMQPError) {
                try serve(connection, consumerTag: &consumerTag)
                // Shutting down: pending settlements were sent; close politely.
                connection.close()
            } catch {
                continuation.yield(.connectionLost(error))
                // Drop settlements for the dead channel; their messages come back redelivered.
                shared.withLock { state in
                    state.commands.removeAll { command in
                        switch command {
                        case .ack(_, let g), .reject(_, let g, _): g == generation
                        case .stopConsuming, .pause, .resume: false
                        }
                    }
                }
                endpointIndex = (endpointIndex + 1) % configuration.endpoints.count
                if configuration.endpoints.count == 1 { idle(for: backoff.next()) }
            }
        }
        continuation.finish()
    }

    /// Waits without a connection, in short steps so `loopTurns` keeps moving; a shutdown ends it early.
    private func idle(for duration: Duration) {
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end && !isShuttingDown {
            turns.add(1, ordering: .relaxed)
            _ = wakeup.wait(socket: -1, timeout: min(.milliseconds(500), end - ContinuousClock.now))
        }
    }

    /// Reads deliveries and sends settlements until shutdown (returns) or a failure (throws).
    private func serve(_ connection: AMQPConnection, consumerTag: inout String) throws(AMQPError) {
        var isConsuming = !consumerTag.isEmpty
        // Acks of one loop turn leave as few frames as possible (see AckCoalescer).
        var coalescer = AckCoalescer()
        let idleWait = Duration.milliseconds(500)
        while true {
            turns.add(1, ordering: .relaxed)
            let (commands, stopping) = shared.withLock { state in
                let taken = state.commands
                state.commands.removeAll(keepingCapacity: true)
                return (taken, state.isShuttingDown)
            }
            // Settlements first, written as one batch: with TCP_CORK the kernel sends the
            // acks of a loop turn in as few segments as fit, instead of one each.
            var acks: [UInt64] = []
            var rejects: [(tag: UInt64, requeue: Bool)] = []
            var controls: [Command] = []
            for command in commands {
                switch command {
                case .ack(let tag, let generation) where generation == connection.generation:
                    acks.append(tag)
                case .reject(let tag, let generation, let requeue) where generation == connection.generation:
                    rejects.append((tag, requeue))
                case .ack, .reject:
                    break  // for a channel that has died: its messages come back redelivered
                case .stopConsuming, .pause, .resume:
                    controls.append(command)
                }
            }
            if !acks.isEmpty || !rejects.isEmpty {
                // The plan first: a turn's acks usually collapse into one `multiple` ack,
                // and a single frame needs no cork (two system calls saved).
                for reject in rejects { coalescer.rejected(reject.tag) }
                let plan = coalescer.plan(acking: acks)
                let frames = rejects.count + (plan.multipleUpTo == nil ? 0 : 1) + plan.singles.count
                try connection.corked(frames > 1) { () throws(AMQPError) in
                    for reject in rejects { try connection.reject(reject.tag, requeue: reject.requeue) }
                    if let upTo = plan.multipleUpTo { try connection.ack(upTo, multiple: true) }
                    for tag in plan.singles { try connection.ack(tag) }
                }
            }
            for command in controls {
                switch command {
                case .stopConsuming where isConsuming, .pause where isConsuming:
                    isConsuming = false
                    try connection.cancel(consumerTag: consumerTag)
                case .resume where !isConsuming:
                    // A stop for shutdown wins over a late resume.
                    guard shared.withLock({ $0.wantsDeliveries }) else { break }
                    consumerTag = try connection.consume(queue: configuration.queue)
                    isConsuming = true
                default:
                    break
                }
            }
            if stopping { return }
            if !connection.hasBufferedInput {
                // Sleep only when no command arrived since the inbox was emptied; from here
                // on, submitters know to wake us.
                let maySleep = shared.withLock { state -> Bool in
                    guard state.commands.isEmpty && !state.isShuttingDown else { return false }
                    state.isPolling = true
                    state.isWakeupPending = false
                    return true
                }
                if maySleep {
                    _ = wakeup.wait(socket: connection.socketDescriptor, timeout: idleWait)
                    shared.withLock { $0.isPolling = false }
                }
            }
            // Read whatever is there without blocking; this also sends and checks heartbeats.
            for _ in 0..<256 {
                guard let event = try connection.nextEvent(timeout: .zero) else { break }
                switch event {
                case .delivery(let delivery):
                    coalescer.delivered(delivery.deliveryTag)
                    if let handler = configuration.deliveryHandler {
                        handler(delivery)
                    } else {
                        continuation.yield(.delivery(delivery))
                    }
                case .consumerCancelled:
                    guard isConsuming else { break }
                    continuation.yield(.cancelledByBroker)
                    try configuration.prepare(connection)
                    consumerTag = try connection.consume(queue: configuration.queue)
                    continuation.yield(
                        .consuming(endpoint: connection.endpoint.description, server: connection.serverDescription))
                case .blocked(let reason):
                    continuation.yield(.blocked(reason: reason))
                case .unblocked:
                    continuation.yield(.unblocked)
                case .confirmed, .refused, .returned:
                    break
                }
                if !connection.hasBufferedInput { break }
            }
        }
    }
}
