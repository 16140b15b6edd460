internal import CCurl
import Locking
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Runs every transfer of one ``HTTPClient`` on a dedicated I/O thread around one libcurl
/// multi handle, driven through libcurl's socket API: libcurl tells which sockets to watch
/// (kept in an epoll set) and when its next timeout falls; the loop waits in `epoll_wait`
/// and calls `curl_multi_socket_action` for each ready socket only, so a turn costs what
/// happened on the wire, not the number of open transfers (`curl_multi_perform` and
/// `curl_multi_poll` walk every transfer on every turn). Completions are collected with
/// `curl_multi_info_read`.
///
/// Other threads hand transfers over through `inbox` and wake the thread through an
/// eventfd in the epoll set, only when it may be asleep in `epoll_wait`, so a busy thread
/// is not interrupted. A transfer submitted on the I/O thread itself (from another transfer's
/// completion, to chain requests) starts at once, without the inbox.
// @unchecked: only `inbox` (a Locked) and `ioThread` (an Atomic) are shared; everything
// else is confined to the I/O thread.
final class TransferEngine: @unchecked Sendable {
    /// What tasks hand to the I/O thread.
    private struct Inbox {
        var submissions: [Transfer] = []
        var cancellations: [Transfer] = []
        var isStopRequested = false
        /// The loop has ended and closed the wake-up eventfd: it must not be written any more.
        var isMultiClosed = false
        /// The I/O thread is in, or about to enter, `epoll_wait`.
        var isPolling = false
        /// A wakeup was sent since the I/O thread last emptied the inbox.
        var isWakeupPending = false
    }

    private let inbox = Locked(Inbox())
    private let multi: MultiHandle
    private let settings: TransferSettings
    private let maximumIdleHandles: Int
    /// The I/O thread's `pthread_t`, set when `run` starts (0 before).
    private let ioThread = Atomic<UInt>(0)
    /// The epoll set and libcurl's next deadline, written by the C callbacks in `CCurl`.
    private let loop: UnsafeMutablePointer<druid_curl_loop>
    private let wakeupDescriptor: Int32

    // Confined to the I/O thread.
    /// Set once the loop has seen the stop request: direct submissions fail from then on.
    private var isStopping = false
    private var idleHandles: [EasyHandle] = []
    private var running: [Transfer] = []
    private var takenSubmissions: [Transfer] = []
    private var takenCancellations: [Transfer] = []

    init(configuration: HTTPClientConfiguration) throws(HTTPClientError) {
        multi = try MultiHandle(
            maximumIdleConnections: configuration.maximumIdleConnections,
            maximumConnectionsPerHost: configuration.maximumConnectionsPerHost)
        settings = TransferSettings(configuration)
        maximumIdleHandles = max(16, configuration.maximumIdleConnections)
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        let wakeup = druid_wakeup_eventfd()
        guard epoll >= 0, wakeup >= 0, druid_epoll_add_readable(epoll, wakeup) == 0 else {
            let failure = errno
            if epoll >= 0 { close(epoll) }
            if wakeup >= 0 { close(wakeup) }
            throw HTTPClientError(code: .other(-Int(failure)), detail: "cannot set up epoll: errno \(failure)")
        }
        loop = .allocate(capacity: 1)
        let stateCapacity = 65_536
        let states = UnsafeMutablePointer<UInt8>.allocate(capacity: stateCapacity)
        states.initialize(repeating: 0, count: stateCapacity)
        loop.initialize(
            to: druid_curl_loop(
                epoll_fd: epoll, deadline_ns: -1, states: states, state_capacity: Int32(stateCapacity)))
        wakeupDescriptor = wakeup
        let code = druid_curl_multi_use_loop(multi.raw, loop)
        guard code == CURLM_OK else {
            close(epoll)
            close(wakeup)
            loop.pointee.states.deallocate()
            loop.deallocate()
            throw HTTPClientError(
                code: .other(Int(code.rawValue)),
                detail: "curl_multi_setopt: \(String(cString: curl_multi_strerror(code)))")
        }
    }

    deinit {
        // `run` closed the descriptors when it ended; an engine whose loop never ran did not.
        let isClosed = inbox.withLock { $0.isMultiClosed }
        if !isClosed {
            multi.close()
            close(loop.pointee.epoll_fd)
            close(wakeupDescriptor)
        }
        loop.pointee.states.deallocate()
        loop.deallocate()
    }

    var maximumResponseBodySize: Int { settings.maximumResponseBodySize }

    // MARK: - Any thread

    /// Queues `transfer`, whose completion is set, or starts it at once when called on the
    /// I/O thread; false if the engine is stopping, in which case the completion has not
    /// been called and the caller still owns it.
    func submit(_ transfer: Transfer) -> Bool {
        if isOnIOThread {
            guard !isStopping else { return false }
            start(transfer)
            return true
        }
        return inbox.withLock { inbox in
            guard !inbox.isStopRequested else { return false }
            inbox.submissions.append(transfer)
            wakeIfPolling(&inbox)
            return true
        }
    }

