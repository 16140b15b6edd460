import AMQP
import Druid
import FoundationEssentials
import HTTPClient
import Locking
import Synchronization
import UserUpdates

#if canImport(Glibc)
    import Glibc
#endif

/// The daemon: consumes deliveries, has each processed, settles it, and stops gracefully.
///
/// Threads: one for the consuming connection, one for the publishing connection, one for
/// libcurl. A delivery DRUID accepts never enters a task: it is decoded and translated on
/// the consumer's thread, both DRUID calls run on libcurl's thread, and its ack is queued
/// from there. Only the other outcomes (calling again, publishing a retry or dead-letter
/// copy, waiting before a requeue) continue in a task.
public final class SyncService: Sendable {
    let configuration: Configuration
    let logger: Logger
    let notifier: SystemdNotifier
    let statistics = Statistics()
    let http: HTTPClient
    let consumer: AMQPConsumer
    let publisher: ConfirmingPublisher
    let processor: MessageProcessor<DruidClient, ConfirmingPublisher>
    let druid: DruidClient
    let breaker: OutageBreaker
    private let runState = Locked(RunState())
    /// Hands deliveries from the consumer's thread to `receive`, once `run` has started.
    private let deliveries = DeliveryRelay()

    struct RunState {
        var signals = 0
        var hasConsumed = false
        /// Set when start-up meets a configuration problem it cannot get past (TLS, login).
        var fatalError: String?
    }

    /// Builds every part from the configuration. Throws when a part cannot be built
    /// (a CA file that cannot be read, …); broker and DRUID are contacted only by `run`.
    public init(configuration: Configuration, logger: Logger, environment: [String: String]) throws {
        self.configuration = configuration
        self.logger = logger
        notifier = SystemdNotifier(environment: environment)
        http = try HTTPClient(
            configuration: HTTPClientConfiguration(
                maximumIdleConnections: max(64, configuration.concurrency * 2 + 4),
                certificateAuthorityFile: configuration.druid.caFile,
                userAgent: "druid-sync/\(CommandLineInterface.version)"))
        druid = DruidClient(
            configuration: DruidClientConfiguration(
                authURL: configuration.druid.authURL, graphURL: configuration.druid.graphURL,
                clientId: configuration.druid.clientId, clientSecret: configuration.druid.clientSecret,
                entryPoint: configuration.druid.entryPoint, timeout: configuration.druid.timeout),
            http: http)
        let topology = configuration.topology
        var options = AMQPConnectionOptions()
        options.heartbeatSeconds = Int(configuration.amqp.heartbeat.components.seconds)
        options.clientVersion = CommandLineInterface.version
        options.connectionName = "druid-sync \(ProcessInfo.processInfo.hostName) pid \(getpid())"
        let endpoints = configuration.amqp.endpoints.map { $0.brokerEndpoint(tls: configuration.amqp) }
        publisher = ConfirmingPublisher(endpoints: endpoints, options: options)
        let declares = configuration.amqp.declaresTopology
        var consumerConfiguration = AMQPConsumer.Configuration(
            endpoints: endpoints, options: options, queue: topology.workQueue,
            prefetch: UInt16(clamping: configuration.concurrency),
            prepare: { connection throws(AMQPError) in
                if declares {
                    try TopologyDeclarer.declare(topology, on: connection)
                } else {
                    try TopologyDeclarer.check(topology, on: connection)
                }
            })
        consumerConfiguration.deliveryHandler = { [deliveries] in deliveries.deliver($0) }
        consumer = AMQPConsumer(configuration: consumerConfiguration)
        let breaker = OutageBreaker(logger: logger, consumer: consumer, notifier: notifier)
        self.breaker = breaker
        let pipeline = EventPipeline(configuration: configuration)
        processor = MessageProcessor(
            decoder: pipeline.decoder, translator: pipeline.translator, policy: configuration.retryPolicy,
            topology: topology, druid: druid, publisher: publisher,
            now: { UTCTimestamp(secondsSince1970: Date().timeIntervalSince1970) },
            observeAnswer: { breaker.observe($0) })
    }

