internal import CCurl

/// Something that executes HTTP requests: ``HTTPClient``, or a fake in tests.
public protocol HTTPExecutor: Sendable {
    /// Sends `request` and returns the response, whatever its status.
    func execute(_ request: HTTPRequest) async throws(HTTPClientError) -> HTTPResponse

    /// Sends `request` and calls `completion` once with the response or the failure,
    /// without a task: for callers that chain requests from a completion.
    func send(_ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPClientError>) -> Void)
}

extension HTTPExecutor {
    /// Runs ``execute(_:)`` in a new task: right for fakes, too slow for the real client.
    public func send(
        _ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPClientError>) -> Void
    ) {
        Task {
            do throws(HTTPClientError) {
                completion(.success(try await execute(request)))
            } catch {
                completion(.failure(error))
            }
        }
    }
}

/// An HTTP/1.1 client for many concurrent requests, built on libcurl's multi interface.
///
/// One dedicated I/O thread performs every request; connections are kept alive and
/// reused, so a steady load runs over a stable set of connections. Create one client per
/// process (or per service), share it, and call ``shutdown()`` when done.
public final class HTTPClient: HTTPExecutor {
    private let engine: TransferEngine
    private let thread: IOThread

    /// Creates the multi handle and starts the I/O thread.
    ///
    /// - Throws: ``HTTPClientError`` if libcurl cannot be initialised or the thread cannot start.
    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration()) throws(HTTPClientError) {
        let engine = try TransferEngine(configuration: configuration)
        self.engine = engine
        self.thread = try IOThread(name: "http-io") { engine.run() }
    }

    deinit {
        // The I/O thread keeps the engine alive until it has stopped; no need to wait here.
        engine.requestStop()
    }

    /// The linked libcurl and its TLS library, e.g. `libcurl/7.88.1 OpenSSL/3.0.17 …`.
    public static var curlVersion: String { String(cString: curl_version()) }

    /// Sends `request` and returns the response, whatever its status.
    ///
    /// Cancelling the calling task fails the request with ``HTTPClientError/Code/cancelled``
    /// and drops its connection. When a reused keep-alive connection turns out to have been
    /// closed by the server before any byte of the answer arrived, libcurl sends the request
    /// once more on a new connection (the usual stale keep-alive race); callers whose
    /// requests must never be repeated need their own guard, such as DRUID's one-use tokens.
    ///
    /// - Throws: ``HTTPClientError`` when no response arrived: timeout, connection
    ///   failure, TLS failure, invalid URL or headers, cancellation, shutdown.
    public func execute(_ request: HTTPRequest) async throws(HTTPClientError) -> HTTPResponse {
        let transfer = try Transfer(request: request, maximumBodySize: engine.maximumResponseBodySize)
        let engine = self.engine
        let result = await withTaskCancellationHandler {
            // Unsafe rather than checked: the engine completes each transfer exactly once,
            // on the I/O thread, and this path is hot.
            await withUnsafeContinuation { continuation in
                transfer.completion = { continuation.resume(returning: $0) }
                if !engine.submit(transfer) {
                    transfer.completion = nil
                    continuation.resume(returning: .failure(HTTPClientError(code: .shutdown, detail: "")))
                }
            }
        } onCancel: {
            engine.cancel(transfer)
        }
        return try result.get()
    }

    /// Sends `request` and calls `completion` exactly once, on the client's I/O thread,
    /// with the response or the failure (``execute(_:)`` describes both).
    ///
    /// Called from a completion, that is on the I/O thread, the request starts at once:
    /// a sequence of requests (a token, then the call it authorises) runs without leaving
    /// the thread. `completion` must be quick and must not block: every transfer of the
    /// client waits while it runs. There is no cancellation; the request's timeout and
    /// ``shutdown()`` bound it. An invalid request or a client that is shut down calls
    /// `completion` with the failure before `send` returns.
    public func send(
        _ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPClientError>) -> Void
    ) {
        let transfer: Transfer
        do throws(HTTPClientError) {
            transfer = try Transfer(request: request, maximumBodySize: engine.maximumResponseBodySize)
        } catch {
            completion(.failure(error))
            return
        }
        transfer.completion = completion
        if !engine.submit(transfer) {
            transfer.completion = nil
            completion(.failure(HTTPClientError(code: .shutdown, detail: "")))
        }
    }

    /// Fails every pending request with ``HTTPClientError/Code/shutdown``, closes every
    /// connection and stops the I/O thread; later requests fail the same way.
    ///
    /// Blocks until the I/O thread has ended, which takes at most one loop iteration.
    /// Calling it again, or concurrently, is harmless.
    public func shutdown() {
        engine.requestStop()
        if !thread.isCurrent { thread.join() }
    }
}
