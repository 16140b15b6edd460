import Foundation
import HTTPClient
import Testing

/// HTTPClient against a real aiohttp server on loopback.
@Suite("HTTPClient")
struct HTTPClientTests {
    let base = TestServers.plainURL

    @Test("a POST reaches the server with its headers and body, and the answer comes back whole")
    func roundTrip() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let body = Array(#"{"hello":"wörld"}"#.utf8)
        let response = try await client.execute(
            HTTPRequest(
                method: .post, url: "\(base)/echo?a=1&b=x%20y",
                headers: [("Content-Type", "application/json"), ("From", "ep-main"), ("X-Empty", "")],
                body: body))
        #expect(response.status == 200)
        #expect(response.header("Content-Type")?.hasPrefix("application/json") == true)
        #expect(response.header("x-echo-count") == String(body.count))
        #expect(response.headers.contains { $0.name == "x-echo-count" && $0.value == String(body.count) })
        #expect(response.headers.allSatisfy { $0.name == $0.name.lowercased() })
        let echo = jsonObject(response.body)
        #expect(echo["method"] as? String == "POST")
        #expect(echo["query"] as? String == "a=1&b=x%20y")
        #expect(echo["body"] as? String == #"{"hello":"wörld"}"#)
        let headers = echo["headers"] as? [String: String] ?? [:]
        #expect(headers["from"] == "ep-main")
        #expect(headers["content-type"] == "application/json")
        #expect(headers["x-empty"] == "")
        #expect(headers["expect"] == nil)
        #expect(headers["content-length"] == String(body.count))
    }

