import AMQP
import Druid
import Locking
import Synchronization
import UserUpdates

/// Decides when DRUID is down for reasons that are not any message's fault (timeouts,
/// 5xx, 429, a refused token), so the service stops taking deliveries and lets messages
/// wait in the queue instead of cycling through the retry queues.
///
/// A pure value: the service feeds it outcomes and acts on the transitions it returns.
struct DruidBreaker: Sendable, Equatable {
    enum State: Sendable, Equatable {
        /// Deliveries flow. `consecutiveFailures` counts service-side failures in a row.
        case closed(consecutiveFailures: Int)
        /// Consuming is paused; DRUID is probed. `probes` counts failed probes so far.
        case open(probes: Int)
    }

    enum Transition: Sendable, Equatable {
        case opened
        case closed
    }

    /// Service-side failures in a row that open the breaker.
    let threshold: Int
    /// The first and the longest wait between probes.
    let firstProbeDelay: Duration
    let longestProbeDelay: Duration
    private(set) var state = State.closed(consecutiveFailures: 0)

    init(
        threshold: Int = 5, firstProbeDelay: Duration = .seconds(1), longestProbeDelay: Duration = .seconds(10)
    ) {
        self.threshold = threshold
        self.firstProbeDelay = firstProbeDelay
        self.longestProbeDelay = longestProbeDelay
    }

    var isOpen: Bool {
        if case .open = state { return true }
        return false
    }

    /// DRUID answered (whatever the message's fate): the run of failures is over.
    mutating func recordAnswer() -> Transition? {
        switch state {
        case .closed:
            state = .closed(consecutiveFailures: 0)
            return nil
        case .open:
            state = .closed(consecutiveFailures: 0)
            return .closed
        }
    }

    /// DRUID failed for a reason that is not the message's.
    mutating func recordServiceFailure() -> Transition? {
        guard case .closed(let failures) = state else { return nil }
        if failures + 1 >= threshold {
            state = .open(probes: 0)
            return .opened
        }
        state = .closed(consecutiveFailures: failures + 1)
        return nil
    }

    /// A probe failed: the breaker stays open and the next probe waits longer.
    mutating func recordProbeFailure() {
        if case .open(let probes) = state { state = .open(probes: probes + 1) }
    }

    /// How long to wait before the next probe: doubling from the first delay up to the
    /// longest, and never less than DRUID's own `Retry-After`.
    func nextProbeDelay(retryAfter: Duration?) -> Duration {
        guard case .open(let probes) = state else { return firstProbeDelay }
        var delay = firstProbeDelay
        for _ in 0..<min(probes, 16) where delay < longestProbeDelay { delay *= 2 }
        delay = min(delay, longestProbeDelay)
        if let retryAfter, retryAfter > delay { delay = min(retryAfter, .seconds(3600)) }
        return delay
    }

    /// For logs, the stats line and the systemd status.
    var summary: String { isOpen ? "open" : "closed" }
}

/// The service's outage breaker in action: records DRUID's answers as they arrive,
/// pauses and resumes consuming on its transitions, and probes DRUID while open.
final class OutageBreaker: Sendable {
    private let state = Locked(DruidBreaker())
    private let logger: Logger
    private let consumer: AMQPConsumer
    private let notifier: SystemdNotifier
    /// Wakes the probe loop when the breaker opens, with DRUID's `Retry-After` if any.
    private let openings: AsyncStream<Duration?>
    private let openingsContinuation: AsyncStream<Duration?>.Continuation

    init(logger: Logger, consumer: AMQPConsumer, notifier: SystemdNotifier) {
        self.logger = logger
        self.consumer = consumer
        self.notifier = notifier
        (openings, openingsContinuation) = AsyncStream.makeStream(of: Duration?.self)
    }

    var isOpen: Bool { state.withLock { $0.isOpen } }
    var summary: String { state.withLock { $0.summary } }

    /// Records one DRUID answer; returns whether a service-side failure must now wait in
    /// the queue (the breaker is open) rather than go through the retry queues.
    func observe(_ answer: DruidAnswer) -> Bool {
        let (transition, isOpen) = state.withLock { breaker in
            let transition = answer.isServiceFailure ? breaker.recordServiceFailure() : breaker.recordAnswer()
            return (transition, breaker.isOpen)
        }
        switch transition {
        case .opened: opened(by: answer)
        case .closed: closed(cause: "a message was applied")
        case nil: break
        }
        return isOpen
    }

    /// While open, probes DRUID with token requests, each after a longer wait (at least
    /// DRUID's `Retry-After`), and closes the breaker once a token is granted. Runs until
    /// `finish` or cancellation.
    func probe(with druid: DruidClient) async {
        for await firstRetryAfter in openings {
            var retryAfter = firstRetryAfter
            while isOpen {
                let delay = state.withLock { $0.nextProbeDelay(retryAfter: retryAfter) }
                do { try await Task.sleep(for: delay) } catch { return }
                switch await druid.requestToken() {
                case .success:
                    if state.withLock({ $0.recordAnswer() }) == .closed { closed(cause: "a token probe succeeded") }
                case .failure(let failure):
                    state.withLock { $0.recordProbeFailure() }
                    retryAfter = failure.answer.retryAfter
                    logger.debug("DRUID probe failed; breaker stays open", [("error", .string("\(failure)"))])
                }
            }
        }
    }

    /// Ends the probe loop.
    func finish() { openingsContinuation.finish() }

    private func opened(by answer: DruidAnswer) {
        var fields: [(String, LogValue)] = [("http_status", .integer(answer.httpStatus ?? 0))]
        switch answer {
        case .credentialsRefused(_, let detail), .unavailable(_, _, let detail):
            fields.append(("detail", .string(detail)))
        default: break
        }
        if answer.isCredentialsRefusal {
            logger.error(
                "breaker open: DRUID refuses the service's credentials or permissions; "
                    + "consuming paused, messages wait in the queue", fields)
        } else {
            logger.warning("breaker open: DRUID is unavailable; consuming paused, messages wait in the queue", fields)
        }
        consumer.pauseConsuming()
        notifier.status("consuming paused; breaker open")
        openingsContinuation.yield(answer.retryAfter)
    }

    private func closed(cause: String) {
        logger.notice("breaker closed: DRUID answers again; consuming resumed", [("cause", .string(cause))])
        consumer.resumeConsuming()
        notifier.status("consuming; breaker closed")
    }
}
