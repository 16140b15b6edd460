internal import CRabbitMQ

#if canImport(Glibc)
    import Glibc
#endif

/// Starts long-lived POSIX threads for loops that block in `poll` or `read`, which must
/// not occupy one of Swift concurrency's few cooperative threads. A plain pthread keeps
/// the daemon free of Foundation's `Thread` (and of the memory libFoundation costs).
public enum DedicatedThread {
    private final class Launch {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Runs `body` on a new detached thread named `name` (at most 15 bytes are kept).
    /// Traps if the process cannot create a thread: it could not run at all then.
    public static func start(named name: String, _ body: @escaping @Sendable () -> Void) {
        let launch = Unmanaged.passRetained(Launch(name: name, body: body))
        var identifier = pthread_t()
        let result = pthread_create(
            &identifier, nil,
            { argument in
                let launch = Unmanaged<Launch>.fromOpaque(argument!).takeRetainedValue()
                druid_set_thread_name(launch.name)
                launch.body()
                return nil
            }, launch.toOpaque())
        precondition(result == 0, "pthread_create failed with errno \(result)")
        pthread_detach(identifier)
    }
}