    @Test(
        "GET, HEAD, PUT, DELETE and an empty POST use the right method",
        arguments: [
            HTTPMethod.get, .head, .put, .delete, .post,
        ])
    func methods(_ method: HTTPMethod) async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(HTTPRequest(method: method, url: "\(base)/echo"))
        #expect(response.status == 200)
        if method == .head {
            #expect(response.body.isEmpty)
        } else {
            #expect(jsonObject(response.body)["method"] as? String == method.rawValue)
        }
    }

    @Test("non-2xx statuses are responses, with their headers")
    func errorStatus() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let response = try await client.execute(HTTPRequest(url: "\(base)/status?code=503&retry_after=7"))
        #expect(response.status == 503)
        #expect(response.header("RETRY-AFTER") == "7")
    }

    @Test("500 requests, 64 at a time, all answered correctly over at most 64 connections")
    func manyConcurrentRequests() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let tag = UUID().uuidString
        let mismatches = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<64 {
                group.addTask {
                    var mismatches = 0
                    var index = worker
                    while index < 500 {
                        let payload = "request-\(index)"
                        let response = try await client.execute(
                            HTTPRequest(
                                method: .post, url: "\(base)/echo?tag=\(tag)&i=\(index)", body: Array(payload.utf8)))
                        let echo = jsonObject(response.body)
                        if response.status != 200 || echo["body"] as? String != payload
                            || echo["query"] as? String != "tag=\(tag)&i=\(index)"
                        {
                            mismatches += 1
                        }
                        index += 64
                    }
                    return mismatches
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(mismatches == 0)
        let stats = jsonObject(try await client.execute(HTTPRequest(url: "\(base)/stats?tag=\(tag)")).body)
        #expect(stats["requests"] as? Int == 500)
        let peers = try #require(stats["peers"] as? Int)
        #expect(peers >= 1 && peers <= 64, "500 requests used \(peers) connections")
    }

    @Test("sequential requests reuse one keep-alive connection")
    func connectionReuse() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let tag = UUID().uuidString
        for _ in 0..<20 {
            _ = try await client.execute(HTTPRequest(method: .post, url: "\(base)/echo?tag=\(tag)", body: [1, 2, 3]))
        }
        let stats = jsonObject(try await client.execute(HTTPRequest(url: "\(base)/stats?tag=\(tag)")).body)
        #expect(stats["requests"] as? Int == 20)
        #expect(stats["peers"] as? Int == 1)
    }

    @Test("kept-alive connections the server closes while idle are replaced: later requests all succeed")
    func idleConnectionsClosedByTheServer() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        // Several connections at once, each closed by the server 50 ms after its answer.
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask { try await client.execute(HTTPRequest(url: "\(base)/answer-then-close?ms=50")).status }
            }
            for try await status in group { #expect(status == 200) }
        }
        try await Task.sleep(for: .milliseconds(300))
        let clock = ContinuousClock()
        let start = clock.now
        let tag = UUID().uuidString
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    try await client.execute(HTTPRequest(method: .post, url: "\(base)/echo?tag=\(tag)", body: [7]))
                        .status
                }
            }
            for try await status in group { #expect(status == 200) }
        }
        for _ in 0..<8 {
            let response = try await client.execute(
                HTTPRequest(method: .post, url: "\(base)/echo?tag=\(tag)", body: [7]))
            #expect(response.status == 200)
        }
        // No request waited for a stale connection to time out.
        #expect(clock.now - start < .seconds(2), "took \(clock.now - start)")
        let stats = jsonObject(try await client.execute(HTTPRequest(url: "\(base)/stats?tag=\(tag)")).body)
        #expect(stats["requests"] as? Int == 16)
    }

    @Test("a slow answer fails with .timeout soon after the request's timeout")
    func timeout() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(
                HTTPRequest(
                    url: "\(base)/sleep?ms=3000&code_verifier=TOPSECRET", timeout: .milliseconds(300)))
        }
        let elapsed = clock.now - start
        #expect(error?.code == .timeout)
        #expect(elapsed < .milliseconds(1500), "took \(elapsed)")
        #expect(error.map { !"\($0)".contains("TOPSECRET") } == true)
    }

    @Test("a closed port fails with .couldNotConnect, and the message has no query string")
    func connectionRefused() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(
                HTTPRequest(
                    url: "http://127.0.0.1:\(closedPort())/x?code_verifier=TOPSECRET",
                    headers: [("Authorization", "Bearer TOKENSECRET")]))
        }
        #expect(error?.code == .couldNotConnect)
        let text = error.map { "\($0)" } ?? ""
        #expect(!text.contains("TOPSECRET") && !text.contains("TOKENSECRET") && !text.contains("?"))
    }

    @Test("a server that closes the connection without answering gives .connectionReset")
    func droppedConnection() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(HTTPRequest(url: "\(base)/drop"))
        }
        #expect(error?.code == .connectionReset)
    }

    @Test(
        "malformed or non-HTTP URLs give .invalidURL without echoing the URL",
        arguments: [
            "http://exa mple.com/?code_verifier=TOPSECRET",
            "ftp://127.0.0.1/file?code_verifier=TOPSECRET",
            "file:///etc/passwd?code_verifier=TOPSECRET",
            "not a url at all TOPSECRET",
        ])
    func invalidURL(_ url: String) async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(HTTPRequest(url: url))
        }
        #expect(error?.code == .invalidURL)
        #expect(error.map { !"\($0)".contains("TOPSECRET") } == true)
    }

    @Test("a header with CR or LF is refused before anything is sent")
    func headerInjection() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        for header in [("X-A", "1\r\nX-Injected: yes"), ("Bad Name", "v"), ("X-B:", "v"), ("", "v")] {
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(HTTPRequest(url: "\(base)/echo", headers: [header]))
            }
            #expect(error?.code == .invalidRequest)
        }
    }

    @Test("each request goes to its own URL when handles are reused, parsed by us or, failing that, by libcurl")
    func urlsOfReusedHandles() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let host = base.dropFirst("http://".count)
        // Alternating paths and queries on one connection, then a URL without a scheme
        // (our parse refuses it; libcurl guesses http) and one with a scheme libcurl may not use.
        for (index, url) in [
            "\(base)/echo?code_verifier=abc-_.~", "\(base)/echo", "\(base)/echo?a=%20&b=2", "\(host)/echo?guessed=1",
        ].enumerated() {
            let response = try await client.execute(HTTPRequest(method: .post, url: url, body: Array("\(index)".utf8)))
            #expect(response.status == 200)
            let echo = jsonObject(response.body)
            let query = url.split(separator: "?", maxSplits: 1).dropFirst().first.map(String.init) ?? ""
            #expect(echo["query"] as? String == query)
            #expect(echo["body"] as? String == "\(index)")
        }
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(HTTPRequest(url: "ftp://\(host)/echo"))
        }
        #expect(error?.code == .invalidURL)
    }

    @Test("a URL with a NUL byte is refused before anything is sent")
    func urlWithNUL() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        for url in ["\(base)/echo?a=\u{0}b", "\u{0}\(base)/echo", "\(base)/échö\u{0}"] {
            let error = await #expect(throws: HTTPClientError.self) {
                _ = try await client.execute(HTTPRequest(url: url))
            }
            #expect(error?.code == .invalidURL)
        }
        // The client still works, and a URL without a NUL is sent.
        #expect(try await client.execute(HTTPRequest(url: "\(base)/echo?a=b")).status == 200)
    }

    @Test("a body larger than the configured maximum fails with .responseTooLarge")
    func responseTooLarge() async throws {
        let client = try HTTPClient(configuration: HTTPClientConfiguration(maximumResponseBodySize: 100_000))
        defer { client.shutdown() }
        let fits = try await client.execute(HTTPRequest(url: "\(base)/big?n=100000"))
        #expect(fits.body.count == 100_000)
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(HTTPRequest(url: "\(base)/big?n=100001"))
        }
        #expect(error?.code == .responseTooLarge)
    }

    @Test("shutdown fails pending requests at once, and later ones too")
    func shutdownFailsPending() async throws {
        let client = try HTTPClient()
        let clock = ContinuousClock()
        let start = clock.now
        let pending = Task {
            try await client.execute(HTTPRequest(url: "\(base)/sleep?ms=5000"))
        }
        try await Task.sleep(for: .milliseconds(200))
        client.shutdown()
        let result = await pending.result
        #expect(clock.now - start < .seconds(2))
        #expect(throws: HTTPClientError.self) { try result.get() }
        if case .failure(let error as HTTPClientError) = result { #expect(error.code == .shutdown) }
        let later = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(HTTPRequest(url: "\(base)/echo"))
        }
        #expect(later?.code == .shutdown)
        client.shutdown()  // harmless twice
    }

    @Test("cancelling the calling task fails its request with .cancelled")
    func cancellation() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let clock = ContinuousClock()
        let start = clock.now
        let pending = Task {
            try await client.execute(HTTPRequest(url: "\(base)/sleep?ms=5000"))
        }
        try await Task.sleep(for: .milliseconds(200))
        pending.cancel()
        let result = await pending.result
        #expect(clock.now - start < .seconds(2))
        if case .failure(let error as HTTPClientError) = result {
            #expect(error.code == .cancelled)
        } else {
            Issue.record("expected a cancellation error, got \(result)")
        }
        // The client still works afterwards.
        #expect(try await client.execute(HTTPRequest(url: "\(base)/echo")).status == 200)
    }

    @Test("response headers: case-insensitive lookup, trimmed values, lower-cased names, first wins")
    func responseHeaders() {
        let response = HTTPResponse(
            status: 200,
            headers: [("Content-Type", "  application/json \t"), ("Retry-After", "5"), ("retry-after", "6")])
        #expect(response.header("content-type") == "application/json")
        #expect(response.header("CONTENT-TYPE") == "application/json")
        #expect(response.header("Retry-After") == "5")
        #expect(response.header("content") == nil)
        #expect(response.headers.map(\.name) == ["content-type", "retry-after", "retry-after"])
        #expect(HTTPResponse(status: 204).header("content-type") == nil)
    }

    @Test("the I/O thread is named http-io, as top -H and ps -L show it")
    func ioThreadName() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        // The thread names itself as it starts; a request answered proves it has started.
        _ = try await client.execute(HTTPRequest(url: "\(base)/echo"))
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
        let names = tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
        #expect(names.contains("http-io\n"))
    }

    @Test("the libcurl version is reported")
    func version() {
        #expect(HTTPClient.curlVersion.hasPrefix("libcurl/"))
    }
}