    /// Runs until stopped by a signal; returns the process exit status.
    public func run() async -> Int32 {
        logger.info(
            "druid-sync starting",
            [
                ("version", .string(CommandLineInterface.version)),
                ("rabbitmq_c", .string(AMQPConnection.libraryVersion)),
                ("openssl", .string(DruidClient.openSSLVersion)),
                ("libcurl", .string(HTTPClient.curlVersion)),
                ("allocator", .string(MemoryAllocator.description)),
            ] + configuration.effectiveSettings().map { ($0.0, LogValue.string($0.1)) })
        let signals = installSignalHandlers()
        deliveries.connect { [self] delivery in receive(delivery) }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.watchPublisher() }
            group.addTask { await self.reportPeriodically() }
            group.addTask { await self.supervise() }
            group.addTask { await self.breaker.probe(with: self.druid) }
            group.addTask { await self.checkDruidAtStartUp() }
            group.addTask {
                for await signal in signals {
                    await self.stopGracefully(signal: signal)
                    break
                }
            }
            for await event in consumer.events {
                switch event {
                case .delivery(let delivery):
                    // Not used: deliveries go to the consumer's delivery handler.
                    receive(delivery)
                case .consuming(let endpoint, let server):
                    runState.withLock { $0.hasConsumed = true }
                    logger.notice(
                        "consuming",
                        [
                            ("endpoint", .string(endpoint)), ("broker", .string(server)),
                            ("queue", .string(configuration.topology.workQueue)),
                            ("prefetch", .integer(configuration.concurrency)),
                        ])
                    notifier.ready(status: "consuming from \(configuration.topology.workQueue)")
                case .connectFailed(let error, let endpoint, let retryIn):
                    let isFatal =
                        (error.code == .tlsFailed || error.code == .authenticationFailed)
                        && !runState.withLock { $0.hasConsumed }
                    logger.error(
                        "cannot connect to the broker",
                        [
                            ("endpoint", .string(endpoint)), ("error", .string("\(error)")),
                            isFatal
                                ? ("action", .string("exiting: fix the broker URL, CA file or credentials"))
                                : ("retry_in_ms", .integer(Int(retryIn / .milliseconds(1)))),
                        ])
                    if isFatal { failStartUp("cannot connect to the broker: \(error)") }
                case .connectionLost(let error):
                    logger.error(
                        "connection to the broker lost; unsettled messages will be redelivered",
                        [("error", .string("\(error)"))])
                case .cancelledByBroker:
                    logger.warning("the broker cancelled the consumer; declaring and consuming again")
                case .blocked(let reason):
                    logger.warning("the broker blocked the consuming connection", [("reason", .string(reason))])
                case .unblocked:
                    logger.notice("the broker unblocked the consuming connection")
                }
            }
            // The consumer is shut down: nothing more will be settled.
            publisher.shutdown()
            http.shutdown()
            breaker.finish()
            group.cancelAll()
        }
        if let fatal = runState.withLock({ $0.fatalError }) {
            logger.error("druid-sync could not start", [("error", .string(fatal))])
            return 1
        }
        logger.notice(
            "druid-sync stopped",
            [
                ("received", .integer(statistics.received.load(ordering: .relaxed))),
                ("acked", .integer(statistics.acked.load(ordering: .relaxed))),
            ])
        return 0
    }

    /// Ends the run with status 1: a setting is wrong in a way retrying cannot fix.
    private func failStartUp(_ reason: String) {
        let isFirst = runState.withLock { state -> Bool in
            guard state.fatalError == nil else { return false }
            state.fatalError = reason
            return true
        }
        if isFirst { consumer.shutdown() }
    }

    /// Obtains one token at start-up: a TLS failure (unknown CA, wrong host name) is a
    /// setting to fix, so it stops the start; any other failure is only reported, since
    /// DRUID may simply be down for now (the breaker handles that).
    private func checkDruidAtStartUp() async {
        switch await druid.requestToken() {
        case .success:
            logger.info("DRUID token check passed", [("auth_url", .string(configuration.druid.authURL))])
        case .failure(let failure):
            let text = "\(failure)"
            if text.contains("TLS failure") {
                logger.error(
                    "cannot reach DRUID over TLS",
                    [("auth_url", .string(configuration.druid.authURL)), ("error", .string(text))])
                failStartUp("cannot reach DRUID over TLS: \(text)")
            } else {
                logger.warning(
                    "DRUID token check failed at start-up; messages will wait or retry until it passes",
                    [("auth_url", .string(configuration.druid.authURL)), ("error", .string(text))])
            }
        }
    }

    /// Starts the handling of one delivery; runs on the consumer's thread, so it only
    /// decodes, translates and hands the DRUID calls to the HTTP client's thread.
    private func receive(_ delivery: Delivery) {
        statistics.received.add(1, ordering: .relaxed)
        statistics.inFlight.add(1, ordering: .relaxed)
        if breaker.isOpen {
            // DRUID is down: do not even try; the message waits in the queue.
            statistics.held.add(1, ordering: .relaxed)
            consumer.reject(delivery, requeue: true)
            statistics.inFlight.subtract(1, ordering: .relaxed)
            return
        }
        switch processor.prepare(delivery) {
        case .invalid(let invalid, let attempt):
            Task { await settle(delivery, await processor.deadLetterInvalid(delivery, invalid, attempt: attempt)) }
        case .ready(let prepared):
            let started = ContinuousClock.now
            druid.update(prepared.activity) { [self] answer in
                // On the HTTP client's thread.
                let latency = ContinuousClock.now - started
                let holds = processor.observeAnswer(answer)
                if processor.isAcceptance(answer, for: prepared) {
                    finish(delivery, processor.appliedReport(prepared, answer: answer, latency: latency))
                } else {
                    Task {
                        let report = await processor.conclude(prepared, answer: answer, holds: holds, latency: latency)
                        await settle(delivery, report)
                    }
                }
            }
        }
    }

    /// Settles a delivery whose handling needed a task: a message whose copy could not be
    /// published goes back to the queue after a pause (the broker is in trouble).
    private func settle(_ delivery: Delivery, _ report: ProcessingReport) async {
        if report.kind == .requeued {
            try? await Task.sleep(for: .seconds(1))
        }
        finish(delivery, report)
    }

    /// Acks or requeues the delivery, then counts and logs what happened to it.
    private func finish(_ delivery: Delivery, _ report: ProcessingReport) {
        defer { statistics.inFlight.subtract(1, ordering: .relaxed) }
        switch report.settlement {
        case .ack: consumer.ack(delivery)
        case .requeue: consumer.reject(delivery, requeue: true)
        }
        statistics.recordLatency(report.druidLatency)
        switch report.kind {
        case .applied: statistics.acked.add(1, ordering: .relaxed)
        case .retried: statistics.retried.add(1, ordering: .relaxed)
        case .held: statistics.held.add(1, ordering: .relaxed)
        case .deadLettered: statistics.countDeadLetter(reason: report.reason ?? "unknown")
        case .requeued: statistics.requeued.add(1, ordering: .relaxed)
        }
        let level: LogLevel
        let message: String
        switch report.kind {
        case .applied: (level, message) = (.info, "message settled")
        case .retried where report.credentialsRefused:
            (level, message) = (.error, "DRUID refused the service's credentials or permissions; message sent to retry")
        case .retried: (level, message) = (.notice, "message settled")
        case .held: (level, message) = (.debug, "message returned to the queue while the breaker is open")
        case .deadLettered: (level, message) = (.warning, "message settled")
        case .requeued: (level, message) = (.warning, "message returned to the queue: its copy could not be published")
        }
        // The fields are built only for a line that will be written (the hot path logs at info).
        guard logger.isEnabled(level) else { return }
        var fields: [(String, LogValue)] = [
            ("event_id", .string(report.eventId)),
            ("object_id", .string(report.objectId ?? "")),
            ("outcome", .string(report.kind.rawValue)),
        ]
        if let reason = report.reason { fields.append(("reason", .string(reason))) }
        if let status = report.httpStatus { fields.append(("http_status", .integer(status))) }
        fields.append(("attempt", .integer(report.attempt)))
        fields.append(("latency_ms", .double(Double(report.druidLatency / .microseconds(1)) / 1000)))
        logger.log(level, message, fields)
    }

    private func watchPublisher() async {
        for await event in publisher.events {
            switch event {
            case .connected(let endpoint):
                logger.info("publishing connection ready", [("endpoint", .string(endpoint))])
            case .connectFailed(let error, let endpoint, let retryIn):
                logger.error(
                    "cannot open the publishing connection",
                    [
                        ("endpoint", .string(endpoint)), ("error", .string("\(error)")),
                        ("retry_in_ms", .integer(Int(retryIn / .milliseconds(1)))),
                    ])
            case .connectionLost(let error):
                logger.error("publishing connection lost", [("error", .string("\(error)"))])
            case .blocked(let reason):
                logger.warning(
                    "the broker blocked publishing (resource alarm); retry and dead-letter copies wait",
                    [("reason", .string(reason))])
            case .unblocked:
                logger.notice("the broker unblocked publishing")
            }
        }
    }

    private func reportPeriodically() async {
        // DRUID_SYNC_STATS_INTERVAL=0 turns the stats line off; a metrics file is then
        // still written, every MetricsFileWriter.intervalWithoutStats (15 s).
        let logsStats = configuration.statsInterval > .zero
        let metrics = configuration.metricsFile.map { MetricsFileWriter(path: $0, logger: logger) }
        guard logsStats || metrics != nil else { return }
        let interval = logsStats ? configuration.statsInterval : MetricsFileWriter.intervalWithoutStats
        metrics?.write(statistics, latency: nil)
        defer { metrics?.write(statistics, latency: nil, isUp: false) }
        var lastAcked = 0
        var last = ContinuousClock.now
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let now = ContinuousClock.now
            let acked = statistics.acked.load(ordering: .relaxed)
            let seconds = Double((now - last) / .milliseconds(1)) / 1000
            let rate = seconds > 0 ? Double(acked - lastAcked) / seconds : 0
            lastAcked = acked
            last = now
            var fields: [(String, LogValue)] = [
                ("received", .integer(statistics.received.load(ordering: .relaxed))),
                ("acked", .integer(acked)),
                ("retried", .integer(statistics.retried.load(ordering: .relaxed))),
                ("dead_lettered", .integer(statistics.deadLettered.load(ordering: .relaxed))),
                ("in_flight", .integer(statistics.inFlight.load(ordering: .relaxed))),
                ("held", .integer(statistics.held.load(ordering: .relaxed))),
                ("messages_per_second", .double(rate)),
                ("breaker", .string(breaker.summary)),
            ]
            for (reason, count) in statistics.deadLettersByReason.sorted(by: { $0.key < $1.key }) {
                fields.append(("dead_lettered_\(reason)", .integer(count)))
            }
            let latency = statistics.takeLatencyPercentiles()
            if let (p50, p99) = latency {
                fields.append(("druid_p50_ms", .double(Double(p50 / .microseconds(1)) / 1000)))
                fields.append(("druid_p99_ms", .double(Double(p99 / .microseconds(1)) / 1000)))
            }
            if logsStats { logger.info("stats", fields) }
            metrics?.write(statistics, latency: latency, isBreakerOpen: breaker.isOpen)
        }
    }

    /// Stops taking deliveries, lets those in flight finish within the grace period,
    /// then closes the consumer (what is still unsettled goes back to the queue).
    private func stopGracefully(signal: Int32) async {
        let grace = configuration.shutdownGrace
        logger.notice(
            "stopping: no new deliveries; finishing those in flight",
            [
                ("signal", .integer(Int(signal))),
                ("in_flight", .integer(statistics.inFlight.load(ordering: .relaxed))),
                ("grace_ms", .integer(Int(grace / .milliseconds(1)))),
            ])
        notifier.stopping(status: "stopping")
        consumer.stopConsuming()
        let deadline = ContinuousClock.now + grace
        while statistics.inFlight.load(ordering: .relaxed) > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        let left = statistics.inFlight.load(ordering: .relaxed)
        if left > 0 {
            logger.warning(
                "grace period over; unsettled messages go back to the queue", [("in_flight", .integer(left))])
        }
        consumer.shutdown()
    }

    /// Every second: `WATCHDOG=1` while the consumer's loop is turning (systemd restarts a
    /// stuck daemon), and a fresh `STATUS=` line every five seconds.
    private func supervise() async {
        guard notifier.isActive else { return }
        var lastTurns = consumer.loopTurns
        var lastWatchdog = ContinuousClock.now
        var tick = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
            tick += 1
            if let interval = notifier.watchdogInterval, ContinuousClock.now - lastWatchdog >= interval / 3 {
                let turns = consumer.loopTurns
                if turns != lastTurns {
                    notifier.watchdog()
                    lastWatchdog = ContinuousClock.now
                }
                lastTurns = turns
            }
            if tick % 5 == 0 { notifier.status(statusLine()) }
        }
    }

    /// The one-line summary for `systemctl status`.
    func statusLine() -> String {
        let state = runState.withLock { $0.hasConsumed } ? "consuming" : "starting"
        return "\(state); \(statistics.recentRate()) msg/s; "
            + "\(statistics.inFlight.load(ordering: .relaxed)) in flight; breaker \(breaker.summary)"
    }

    /// SIGTERM and SIGINT: the first starts a graceful stop, the second exits at once.
    private func installSignalHandlers() -> AsyncStream<Int32> {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        ProcessSignals.install { [self] number in
            let count = runState.withLock { state -> Int in
                state.signals += 1
                return state.signals
            }
            if count == 1 {
                continuation.yield(number)
            } else {
                logger.warning("second signal: exiting now; unsettled messages will be redelivered")
                _exit(1)
            }
        }
        return stream
    }
}

