import Locking
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The counters of `Statistics` at one moment, as the metrics file shows them.
struct MetricsSnapshot: Sendable, Equatable {
    var received = 0
    var acked = 0
    var retried = 0
    var requeued = 0
    var held = 0
    var inFlight = 0
    var deadLetteredByReason: [String: Int] = [:]
    /// p50 and p99 of DRUID's latency over the last interval; nil when nothing was sent.
    var latency: (p50: Duration, p99: Duration)?
    var isUp = true
    /// Whether the outage breaker has paused consuming.
    var isBreakerOpen = false

    init() {}

    init(_ statistics: Statistics, latency: (p50: Duration, p99: Duration)?, isBreakerOpen: Bool, isUp: Bool) {
        received = statistics.received.load(ordering: .relaxed)
        acked = statistics.acked.load(ordering: .relaxed)
        retried = statistics.retried.load(ordering: .relaxed)
        requeued = statistics.requeued.load(ordering: .relaxed)
        held = statistics.held.load(ordering: .relaxed)
        inFlight = statistics.inFlight.load(ordering: .relaxed)
        deadLetteredByReason = statistics.deadLettersByReason
        self.latency = latency
        self.isBreakerOpen = isBreakerOpen
        self.isUp = isUp
    }

    static func == (lhs: MetricsSnapshot, rhs: MetricsSnapshot) -> Bool {
        lhs.received == rhs.received && lhs.acked == rhs.acked && lhs.retried == rhs.retried
            && lhs.requeued == rhs.requeued && lhs.held == rhs.held && lhs.inFlight == rhs.inFlight
            && lhs.deadLetteredByReason == rhs.deadLetteredByReason && lhs.latency?.p50 == rhs.latency?.p50
            && lhs.latency?.p99 == rhs.latency?.p99 && lhs.isUp == rhs.isUp
            && lhs.isBreakerOpen == rhs.isBreakerOpen
    }
}

/// Renders a snapshot in the Prometheus text exposition format (version 0.0.4), the format
/// node_exporter's textfile collector reads.
enum MetricsText {
    /// The reason kinds of event-schema.md section 4, always present (0 until one happens),
    /// so `rate()` and alerts have a series from the start.
    static let knownReasons = ["invalid-event", "druid-rejected", "user-not-found", "retries-exhausted"]

    static func render(_ snapshot: MetricsSnapshot) -> String {
        var text = ""
        func family(_ name: String, _ type: String, _ help: String) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: [(String, String)] = [], _ value: String) {
            text += name
            if !labels.isEmpty {
                text += "{" + labels.map { "\($0.0)=\"\(escapedLabel($0.1))\"" }.joined(separator: ",") + "}"
            }
            text += " " + value + "\n"
        }
        family("druid_sync_up", "gauge", "1 while druid-sync runs, 0 once it has stopped cleanly.")
        sample("druid_sync_up", [], snapshot.isUp ? "1" : "0")
        family(
            "druid_sync_messages_received_total", "counter", "Deliveries received from the work queue.")
        sample("druid_sync_messages_received_total", [], String(snapshot.received))
        family("druid_sync_messages_acked_total", "counter", "Messages DRUID accepted, acknowledged.")
        sample("druid_sync_messages_acked_total", [], String(snapshot.acked))
        family(
            "druid_sync_messages_retried_total", "counter",
            "Messages sent to a retry queue (DRUID unavailable or refusing our credentials).")
        sample("druid_sync_messages_retried_total", [], String(snapshot.retried))
        family(
            "druid_sync_messages_dead_lettered_total", "counter",
            "Messages moved to the dead-letter queue, by the kind of their reason.")
        var reasons = snapshot.deadLetteredByReason
        for reason in knownReasons where reasons[reason] == nil { reasons[reason] = 0 }
        for (reason, count) in reasons.sorted(by: { $0.key < $1.key }) {
            sample("druid_sync_messages_dead_lettered_total", [("reason", reason)], String(count))
        }
        family(
            "druid_sync_messages_requeued_total", "counter",
            "Messages given back to the work queue because their retry or dead-letter copy could not be published.")
        sample("druid_sync_messages_requeued_total", [], String(snapshot.requeued))
        family(
            "druid_sync_messages_held_total", "counter",
            "Deliveries given back to the work queue to wait while the outage breaker was open.")
        sample("druid_sync_messages_held_total", [], String(snapshot.held))
        family("druid_sync_in_flight", "gauge", "Messages being processed now.")
        sample("druid_sync_in_flight", [], String(snapshot.inFlight))
        family(
            "druid_sync_breaker_open", "gauge",
            "1 while the outage breaker has paused consuming because DRUID fails, else 0.")
        sample("druid_sync_breaker_open", [], snapshot.isBreakerOpen ? "1" : "0")
        family(
            "druid_sync_druid_latency_seconds", "gauge",
            "Time DRUID took per message (token and update) over the last interval, by quantile; "
                + "absent when no message was sent.")
        if let latency = snapshot.latency {
            sample("druid_sync_druid_latency_seconds", [("quantile", "0.5")], seconds(latency.p50))
            sample("druid_sync_druid_latency_seconds", [("quantile", "0.99")], seconds(latency.p99))
        }
        return text
    }

    /// A label value with `\`, `"` and line ends escaped, as the format requires.
    static func escapedLabel(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// Seconds with microsecond precision, e.g. `0.012345`.
    static func seconds(_ duration: Duration) -> String {
        let microseconds = Int((duration / .microseconds(1)).rounded())
        let whole = microseconds / 1_000_000
        let digits = String(microseconds % 1_000_000)
        return "\(whole)." + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
    }
}

