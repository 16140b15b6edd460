import AMQP
import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Shared pieces of the integration tests: the real broker on 127.0.0.1:5672, a DRUID
/// emulator per test, and the daemon binary run as a child process.
enum Harness {
    static let brokerEndpoint = AMQPEndpoint(
        host: "127.0.0.1", port: 5672, user: "guest", password: "guest", virtualHost: "/")
    static let brokerURL = "amqp://guest:guest@127.0.0.1:5672/%2F"
    static let clientSecret = "it-secret-Zq9v"

    /// The package root, found from this file's path.
    static let packageRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The built `druid-sync` binary, next to the test bundle.
    static var daemonBinary: String {
        if let path = ProcessInfo.processInfo.environment["DRUID_SYNC_BINARY"] { return path }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().appendingPathComponent("druid-sync").path
    }

    /// The environment that points a daemon at the test broker, `queue` and `emulator`,
    /// with short retry delays; `extra` adds or overrides variables.
    static func daemonEnvironment(
        queue: String, emulator: Emulator, extra: [String: String] = [:]
    )
        -> [String: String]
    {
        var environment = [
            "DRUID_SYNC_AMQP_URL": brokerURL,
            "DRUID_SYNC_QUEUE": queue,
            "DRUID_SYNC_QUEUE_TYPE": "classic",
            "DRUID_SYNC_AUTH_URL": emulator.baseURL,
            "DRUID_SYNC_GRAPH_URL": emulator.baseURL,
            "DRUID_SYNC_CLIENT_ID": emulator.clientId,
            "DRUID_SYNC_CLIENT_SECRET": clientSecret,
            "DRUID_SYNC_RETRY_DELAYS": "1s",
        ]
        for (key, value) in extra { environment[key] = value }
        return environment
    }

    static func uniqueName(_ prefix: String) -> String {
        "it-\(prefix)-\(UInt32.random(in: 0...UInt32.max))"
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("dir"))
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}

/// A DRUID emulator process of this test's own, on a free port.
final class Emulator: @unchecked Sendable {  // Process is not Sendable; used from one test at a time.
    let process = Process()
    let baseURL: String
    let clientId = "druid-sync-it"

