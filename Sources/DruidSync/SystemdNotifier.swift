internal import CSystemd

#if canImport(Glibc)
    import Glibc
#endif

/// Tells systemd how the service is doing (`Type=notify`), through `sd_notify`.
///
/// Outside systemd (`NOTIFY_SOCKET` unset) every call does nothing.
public struct SystemdNotifier: Sendable {
    /// Whether a notification socket was given to us.
    public let isActive: Bool
    /// How often systemd expects `WATCHDOG=1`, when it asked for one (`WATCHDOG_USEC`).
    public let watchdogInterval: Duration?

    public init(environment: [String: String]) {
        isActive = !(environment["NOTIFY_SOCKET"] ?? "").isEmpty
        if isActive, let text = environment["WATCHDOG_USEC"], let micros = Int64(text), micros > 0 {
            watchdogInterval = .microseconds(micros)
        } else {
            watchdogInterval = nil
        }
    }

    /// `READY=1`: start-up is complete and messages are being consumed.
    public func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    /// `STATUS=`: a one-line summary shown by `systemctl status`.
    public func status(_ text: String) { send("STATUS=\(text)") }
    /// `WATCHDOG=1`: call only from a loop that is really making progress.
    public func watchdog() { send("WATCHDOG=1") }
    /// `STOPPING=1`: a graceful stop has begun.
    public func stopping(status: String) { send("STOPPING=1\nSTATUS=\(status)") }

    private func send(_ state: String) {
        guard isActive else { return }
        _ = sd_notify(0, state)
    }
}
