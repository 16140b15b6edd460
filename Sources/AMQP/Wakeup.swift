internal import CRabbitMQ

#if canImport(Glibc)
    import Glibc
#endif

/// An eventfd that lets other threads interrupt an I/O thread blocked in `poll`.
final class Wakeup: Sendable {
    let descriptor: Int32

    init() {
        descriptor = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        precondition(descriptor >= 0, "eventfd failed: the process is out of file descriptors")
    }

    deinit { close(descriptor) }

    /// Wakes the thread; cheap and safe from any thread.
    func signal() {
        var one: UInt64 = 1
        _ = write(descriptor, &one, 8)
    }

    /// Clears pending signals; called by the I/O thread after `poll` returns.
    func drain() {
        var value: UInt64 = 0
        _ = read(descriptor, &value, 8)
    }

    /// Waits until `socket` is readable, a signal arrives, or `timeout` passes.
    /// Returns whether the socket is readable.
    func wait(socket: Int32, timeout: Duration) -> Bool {
        var fds = [
            pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: socket, events: Int16(POLLIN), revents: 0),
        ]
        let count = socket >= 0 ? 2 : 1
        let milliseconds = Int32(
            clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        let ready = poll(&fds, nfds_t(count), milliseconds)
        if ready > 0 && fds[0].revents != 0 { drain() }
        return count == 2 && ready > 0 && fds[1].revents != 0
    }
}

/// Capped exponential backoff with jitter for reconnecting.
public struct Backoff: Sendable {
    public let initial: Duration
    public let maximum: Duration
    private var current: Duration

    public init(initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30)) {
        self.initial = initial
        self.maximum = maximum
        current = initial
    }

    /// The next wait: a random point in the upper half of the current step, which then doubles.
    public mutating func next() -> Duration {
        let step = current
        current = min(current * 2, maximum)
        let fraction = Double.random(in: 0.5...1.0)
        return step * fraction
    }

    public mutating func reset() { current = initial }
}
