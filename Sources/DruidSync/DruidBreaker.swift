import Synchronization

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
        threshold: Int = 5, firstProbeDelay: Duration = .seconds(1), longestProbeDelay: Duration = .seconds(30)
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

/// The service's one breaker, shared by the processing tasks and the probe loop.
final class SharedBreaker: Sendable {
    private let state = Mutex(DruidBreaker())

    func withLock<Result: Sendable>(_ body: (inout DruidBreaker) -> Result) -> Result {
        state.withLock { body(&$0) }
    }
}