    private var isOnIOThread: Bool {
        pthread_equal(pthread_self(), pthread_t(ioThread.load(ordering: .relaxed))) != 0
    }

    /// Asks the I/O thread to fail `transfer` with `.cancelled` if it has not finished.
    func cancel(_ transfer: Transfer) {
        // Set before queuing: a transfer the I/O thread has not started yet sees the flag
        // when it takes it; one already running is found through `cancellations`.
        transfer.isCancellationRequested.store(true, ordering: .releasing)
        inbox.withLock { inbox in
            guard !inbox.isStopRequested else { return }
            inbox.cancellations.append(transfer)
            wakeIfPolling(&inbox)
        }
    }

    /// Asks the I/O thread to fail every transfer with `.shutdown` and close the multi handle.
    func requestStop() {
        inbox.withLock { inbox in
            guard !inbox.isStopRequested else { return }
            inbox.isStopRequested = true
            if !inbox.isMultiClosed { druid_eventfd_signal(wakeupDescriptor) }
        }
    }

    /// Called with the lock held, so the multi handle cannot be closed meanwhile.
    private func wakeIfPolling(_ inbox: inout Inbox) {
        if inbox.isPolling && !inbox.isWakeupPending && !inbox.isMultiClosed {
            inbox.isWakeupPending = true
            druid_eventfd_signal(wakeupDescriptor)
        }
    }

    // MARK: - I/O thread

    /// The I/O thread's loop; returns after a stop request, with every transfer failed and
    /// every handle freed.
    func run() {
        ioThread.store(UInt(pthread_self()), ordering: .relaxed)
        var runningHandles: Int32 = 0
        let capacity = 128
        let readyDescriptors = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        let readyMasks = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        defer {
            readyDescriptors.deallocate()
            readyMasks.deallocate()
        }
        while true {
            let isStopRequested = takeInbox()
            for transfer in takenSubmissions { start(transfer) }
            takenSubmissions.removeAll(keepingCapacity: true)
            for transfer in takenCancellations where transfer.state == .running {
                finish(transfer, with: .failure(HTTPClientError(code: .cancelled, detail: "")))
            }
            takenCancellations.removeAll(keepingCapacity: true)
            if isStopRequested { break }

            // A new transfer sets libcurl's deadline to now, so it starts without a wait.
            var wait = millisecondsUntilDeadline()
            if wait > 0 && !isInboxEmptyBeforePolling() { wait = 0 }
            let count = druid_epoll_wait(loop, readyDescriptors, readyMasks, Int32(capacity), wait)
            if count < 0 && errno != EINTR {
                // Should not happen; never spin on it.
                var pause = timespec(tv_sec: 0, tv_nsec: 10_000_000)
                _ = nanosleep(&pause, nil)
            }
            for index in 0..<max(0, Int(count)) {
                let descriptor = readyDescriptors[index]
                if descriptor == wakeupDescriptor {
                    druid_eventfd_drain(descriptor)
                } else {
                    _ = curl_multi_socket_action(multi.raw, descriptor, readyMasks[index], &runningHandles)
                }
            }
            let deadline = loop.pointee.deadline_ns
            if deadline >= 0 && druid_monotonic_ns() >= deadline {
                // Cleared first: the call may set a new deadline.
                loop.pointee.deadline_ns = -1
                _ = druid_curl_multi_timeout_action(multi.raw, &runningHandles)
            }
            collectCompletions()
        }
        isStopping = true
        stop()
    }

    /// How long `epoll_wait` may sleep: until libcurl's deadline, at most a second.
    private func millisecondsUntilDeadline() -> Int32 {
        let deadline = loop.pointee.deadline_ns
        guard deadline >= 0 else { return 1000 }
        let remaining = deadline - druid_monotonic_ns()
        if remaining <= 0 { return 0 }
        return Int32(min(1000, (remaining + 999_999) / 1_000_000))
    }

    /// Moves the inbox's queues into the I/O thread's buffers (swapping, so no allocation).
    private func takeInbox() -> Bool {
        inbox.withLock { inbox in
            inbox.isPolling = false
            inbox.isWakeupPending = false
            swap(&inbox.submissions, &takenSubmissions)
            swap(&inbox.cancellations, &takenCancellations)
            return inbox.isStopRequested
        }
    }

    /// True, with `isPolling` set, if nothing waits in the inbox.
    private func isInboxEmptyBeforePolling() -> Bool {
        inbox.withLock { inbox in
            if !inbox.submissions.isEmpty || !inbox.cancellations.isEmpty || inbox.isStopRequested {
                return false
            }
            inbox.isPolling = true
            return true
        }
    }