    init(arguments: [String] = []) throws {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments =
            [
                Harness.packageRoot.appendingPathComponent("deploy/emulator/druid_emulator.py").path,
                "--port", "0", "--client", "druid-sync-it:\(Harness.clientSecret)", "--quiet",
            ] + arguments
        process.standardOutput = output
        try process.run()
        // The emulator prints one ready line with its address.
        var line = Data()
        let handle = output.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: "http") else {
            process.terminate()
            throw HarnessError("the DRUID emulator did not start: \(text)")
        }
        baseURL = String(text[range.lowerBound...]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { stopProcess(process, signal: SIGTERM) }

    @discardableResult
    func admin(_ method: String, _ path: String, _ body: Any? = nil) async throws -> Any {
        var request = URLRequest(url: URL(string: baseURL + path)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let body {
            request.httpBody = try JSONSerialization.data(withJSONObject: body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) || (status == 404 && method == "GET") else {
            throw HarnessError(
                "emulator \(method) \(path) answered \(status): \(String(decoding: data, as: UTF8.self))")
        }
        if status == 404 { return NSNull() }
        return try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
    }

    func seedUsers(_ users: [[String: Any]]) async throws {
        try await admin("POST", "/admin/users", ["users": users])
    }

    func user(_ objectId: String) async throws -> [String: Any]? {
        try await admin("GET", "/admin/users/\(objectId)") as? [String: Any]
    }

    func injectFault(_ fault: [String: Any]) async throws {
        try await admin("POST", "/admin/faults", fault)
    }

    func stats() async throws -> [String: Any] {
        try await admin("GET", "/admin/stats") as? [String: Any] ?? [:]
    }

    func requests(endpoint: String) async throws -> [[String: Any]] {
        let answer = try await admin("GET", "/admin/requests?endpoint=\(endpoint)&limit=100000") as? [String: Any]
        return answer?["requests"] as? [[String: Any]] ?? []
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A druid-sync daemon run as a child process, its stderr kept in a file.
final class Daemon: @unchecked Sendable {  // Process is not Sendable; used from one test at a time.
    private(set) var process = Process()
    let logFile: URL
    let environment: [String: String]

    init(environment: [String: String], logFile: URL) throws {
        self.environment = environment
        self.logFile = logFile
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        try start()
    }

    func start() throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.daemonBinary)
        process.arguments = ["run"]
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DRUID_SYNC_") }
        env.removeValue(forKey: "NOTIFY_SOCKET")
        for (key, value) in environment { env[key] = value }
        process.environment = env
        let handle = try FileHandle(forWritingTo: logFile)
        handle.seekToEndOfFile()
        process.standardError = handle
        process.standardOutput = handle
        try process.run()
    }

    var log: String { (try? String(contentsOf: logFile, encoding: .utf8)) ?? "" }

    /// Waits until the log contains `text` (the daemon prints `msg=consuming` once ready).
    func waitForLog(_ text: String, occurrences: Int = 1, timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if log.components(separatedBy: text).count - 1 >= occurrences { return }
            guard process.isRunning else { throw HarnessError("druid-sync exited early:\n\(log.suffix(3000))") }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("druid-sync never logged \(text):\n\(log.suffix(3000))")
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status (or -1 if it had to be killed).
    func terminate(timeout: Duration = .seconds(30)) -> Int32 {
        stopProcess(process, signal: SIGTERM, timeout: timeout)
    }

    func kill9() { _ = stopProcess(process, signal: SIGKILL) }

    deinit { kill9() }
}

/// Broker-side helpers: publish events, count and read queues, clean up.
final class BrokerTool {
    let connection: AMQPConnection

    init() throws {
        connection = try AMQPConnection(endpoint: Harness.brokerEndpoint, options: AMQPConnectionOptions())
        try connection.enableConfirms()
    }

    func publish(
        queue: String, body: [UInt8],
        properties: MessageProperties = MessageProperties(
            contentType: "application/json", deliveryMode: 2)
    ) throws {
        try connection.publish(exchange: "", routingKey: queue, body: body, properties: properties)
    }

    /// Waits for the confirms of everything published so far.
    func waitForConfirms() throws {
        let last = connection.nextPublishSequence - 1
        var confirmed: UInt64 = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while confirmed < last && ContinuousClock.now < deadline {
            if case .confirmed(let sequence, _) = try connection.nextSignal(timeout: .milliseconds(200)) {
                confirmed = max(confirmed, sequence)
            }
        }
    }

    func messageCount(_ queue: String) throws -> Int {
        Int(try connection.declareQueue(name: queue, passive: true).messageCount)
    }

    func consumerCount(_ queue: String) throws -> Int {
        Int(try connection.declareQueue(name: queue, passive: true).consumerCount)
    }

    /// Reads (and acknowledges) every message of a queue.
    func drain(_ queue: String) throws -> [GetResult] {
        var messages: [GetResult] = []
        while let message = try connection.get(queue: queue, autoAck: true) { messages.append(message) }
        return messages
    }

    /// Deletes the work queue and everything druid-sync declared around it.
    func deleteTopology(queue: String, retryQueues: Int = 5) {
        var names = [queue, queue + ".dead-letter"]
        for index in 0..<retryQueues { names.append("\(queue).retry.\(index)") }
        for name in names { try? connection.deleteQueue(name) }
    }
}

/// Waits until `condition` holds, polling; fails the test with `message` after `timeout`.
func eventually(
    _ message: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(200))
    }
    throw HarnessError("timed out waiting: \(message)")
}

/// Signals a child and waits for it to exit, polling (Foundation's `waitUntilExit` spins a
/// run loop at full CPU off the main thread). Kills it after `timeout`; returns its exit status,
/// or -1 when it had to be killed.
@discardableResult
func stopProcess(_ process: Process, signal: Int32, timeout: Duration = .seconds(30)) -> Int32 {
    guard process.isRunning else { return process.terminationStatus }
    kill(process.processIdentifier, signal)
    let deadline = ContinuousClock.now + timeout
    while process.isRunning && ContinuousClock.now < deadline { usleep(20_000) }
    guard !process.isRunning else {
        kill(process.processIdentifier, SIGKILL)
        while process.isRunning { usleep(20_000) }
        return -1
    }
    return process.terminationStatus
}

/// Fails the test if `text` (a log, a command's output) holds any secret of the run: the
/// client secret, a user password, or a code verifier or token the emulator saw.
func expectNoSecrets(in text: String, emulator: Emulator, passwords: [String]) async throws {
    #expect(!text.contains(Harness.clientSecret), "the client secret was printed")
    for password in passwords { #expect(!text.contains(password), "a user password was printed") }
    for request in try await emulator.requests(endpoint: "update") {
        if let verifier = (request["query"] as? [String: Any])?["code_verifier"] as? String {
            #expect(!text.contains(verifier), "a code verifier was printed")
        }
        if let headers = request["headers"] as? [String: Any],
            let authorization = headers["Authorization"] as? String ?? headers["authorization"] as? String
        {
            let token = authorization.replacingOccurrences(of: "Bearer ", with: "")
            #expect(!token.isEmpty && !text.contains(token), "a token was printed")
        }
    }
}