/// Turns SIGTERM and SIGINT into calls on an ordinary thread (the self-pipe pattern), so
/// nothing but a `write` happens in signal context.
enum ProcessSignals {
    // Set once, before the handlers are installed, and only read afterwards.
    nonisolated(unsafe) private static var pipeWriteEnd: Int32 = -1

    /// Unblocks SIGTERM and SIGINT for this thread and those it starts later (a parent,
    /// e.g. a test runner, may hand us a blocked mask), and ignores SIGPIPE (a broken
    /// socket must be an error, not a death). Call first thing in `main`.
    static func prepare() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Calls `handler` on a dedicated thread for each SIGTERM or SIGINT received.
    static func install(_ handler: @escaping @Sendable (Int32) -> Void) {
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else { return }
        pipeWriteEnd = ends[1]
        let readEnd = ends[0]
        DedicatedThread.start(named: "signals") {
            var number: UInt8 = 0
            while true {
                let count = read(readEnd, &number, 1)
                if count == 1 { handler(Int32(number)) } else if count < 0 && errno != EINTR { return }
            }
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { number in
            var byte = UInt8(truncatingIfNeeded: number)
            _ = write(ProcessSignals.pipeWriteEnd, &byte, 1)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        sigaction(SIGTERM, &action, nil)
        sigaction(SIGINT, &action, nil)
    }
}

extension Configuration.AMQPEndpoint {
    /// The AMQP module's view of this endpoint, with the TLS files when the URL is `amqps://`.
    func brokerEndpoint(tls settings: Configuration.AMQPSettings) -> AMQP.AMQPEndpoint {
        AMQP.AMQPEndpoint(
            host: host, port: port, user: user, password: password.revealed, virtualHost: virtualHost,
            tls: usesTLS
                ? AMQPTLSSettings(
                    caFile: settings.caFile, certificateFile: settings.certificateFile, keyFile: settings.keyFile)
                : nil)
    }
}

/// Passes deliveries from the consumer's thread to the service's handler. Deliveries that
/// arrive before the handler is connected (the consumer starts in the service's `init`)
/// wait here and are handed over by `connect`.
final class DeliveryRelay: Sendable {
    private struct State {
        var handler: (@Sendable (Delivery) -> Void)?
        var waiting: [Delivery] = []
    }

    private let state = Locked(State())

    func deliver(_ delivery: Delivery) {
        let handler = state.withLock { state -> (@Sendable (Delivery) -> Void)? in
            if let handler = state.handler { return handler }
            state.waiting.append(delivery)
            return nil
        }
        handler?(delivery)
    }

    func connect(_ handler: @escaping @Sendable (Delivery) -> Void) {
        let waiting = state.withLock { state -> [Delivery] in
            state.handler = handler
            defer { state.waiting = [] }
            return state.waiting
        }
        for delivery in waiting { handler(delivery) }
    }
}
