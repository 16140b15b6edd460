import AMQP
import Foundation
import Testing
import UserUpdates

#if canImport(Glibc)
    import Glibc
#endif

/// The operator commands (`check`, `dead-letters list`, `dead-letters replay`) run as the
/// real binary against the real broker and the DRUID emulator, and the daemon's JSON logs
/// and metrics file (issue 4, items 5-8).
@Suite("Operator commands", .serialized, .timeLimit(.minutes(4)))
final class OperatorCommandTests {
    let queue = Harness.uniqueName("ops")
    let directory: URL
    let broker: BrokerTool
    var daemons: [Daemon] = []

    var deadLetterQueue: String { queue + ".dead-letter" }

    init() throws {
        directory = try Harness.temporaryDirectory()
        broker = try BrokerTool()
    }

    deinit {
        for daemon in daemons { daemon.kill9() }
        broker.deleteTopology(queue: queue, retryQueues: 2)
    }

    @Test("--version names the C libraries, and malloc is mimalloc's in the daemon's process")
    func versionAndAllocator() throws {
        let run = try OperatorCommand.run(["--version"], environment: [:])
        #expect(run.status == 0)
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("druid-sync ") == true)
        #expect(lines.contains { $0.hasPrefix("rabbitmq-c 0.11") })
        #expect(lines.contains { $0.hasPrefix("libcurl/") })
        #expect(lines.contains { $0.hasPrefix("allocator: mimalloc 2.") }, "\(lines)")
    }

    // MARK: Helpers

    /// The settings every command and daemon of a test shares.
    func settings(emulator: Emulator?, extra: [String: String] = [:]) -> [String: String] {
        var environment = [
            "DRUID_SYNC_AMQP_URL": Harness.brokerURL,
            "DRUID_SYNC_QUEUE": queue,
            "DRUID_SYNC_QUEUE_TYPE": "classic",
            "DRUID_SYNC_CLIENT_SECRET": Harness.clientSecret,
            "DRUID_SYNC_RETRY_DELAYS": "1s,2s",
        ]
        if let emulator {
            environment["DRUID_SYNC_AUTH_URL"] = emulator.baseURL
            environment["DRUID_SYNC_GRAPH_URL"] = emulator.baseURL
            environment["DRUID_SYNC_CLIENT_ID"] = emulator.clientId
        }
        for (key, value) in extra { environment[key] = value }
        return environment
    }

    func startDaemon(
        emulator: Emulator, extra: [String: String] = [:], readyText: String = "msg=consuming"
    ) async throws -> Daemon {
        let daemon = try Daemon(
            environment: settings(emulator: emulator, extra: extra),
            logFile: directory.appendingPathComponent("daemon-\(daemons.count).log"))
        daemons.append(daemon)
        try await daemon.waitForLog(readyText)
        return daemon
    }

    /// Declares the topology the way the daemon does (`DRUID_SYNC_RETRY_DELAYS=1s,2s`).
    func declareTopology() throws {
        let topology = Topology(queue: queue, queueType: .classic, retryDelays: [.seconds(1), .seconds(2)])
        for exchange in topology.exchanges {
            try broker.connection.declareExchange(name: exchange.name, type: exchange.kind.rawValue)
        }
        for declaration in topology.queues {
            try broker.connection.declareQueue(
                name: declaration.name,
                arguments: AMQPTable(declaration.arguments.map { (key: $0.0, value: amqp($0.1)) })
            )
        }
        for binding in topology.bindings {
            try broker.connection.bindQueue(binding.queue, exchange: binding.exchange, routingKey: binding.routingKey)
        }
    }

    private func amqp(_ value: HeaderValue) -> AMQPValue {
        switch value {
        case .string(let text): .string(text)
        case .int64(let number): .int64(number)
        default: .void
        }
    }

    /// Publishes `count` messages straight to the dead-letter queue, shaped like the
    /// daemon's dead-letter copies; event ids are `<prefix>-<index>`.
    func publishDeadLetters(count: Int, prefix: String, reason: String) throws {
        for index in 0..<count {
            let eventId = "\(prefix)-\(index)"
            let properties = MessageProperties(
                contentType: "application/json",
                headers: [
                    "producer-header": .string("kept-\(index)"),
                    "druid-sync-reason": .string(reason),
                    "druid-sync-attempts": .int64(10),
                    "druid-sync-first-failure-at": .string("2026-12-01T10:00:00.000Z"),
                    "druid-sync-last-failure-at": .string(
                        "2026-12-01T11:00:\(String(format: "%02d", index % 60)).000Z"),
                    "druid-sync-event-id": .string(eventId),
                    "druid-sync-original-queue": .string(queue),
                ], deliveryMode: 2, messageId: eventId)
            let body =
                "{\"eventId\":\"\(eventId)\",\"user\":{\"objectId\":\"u-\(index)\",\"ids\":{\"email\":\"a@b.es\"}}}"
            try broker.publish(queue: deadLetterQueue, body: Array(body.utf8), properties: properties)
        }
        try broker.waitForConfirms()
    }

    /// Reads every message of a queue without removing any (they return when the
    /// connection closes).
    func peek(_ queueName: String) throws -> [GetResult] {
        let connection = try AMQPConnection(endpoint: Harness.brokerEndpoint, options: AMQPConnectionOptions())
        defer { connection.close() }
        var messages: [GetResult] = []
        let count = try connection.declareQueue(name: queueName, passive: true).messageCount
        while messages.count < count, let message = try connection.get(queue: queueName, autoAck: false) {
            messages.append(message)
        }
        return messages
    }

    // MARK: check

    @Test func checkPassesWhenEverythingIsInPlace() async throws {
        let emulator = try Emulator()
        try declareTopology()
        let run = try OperatorCommand.run(["check"], environment: settings(emulator: emulator))
        #expect(run.status == 0, "\(run)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(run)")
        #expect(lines.allSatisfy { $0.hasPrefix("ok    ") }, "\(run)")
        #expect(lines.first?.hasPrefix("ok    configuration") == true)
        #expect(lines.contains { $0.hasPrefix("ok    broker amqp://guest@127.0.0.1:5672/%2F") })
        #expect(lines.contains { $0.hasPrefix("ok    topology: all 4 queues present") })
        #expect(lines.contains { $0.hasPrefix("ok    DRUID token") && $0.contains("token granted") })
        #expect(!run.output.contains(Harness.clientSecret))
        #expect(!run.output.contains("guest:guest"))
    }

    @Test func checkNamesTheBadSettingAndExitsTwo() throws {
        let run = try OperatorCommand.run(
            ["check"], environment: settings(emulator: nil, extra: ["DRUID_SYNC_CONCURRENCY": "lots"]))
        #expect(run.status == 2, "\(run)")
        #expect(
            run.stdout.hasPrefix("FAIL  configuration: DRUID_SYNC_CONCURRENCY: \"lots\" is not a whole number"),
            "\(run)")
        #expect(run.stdout.contains("(fix: correct DRUID_SYNC_CONCURRENCY"))
        #expect(!run.stdout.contains("broker"), "nothing else is checked without a configuration")
    }

    @Test func checkSaysTheClientSecretIsWrongWithoutPrintingIt() async throws {
        let emulator = try Emulator()
        try declareTopology()
        let wrongSecret = "wrong-secret-Qp4z"
        let run = try OperatorCommand.run(
            ["check"], environment: settings(emulator: emulator, extra: ["DRUID_SYNC_CLIENT_SECRET": wrongSecret]))
        #expect(run.status == 1, "\(run)")
        let failures = run.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(failures.count == 1, "\(run)")
        let line = String(failures.first ?? "")
        #expect(line.hasPrefix("FAIL  DRUID token"))
        #expect(line.contains("DRUID refused the client credentials"))
        #expect(line.contains("the client secret or the client id is wrong"))
        #expect(line.contains("DRUID_SYNC_CLIENT_ID (\(emulator.clientId))"))
        #expect(!run.output.contains(wrongSecret), "the secret is never printed")
        #expect(run.stdout.contains("ok    topology"))
    }

    @Test func checkSaysWhichQueuesAreMissingAndHowToCreateThem() throws {
        let run = try OperatorCommand.run(
            ["check"], environment: settings(emulator: nil, extra: ["DRUID_SYNC_DECLARE": "false"]))
        #expect(run.status == 1, "\(run)")
        let line = run.stdout.split(separator: "\n").first { $0.hasPrefix("FAIL  topology") }.map(String.init) ?? ""
        #expect(
            line.contains("4 of 4 queues missing: \(queue), \(queue).retry.0, \(queue).retry.1, \(deadLetterQueue)"),
            "\(run)")
        #expect(line.contains("\(deadLetterQueue)"))
        #expect(
            line.contains(
                "fix: run the daemon once with DRUID_SYNC_DECLARE=true or import deploy/rabbitmq/definitions.json"))
        #expect(run.stdout.contains("ok    broker"))
    }

    @Test func checkReportsARefusedBrokerLoginWithoutThePassword() throws {
        let password = "broker-pw-Zx81"
        let run = try OperatorCommand.run(
            ["check"],
            environment: settings(
                emulator: nil, extra: ["DRUID_SYNC_AMQP_URL": "amqp://guest:\(password)@127.0.0.1:5672/%2F"]))
        #expect(run.status == 1, "\(run)")
        #expect(run.stdout.contains("FAIL  broker amqp://guest@127.0.0.1:5672/%2F: the broker refused the login"))
        #expect(run.stdout.contains("fix: check the user and password in DRUID_SYNC_AMQP_URL"))
        #expect(run.stdout.contains("skip  topology"))
        #expect(!run.output.contains(password))
    }

    // MARK: dead-letters list

    /// Runs a daemon until 3 unreadable and 2 unknown-user events (with passwords) are
    /// dead-lettered, then stops it. Returns the passwords.
    func makeRealDeadLetters(emulator: Emulator) async throws -> [String] {
        let daemon = try await startDaemon(emulator: emulator)
        for index in 0..<3 {
            try broker.publish(
                queue: queue, body: Array("not json, password=hunter\(index)".utf8),
                properties: MessageProperties(
                    contentType: "application/json", deliveryMode: 2, messageId: "bad-\(index)"))
        }
        var passwords: [String] = []
        for index in 0..<2 {
            let password = "Pw-\(queue)-\(index)"
            passwords.append(password)
            let body =
                "{\"eventId\":\"nobody-\(index)\",\"user\":{\"objectId\":\"nobody-\(queue)-\(index)\","
                + "\"ids\":{\"email\":\"n\(index)@example.com\"},\"password\":\"\(password)\"}}"
            var properties = MessageProperties(contentType: "application/json", deliveryMode: 2)
            properties.headers = ["producer-header": .string("kept-\(index)")]
            try broker.publish(queue: queue, body: Array(body.utf8), properties: properties)
        }
        try broker.waitForConfirms()
        try await eventually("five dead letters") { try broker.messageCount(deadLetterQueue) == 5 }
        #expect(daemon.terminate() == 0)
        return passwords
    }

    @Test func listCountsByReasonAndLeavesEveryMessage() async throws {
        let emulator = try Emulator()
        _ = try await makeRealDeadLetters(emulator: emulator)
        let run = try OperatorCommand.run(["dead-letters", "list"], environment: settings(emulator: emulator))
        #expect(run.status == 0, "\(run)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "\(deadLetterQueue): 5 dead letters", "\(run)")
        #expect(lines.dropFirst().first?.hasPrefix("count  oldest") == true)
        let invalid = lines.first { $0.contains("invalid-event: body is not JSON") } ?? ""
        #expect(invalid.hasPrefix("    3  20"), "\(run)")
        let notFound = lines.first { $0.hasSuffix("user-not-found") } ?? ""
        #expect(notFound.hasPrefix("    2  20"), "\(run)")
        #expect(lines.last?.hasPrefix("oldest 20") == true)
        #expect(try broker.messageCount(deadLetterQueue) == 5, "list takes nothing away")

        let json = try OperatorCommand.run(
            ["dead-letters", "list", "--json"], environment: settings(emulator: emulator))
        #expect(json.status == 0)
        let document = try #require(
            try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any], "\(json)")
        #expect(document["messages"] as? Int == 5)
        let reasons = try #require(document["reasons"] as? [[String: Any]])
        #expect(reasons.map { $0["count"] as? Int } == [3, 2])
        #expect(reasons.last?["reason"] as? String == "user-not-found")
        #expect(try broker.messageCount(deadLetterQueue) == 5)
    }

    @Test func listShowsBodiesWithPasswordsMasked() async throws {
        let emulator = try Emulator()
        let passwords = try await makeRealDeadLetters(emulator: emulator)
        let run = try OperatorCommand.run(
            ["dead-letters", "list", "--show-bodies"], environment: settings(emulator: emulator))
        #expect(run.status == 0, "\(run)")
        for password in passwords { #expect(!run.output.contains(password)) }
        #expect(!run.output.contains("hunter"), "a non-JSON body that mentions a password is withheld")
        #expect(run.stdout.components(separatedBy: "\"password\":\"***\"").count - 1 == 2, "\(run)")
        #expect(run.stdout.components(separatedBy: "(body withheld: not JSON").count - 1 == 3)
        #expect(run.stdout.contains("message 5: "))
        #expect(run.stdout.contains("\"ids\":{\"email\":\"n0@example.com\"}"), "the rest of the body is shown")
        #expect(try broker.messageCount(deadLetterQueue) == 5)
    }

    // MARK: dead-letters replay

    @Test func replayMovesMatchingMessagesWithTheirAttemptCountResetAndTheDaemonAppliesThem() async throws {
        let emulator = try Emulator()
        _ = try await makeRealDeadLetters(emulator: emulator)
        let environment = settings(emulator: emulator)

        let first = try OperatorCommand.run(
            ["dead-letters", "replay", "--reason", "user-not-found", "--limit", "1"], environment: environment)
        #expect(first.status == 0, "\(first)")
        #expect(
            first.stdout.hasPrefix(
                "moved 1 of 5 dead letters from \(deadLetterQueue) to \(queue) (attempt counts reset)"), "\(first)")
        #expect(first.stdout.contains("--limit 1 reached"))
        #expect(!first.stdout.contains("\r"), "no progress line when stdout is not a terminal")
        #expect(try broker.messageCount(deadLetterQueue) == 4)
        let moved = try #require(try peek(queue).first)
        let headers = moved.properties.headers ?? [:]
        #expect(!headers.entries.contains { $0.key.hasPrefix("druid-sync-") }, "\(headers.entries.map(\.key))")
        #expect(headers["producer-header"]?.stringValue?.hasPrefix("kept-") == true, "producer headers stay")
        #expect(moved.properties.contentType == "application/json")
        #expect(moved.properties.deliveryMode == 2)
        #expect(String(decoding: moved.body, as: UTF8.self).contains("\"password\":\"Pw-"), "the body is the original")

        let rest = try OperatorCommand.run(
            ["dead-letters", "replay", "--reason", "user-not-found"], environment: environment)
        #expect(rest.status == 0, "\(rest)")
        #expect(rest.stdout.contains("moved 1 of 4"), "\(rest)")
        #expect(rest.stdout.contains("3 without \"user-not-found\" in their reason stay"))
        #expect(try broker.messageCount(deadLetterQueue) == 3)
        #expect(try broker.messageCount(queue) == 2)

        // Once the users exist, the daemon applies both as first attempts.
        try await emulator.seedUsers(
            (0..<2).map { ["objectId": "nobody-\(queue)-\($0)", "ids": ["email": "old\($0)@example.com"]] })
        let daemon = try await startDaemon(emulator: emulator)
        try await eventually("both replayed messages applied") {
            (try await emulator.stats()["applied"] as? Int ?? 0) == 2
        }
        try await daemon.waitForLog("outcome=ack", occurrences: 2)
        let acks = daemon.log.split(separator: "\n").filter { $0.contains("outcome=ack") }
        #expect(acks.allSatisfy { $0.contains("attempt=1") }, "the attempt count starts again")
        #expect(try broker.messageCount(deadLetterQueue) == 3, "the unreadable ones stay dead-lettered")
        #expect(daemon.terminate() == 0)
    }

    @Test func replayDryRunListsWhatWouldMoveAndMovesNothing() throws {
        try declareTopology()
        try publishDeadLetters(count: 3, prefix: "evt-a", reason: "user-not-found")
        try publishDeadLetters(count: 2, prefix: "evt-b", reason: "retries-exhausted: HTTP 503")
        let run = try OperatorCommand.run(
            ["dead-letters", "replay", "--dry-run", "--reason", "retries-exhausted"],
            environment: settings(emulator: nil))
        #expect(run.status == 0, "\(run)")
        let lines = run.stdout.split(separator: "\n").map(String.init)
        #expect(lines.filter { $0.hasPrefix("would move: event evt-b-") }.count == 2, "\(run)")
        #expect(!run.stdout.contains("evt-a-"))
        #expect(lines.last?.hasPrefix("dry run: would move 2 of 5 dead letters") == true)
        #expect(lines.last?.contains("nothing moved") == true)
        #expect(try broker.messageCount(deadLetterQueue) == 5)
        #expect(try broker.messageCount(queue) == 0)
        // The messages are back in their original order.
        #expect(try peek(deadLetterQueue).map { $0.properties.messageId ?? "" }.first == "evt-a-0")
    }

    @Test func replayKilledMidwayLosesNothing() async throws {
        try declareTopology()
        let count = 5000
        try publishDeadLetters(count: count, prefix: "evt", reason: "retries-exhausted: HTTP 503")
        let output = directory.appendingPathComponent("replay.out")
        let process = try OperatorCommand.start(
            ["dead-letters", "replay"], environment: settings(emulator: nil), output: output)
        // Kill as soon as some copies are in the work queue, well before the end.
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning && ContinuousClock.now < deadline {
            if try broker.messageCount(queue) >= 300 { break }
            usleep(2000)
        }
        stopProcess(process, signal: SIGKILL)
        #expect(process.terminationReason == .uncaughtSignal, "replay was killed before it finished")
        try await eventually("the unacknowledged dead letters are back", timeout: .seconds(30)) {
            try broker.messageCount(deadLetterQueue) + broker.messageCount(queue) >= count
        }
        let inWorkQueue = try broker.drain(queue)
        let inDeadLetters = try broker.drain(deadLetterQueue)
        #expect(!inWorkQueue.isEmpty && inWorkQueue.count < count, "the kill happened midway")
        #expect(!inDeadLetters.isEmpty)
        var ids = Set<String>()
        for message in inWorkQueue + inDeadLetters { ids.insert(message.properties.messageId ?? "") }
        #expect(ids == Set((0..<count).map { "evt-\($0)" }), "every message is in one queue or the other")
        let duplicates = inWorkQueue.count + inDeadLetters.count - count
        #expect(duplicates >= 0 && duplicates <= 100, "at most one batch is in both queues")
        print("replay kill -9: \(inWorkQueue.count) moved, \(inDeadLetters.count) left, \(duplicates) in both")
    }

    // MARK: The daemon's logs and metrics

    @Test func jsonDebugLogsParseAndCarryNoSecret() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 8))
        try await emulator.injectFault(["endpoint": "update", "status": 503, "count": 1])
        let metricsFile = directory.appendingPathComponent("druid-sync.prom")
        let daemon = try await startDaemon(
            emulator: emulator,
            extra: [
                "DRUID_SYNC_LOG_FORMAT": "json", "DRUID_SYNC_LOG_LEVEL": "debug", "DRUID_SYNC_STATS_INTERVAL": "1s",
                "DRUID_SYNC_METRICS_FILE": metricsFile.path,
            ], readyText: "\"msg\":\"consuming\"")
        var passwords: [String] = []
        for index in 0..<8 {
            let event = factory.event(index)
            if let password = event.password { passwords.append(password) }
            try broker.publish(queue: queue, body: event.body)
        }
        try broker.publish(queue: queue, body: Array("{\"user\":{\"password\":\"inv-Pw-77\"}}".utf8))
        passwords.append("inv-Pw-77")
        let unknown =
            "{\"eventId\":\"unknown\",\"user\":{\"objectId\":\"nobody-\(factory.runId)\","
            + "\"ids\":{\"email\":\"x@example.com\"},\"password\":\"unk-Pw-88\"}}"
        try broker.publish(queue: queue, body: Array(unknown.utf8))
        passwords.append("unk-Pw-88")
        try broker.waitForConfirms()
        try await eventually("every valid event applied") { (try await emulator.stats()["applied"] as? Int ?? 0) == 8 }
        try await eventually("the invalid and the unknown user dead-lettered") {
            try broker.messageCount(deadLetterQueue) == 2
        }
        try await daemon.waitForLog("\"msg\":\"stats\"")
        #expect(daemon.terminate() == 0)

        let log = daemon.log
        let lines = log.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        var messages = Set<String>()
        var settled = 0
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(line)")
            guard let object else { continue }
            #expect(object["time"] is String && object["level"] is String && object["msg"] is String, "\(line)")
            messages.insert(object["msg"] as? String ?? "")
            if object["msg"] as? String == "message settled" { settled += 1 }
        }
        #expect(log.contains("\"outcome\":\"retry\""), "the 503 went through the retry path")
        #expect(log.contains("\"outcome\":\"dead-letter\""))
        #expect(settled == 11, "8 applied, 1 retried, 2 dead-lettered")
        #expect(messages.isSuperset(of: ["druid-sync starting", "consuming", "message settled", "stats"]))
        try await expectNoSecrets(in: log, emulator: emulator, passwords: passwords)

        let metrics = try String(contentsOf: metricsFile, encoding: .utf8)
        #expect(metrics.contains("\ndruid_sync_up 0\n"), "a clean stop says so")
        #expect(metrics.contains("\ndruid_sync_messages_acked_total 8\n"), "\(metrics)")
        #expect(metrics.contains("\ndruid_sync_messages_dead_lettered_total{reason=\"invalid-event\"} 1\n"))
        #expect(metrics.contains("\ndruid_sync_messages_dead_lettered_total{reason=\"user-not-found\"} 1\n"))
        #expect(metrics.contains("\ndruid_sync_messages_retried_total 1\n"))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter {
            $0.contains(".prom.tmp.")
        }
        #expect(leftovers.isEmpty, "no temporary file is left behind")
    }

    @Test func statsIntervalZeroLogsNoStatsLineButStillWritesMetrics() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 1))
        let metricsFile = directory.appendingPathComponent("zero.prom")
        let daemon = try await startDaemon(
            emulator: emulator,
            extra: ["DRUID_SYNC_STATS_INTERVAL": "0", "DRUID_SYNC_METRICS_FILE": metricsFile.path])
        try await eventually("the metrics file written at start", timeout: .seconds(5)) {
            FileManager.default.fileExists(atPath: metricsFile.path)
        }
        try broker.publish(queue: queue, body: factory.event(0).body)
        try broker.waitForConfirms()
        try await eventually("applied") { (try await emulator.stats()["applied"] as? Int ?? 0) == 1 }
        try await Task.sleep(for: .seconds(1))
        #expect(daemon.terminate() == 0)
        #expect(!daemon.log.contains("msg=stats"))
        let metrics = try String(contentsOf: metricsFile, encoding: .utf8)
        #expect(metrics.contains("\ndruid_sync_messages_acked_total 1\n"), "\(metrics)")
        #expect(metrics.contains("\ndruid_sync_up 0\n"))
    }
}

