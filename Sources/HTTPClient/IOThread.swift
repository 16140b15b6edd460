internal import CCurl
import Locking
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A dedicated POSIX thread running one closure, joinable once.
///
/// A plain pthread rather than a task: the loop blocks in `epoll_wait`, which must
/// not hold one of Swift concurrency's few cooperative threads.
final class IOThread: Sendable {
    private let identifier: pthread_t
    /// True once joined, so a second `join` returns at once; held during the join so that
    /// concurrent callers all return after the thread has ended.
    private let isJoined = Locked(false)

    /// The body handed to the new thread.
    private final class Launch {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a thread running `body`, named `name` (at most 15 bytes: what `top -H` and
    /// `ps -L` show).
    init(name: String, body: @escaping @Sendable () -> Void) throws(HTTPClientError) {
        let launch = Unmanaged.passRetained(Launch(name: name, body: body))
        var identifier = pthread_t()
        let result = pthread_create(
            &identifier, nil,
            { argument in
                let launch = Unmanaged<Launch>.fromOpaque(argument!).takeRetainedValue()
                druid_curl_name_thread(launch.name)
                launch.body()
                return nil
            }, launch.toOpaque())
        guard result == 0 else {
            launch.release()
            throw HTTPClientError(code: .other(-Int(result)), detail: "pthread_create failed with errno \(result)")
        }
        self.identifier = identifier
    }

    /// True when called on this thread.
    var isCurrent: Bool { pthread_equal(pthread_self(), identifier) != 0 }

    /// Waits until the thread's body has returned (`pthread_join`). Must not be called on
    /// the thread itself.
    func join() {
        isJoined.withLock { isJoined in
            guard !isJoined else { return }
            isJoined = true
            _ = pthread_join(identifier, nil)
        }
    }
}