    private func start(_ transfer: Transfer) {
        if transfer.isCancellationRequested.load(ordering: .acquiring) {
            resume(transfer, with: .failure(HTTPClientError(code: .cancelled, detail: "")))
            return
        }
        guard let easy = idleHandles.popLast() ?? EasyHandle(settings: settings) else {
            resume(
                transfer,
                with: .failure(
                    HTTPClientError(code: .other(Int(CURLE_OUT_OF_MEMORY.rawValue)), detail: "curl_easy_init failed")))
            return
        }
        let configured = easy.configure(for: transfer)
        guard configured == CURLE_OK else {
            recycle(easy)
            resume(
                transfer,
                with: .failure(
                    TransferEngine.error(for: configured, text: String(cString: curl_easy_strerror(configured)))))
            return
        }
        let added = curl_multi_add_handle(multi.raw, easy.raw)
        guard added == CURLM_OK else {
            recycle(easy)
            resume(
                transfer,
                with: .failure(
                    HTTPClientError(
                        code: .other(Int(added.rawValue)),
                        detail: "curl_multi_add_handle: \(String(cString: curl_multi_strerror(added)))")))
            return
        }
        transfer.easy = easy
        transfer.state = .running
        transfer.runningIndex = running.count
        running.append(transfer)
    }

    private func collectCompletions() {
        var remaining: Int32 = 0
        while let message = curl_multi_info_read(multi.raw, &remaining) {
            guard message.pointee.msg == CURLMSG_DONE, let handle = message.pointee.easy_handle else { continue }
            let code = message.pointee.data.result
            var context: UnsafeMutableRawPointer? = nil
            _ = withUnsafeMutablePointer(to: &context) { pointer in
                druid_curl_easy_getinfo_pointer(handle, CURLINFO_PRIVATE, pointer)
            }
            guard let context else { continue }
            let transfer = Unmanaged<Transfer>.fromOpaque(context).takeUnretainedValue()
            guard transfer.state == .running, let easy = transfer.easy else { continue }
            if code == CURLE_OK {
                let response = HTTPResponse(
                    status: easy.responseCode, headerBlock: transfer.responseHeaderBlock, body: transfer.responseBody)
                finish(transfer, with: .success(response))
            } else if code == CURLE_WRITE_ERROR && transfer.isBodyTooLarge {
                finish(
                    transfer,
                    with: .failure(
                        HTTPClientError(
                            code: .responseTooLarge,
                            detail: "more than \(settings.maximumResponseBodySize) bytes")))
            } else {
                finish(transfer, with: .failure(TransferEngine.error(for: code, text: easy.failureText(for: code))))
            }
        }
    }

    /// Detaches a running transfer from libcurl, recycles its handle and resumes its task.
    private func finish(_ transfer: Transfer, with result: Result<HTTPResponse, HTTPClientError>) {
        if let easy = transfer.easy {
            _ = curl_multi_remove_handle(multi.raw, easy.raw)
            recycle(easy)
            transfer.easy = nil
        }
        let index = transfer.runningIndex
        let last = running.removeLast()
        if last !== transfer {
            running[index] = last
            last.runningIndex = index
        }
        resume(transfer, with: result)
    }

    private func resume(_ transfer: Transfer, with result: Result<HTTPResponse, HTTPClientError>) {
        transfer.state = .finished
        transfer.responseHeaderBlock = []
        transfer.responseBody = []
        let completion = transfer.completion
        transfer.completion = nil
        completion?(result)
    }

    private func recycle(_ easy: EasyHandle) {
        easy.detach()
        if idleHandles.count < maximumIdleHandles { idleHandles.append(easy) }
    }

    /// Fails whatever is left, frees every easy handle, then the multi handle (in that
    /// order, as libcurl requires).
    private func stop() {
        while let transfer = running.last {
            finish(transfer, with: .failure(HTTPClientError(code: .shutdown, detail: "")))
        }
        idleHandles.removeAll()
        inbox.withLock { inbox in
            inbox.isMultiClosed = true
            inbox.isPolling = false
        }
        multi.close()
        close(loop.pointee.epoll_fd)
        close(wakeupDescriptor)
    }

    /// Turns a libcurl failure into an ``HTTPClientError``.
    static func error(for code: CURLcode, text: String) -> HTTPClientError {
        let detail = HTTPClientError.sanitized(text)
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            return HTTPClientError(code: .timeout, detail: detail)
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            return HTTPClientError(code: .couldNotConnect, detail: detail)
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE:
            return HTTPClientError(code: .connectionReset, detail: detail)
        case CURLE_URL_MALFORMAT, CURLE_UNSUPPORTED_PROTOCOL:
            // libcurl's URL messages may quote the URL: keep only its generic text.
            return HTTPClientError(code: .invalidURL, detail: String(cString: curl_easy_strerror(code)))
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CACERT_BADFILE,
            CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_CRL_BADFILE,
            CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_SHUTDOWN_FAILED,
            CURLE_SSL_ENGINE_INITFAILED, CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED,
            CURLE_USE_SSL_FAILED:
            return HTTPClientError(code: .tls(detail), detail: detail)
        default:
            return HTTPClientError(code: .other(Int(code.rawValue)), detail: detail)
        }
    }
}