/// Writes the metrics file named by `DRUID_SYNC_METRICS_FILE` so that a reader only ever
/// sees a whole file: the text goes to `<path>.tmp.<pid>`, which is then renamed over
/// `<path>` (atomic within one file system).
///
/// Written from the periodic stats loop: every `DRUID_SYNC_STATS_INTERVAL`, or every
/// `intervalWithoutStats` when that is 0. A failed write is logged once, then again only
/// after a write has succeeded, so a full disk does not flood the journal.
final class MetricsFileWriter: Sendable {
    /// How often the file is written when the stats line is off.
    static let intervalWithoutStats = Duration.seconds(15)

    let path: String
    private let logger: Logger
    private let isFailing = Locked(false)

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    func write(
        _ statistics: Statistics, latency: (p50: Duration, p99: Duration)?, isBreakerOpen: Bool = false,
        isUp: Bool = true
    ) {
        let snapshot = MetricsSnapshot(statistics, latency: latency, isBreakerOpen: isBreakerOpen, isUp: isUp)
        let text = MetricsText.render(snapshot)
        let problem = Self.replace(path, with: Array(text.utf8))
        let wasFailing = isFailing.withLock { failing in
            defer { failing = problem != nil }
            return failing
        }
        if let problem, !wasFailing {
            logger.warning("cannot write the metrics file", [("path", .string(path)), ("error", .string(problem))])
        } else if problem == nil && wasFailing {
            logger.notice("metrics file written again", [("path", .string(path))])
        }
    }

    /// Writes `bytes` to a temporary file next to `path` and renames it over `path`.
    /// Returns what went wrong, or nil.
    static func replace(_ path: String, with bytes: [UInt8]) -> String? {
        let temporary = "\(path).tmp.\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return "cannot create \(temporary): \(errorText())" }
        // node_exporter runs as another user: readable by all whatever the umask.
        _ = fchmod(descriptor, 0o644)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                let problem = "cannot write \(temporary): \(errorText())"
                close(descriptor)
                unlink(temporary)
                return problem
            }
            offset += written
        }
        guard close(descriptor) == 0 else {
            let problem = "cannot write \(temporary): \(errorText())"
            unlink(temporary)
            return problem
        }
        guard rename(temporary, path) == 0 else {
            let problem = "cannot rename \(temporary) to \(path): \(errorText())"
            unlink(temporary)
            return problem
        }
        return nil
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}