/// The `druid-sync` binary run once as a child process, its output kept in files.
enum OperatorCommand {
    struct Run: CustomStringConvertible {
        let status: Int32
        let stdout: String
        let stderr: String

        var output: String { stdout + stderr }
        var description: String { "exit \(status)\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }
    }

    /// The environment of the child: this process's without any DRUID_SYNC_ variable, plus `settings`.
    static func environment(_ settings: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DRUID_SYNC_") }
        environment.removeValue(forKey: "NOTIFY_SOCKET")
        environment.removeValue(forKey: "JOURNAL_STREAM")
        for (key, value) in settings { environment[key] = value }
        return environment
    }

    /// Starts the binary with stdout and stderr both going to `output`.
    static func start(_ arguments: [String], environment settings: [String: String], output: URL) throws -> Process {
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.daemonBinary)
        process.arguments = arguments
        process.environment = environment(settings)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Runs the binary to its end (killing it after `timeout`).
    static func run(
        _ arguments: [String], environment settings: [String: String], timeout: Duration = .seconds(90)
    ) throws -> Run {
        let directory = try Harness.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let stdoutFile = directory.appendingPathComponent("stdout")
        let stderrFile = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stdoutFile.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrFile.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Harness.daemonBinary)
        process.arguments = arguments
        process.environment = environment(settings)
        process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
        process.standardError = try FileHandle(forWritingTo: stderrFile)
        try process.run()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        let status = process.isRunning ? stopProcess(process, signal: SIGKILL) : process.terminationStatus
        return Run(
            status: status, stdout: (try? String(contentsOf: stdoutFile, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? "")
    }
}
