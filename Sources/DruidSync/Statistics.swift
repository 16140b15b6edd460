import Locking
import Synchronization

/// Counters shared by the processing tasks, read by the periodic stats line and the
/// systemd status. Lock-free: every field is an atomic.
final class Statistics: Sendable {
    let received = Atomic<Int>(0)
    let acked = Atomic<Int>(0)
    let retried = Atomic<Int>(0)
    let deadLettered = Atomic<Int>(0)
    let requeued = Atomic<Int>(0)
    /// Deliveries sent back to wait in the queue while the breaker was open.
    let held = Atomic<Int>(0)
    private let rate = Locked(RateWindow())
    let inFlight = Atomic<Int>(0)
    private let reasons = Locked<[String: Int]>([:])
    private let latencies = Locked(LatencyWindow())

    init() {}

    func countDeadLetter(reason: String) {
        deadLettered.add(1, ordering: .relaxed)
        // Group by the reason's kind (`invalid-event`, `druid-rejected` …), not its detail.
        let kind = reason.split(separator: ":", maxSplits: 1).first.map(String.init) ?? reason
        reasons.withLock { $0[kind, default: 0] += 1 }
    }

    /// Acknowledged messages per second over the last few seconds.
    func recentRate() -> Int {
        let acked = self.acked.load(ordering: .relaxed)
        return rate.withLock { $0.rate(acked: acked, now: .now) }
    }

    func recordLatency(_ duration: Duration) {
        latencies.withLock { $0.add(duration) }
    }

    /// Dead-letter counts by reason kind.
    var deadLettersByReason: [String: Int] { reasons.withLock { $0 } }

    /// p50 and p99 of the DRUID latencies since the last call, and clears the window.
    func takeLatencyPercentiles() -> (p50: Duration, p99: Duration)? {
        latencies.withLock { window in
            defer { window.reset() }
            return window.percentiles()
        }
    }
}

/// The latencies of one stats interval (bounded: a sample of at most 4096).
struct LatencyWindow {
    private var samples: [Duration] = []
    private var seen = 0
    private var sampler = SplitMix64(seed: 0x5DEE_CE66_D1CE_4E5B)

    mutating func add(_ value: Duration) {
        seen += 1
        if samples.count < 4096 {
            samples.append(value)
        } else {
            // Reservoir sampling keeps the window representative without growing.
            // A cheap generator, not the system's: this runs once per message, and the
            // system generator costs a getrandom(2) call each time.
            let slot = Int(truncatingIfNeeded: sampler.next() % UInt64(seen))
            if slot < samples.count { samples[slot] = value }
        }
    }

    mutating func reset() {
        samples.removeAll(keepingCapacity: true)
        seen = 0
    }

    func percentiles() -> (p50: Duration, p99: Duration)? {
        guard !samples.isEmpty else { return nil }
        let sorted = samples.sorted()
        func at(_ fraction: Double) -> Duration {
            sorted[min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.down)))]
        }
        return (at(0.5), at(0.99))
    }
}

/// Turns a growing counter into a rate, measured between successive readings at least a second apart.
struct RateWindow {
    private var lastCount = 0
    private var lastTime: ContinuousClock.Instant?
    private var lastRate = 0

    mutating func rate(acked: Int, now: ContinuousClock.Instant) -> Int {
        guard let lastTime else {
            self.lastTime = now
            lastCount = acked
            return 0
        }
        let elapsed = now - lastTime
        guard elapsed >= .seconds(1) else { return lastRate }
        let seconds = Double(elapsed / .milliseconds(1)) / 1000
        lastRate = Int((Double(acked - lastCount) / seconds).rounded())
        lastCount = acked
        self.lastTime = now
        return lastRate
    }
}

/// SplitMix64: a small, fast pseudo-random generator, good enough to pick reservoir slots.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