/// HTTPS against the test server's certificate, issued for `localhost` by a CA made at
/// test time.
@Suite("HTTPClient over TLS")
struct HTTPClientTLSTests {
    var port: Int { TestServers.tls.port }

    @Test("with the CA file the request succeeds")
    func trustedCA() async throws {
        let client = try HTTPClient(
            configuration: HTTPClientConfiguration(
                certificateAuthorityFile: TestFiles.certificates.ca))
        defer { client.shutdown() }
        let response = try await client.execute(
            HTTPRequest(
                method: .post, url: "https://localhost:\(port)/echo", body: Array("over tls".utf8)))
        #expect(response.status == 200)
        #expect(jsonObject(response.body)["body"] as? String == "over tls")
    }

    @Test("without the CA file the certificate is refused with a clear TLS error")
    func untrustedCA() async throws {
        let client = try HTTPClient()
        defer { client.shutdown() }
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(HTTPRequest(url: "https://localhost:\(port)/echo?code_verifier=TOPSECRET"))
        }
        guard case .tls(let reason) = error?.code else {
            Issue.record("expected a TLS error, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("certificate"))
        #expect(error.map { !"\($0)".contains("TOPSECRET") } == true)
    }

    @Test("a host name the certificate does not name is refused")
    func hostNameMismatch() async throws {
        let client = try HTTPClient(
            configuration: HTTPClientConfiguration(
                certificateAuthorityFile: TestFiles.certificates.ca))
        defer { client.shutdown() }
        let error = await #expect(throws: HTTPClientError.self) {
            _ = try await client.execute(HTTPRequest(url: "https://127.0.0.1:\(port)/echo"))
        }
        guard case .tls(let reason) = error?.code else {
            Issue.record("expected a TLS error, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("127.0.0.1"))
    }
}
