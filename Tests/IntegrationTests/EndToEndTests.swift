import AMQP
import Foundation
import Testing

/// The daemon's whole path against the real RabbitMQ and the DRUID emulator
/// (event-schema.md sections 2, 4 and 5).
@Suite("End to end", .serialized, .timeLimit(.minutes(4)))
final class EndToEndTests {
    let queue = Harness.uniqueName("e2e")
    let directory: URL
    let broker: BrokerTool
    var daemons: [Daemon] = []

    init() throws {
        directory = try Harness.temporaryDirectory()
        broker = try BrokerTool()
    }

    deinit {
        for daemon in daemons { daemon.kill9() }
        broker.deleteTopology(queue: queue)
    }

    func startDaemon(
        emulator: Emulator, extra: [String: String] = [:], waitUntilConsuming: Bool = true
    )
        async throws -> Daemon
    {
        let environment = Harness.daemonEnvironment(
            queue: queue, emulator: emulator, extra: ["DRUID_SYNC_LOG_LEVEL": "debug"].merging(extra) { $1 })
        let daemon = try Daemon(
            environment: environment, logFile: directory.appendingPathComponent("daemon-\(daemons.count).log"))
        daemons.append(daemon)
        if waitUntilConsuming { try await daemon.waitForLog("msg=consuming") }
        return daemon
    }

    @Test func thousandVariedEventsAreAllAppliedAndAcked() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        let count = 1000
        try await emulator.seedUsers(factory.seedUsers(count: count))
        let daemon = try await startDaemon(emulator: emulator)
        var made: [EventFactory.Made] = []
        for index in 0..<count {
            let event = factory.event(index)
            made.append(event)
            try broker.publish(queue: queue, body: event.body)
        }
        try broker.waitForConfirms()
        try await eventually("all \(count) events applied") {
            let stats = try await emulator.stats()
            return (stats["applied"] as? Int ?? 0) >= count
        }
        try await eventually("the work queue drained and nothing unacknowledged") {
            try broker.messageCount(queue) == 0 && daemon.log.components(separatedBy: "outcome=ack").count - 1 == count
        }
        for event in made {
            let user = try #require(try await emulator.user(event.objectId))
            let ids = user["ids"] as? [String: Any]
            let email = (ids?["email"] as? [String: Any])?["value"] as? String
            #expect(email == event.email, "user \(event.objectId) holds the new e-mail")
            let datas = user["datas"] as? [String: Any]
            #expect((datas?["name"] as? [String: Any])?["value"] as? String == event.name)
        }
        #expect(try broker.messageCount(queue + ".dead-letter") == 0)
        #expect(daemon.process.isRunning)
        #expect(daemon.terminate() == 0)
        try await expectNoSecrets(in: daemon.log, emulator: emulator, passwords: made.compactMap(\.password))
    }

    @Test func invalidMessagesAreDeadLetteredWithTheirReasonAndTheDaemonGoesOn() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 2))
        let daemon = try await startDaemon(emulator: emulator, extra: ["DRUID_SYNC_MAX_MESSAGE_BYTES": "2048"])
        let user = "\"objectId\":\"\(factory.objectId(0))\""
        let cases: [(body: [UInt8], contentType: String?, reason: String)] = [
            (Array("not json".utf8), "application/json", "invalid-event: "),
            ([0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D], "application/json", "invalid-event: "),
            (Array("[1,2]".utf8), "application/json", "invalid-event: "),
            (
                Array(("{\"pad\":\"" + String(repeating: "x", count: 3000) + "\"}").utf8), "application/json",
                "invalid-event: "
            ),
            (Array("{\"user\":{\(user),\"ids\":{\"email\":\"a@b.es\"}}}".utf8), "text/plain", "invalid-event: "),
            (Array("{\"user\":{\"ids\":{\"email\":\"a@b.es\"}}}".utf8), nil, "user.objectId"),
            (Array("{\"user\":{\(user),\"ids\":{}}}".utf8), nil, "user.ids"),
            (Array("{\"user\":{\(user),\"ids\":{\"email\":\"not-an-email\"}}}".utf8), nil, "user.ids.email"),
            (Array("{\"user\":{\(user),\"ids\":{\"phone_number\":\"600111222\"}}}".utf8), nil, "user.ids.phone_number"),
            (
                Array(
                    "{\"user\":{\(user),\"ids\":{\"email\":\"a@b.es\"},\"datas\":{\"birthday\":\"1974-02-30\"}}}".utf8),
                nil, "user.datas.birthday"
            ),
            (Array("{\"user\":{\(user),\"ids\":{\"email\":\"a@b.es\"}},\"source\":\"fax\"}".utf8), nil, "source"),
            (Array("{\"user\":{\(user),\"ids\":{\"email\":\"a@b.es\"},\"password\":42}}".utf8), nil, "user.password"),
            (
                Array("{\"user\":{\(user),\"ids\":{\"email\":\"a@b.es\"},\"assertions\":{\"terms\":\"yes\"}}}".utf8),
                nil,
                "user.assertions"
            ),
            (
                Array("{\"user\":{\(user),\"ids\":{\"email\":\"a@b.es\"},\"nickname\":\"x\"}}".utf8), nil,
                "user.nickname"
            ),
        ]
        for (index, item) in cases.enumerated() {
            var properties = MessageProperties(
                contentType: item.contentType, deliveryMode: 2, messageId: "bad-\(index)")
            properties.headers = ["producer-header": .string("kept-\(index)")]
            try broker.publish(queue: queue, body: item.body, properties: properties)
        }
        let valid = factory.event(1)
        try broker.publish(queue: queue, body: valid.body)
        try broker.waitForConfirms()
        let deadLetters = queue + ".dead-letter"
        try await eventually("every invalid message dead-lettered") {
            try broker.messageCount(deadLetters) == cases.count
        }
        try await eventually("the valid message after them applied") {
            (try await emulator.stats()["applied"] as? Int ?? 0) == 1
        }
        let messages = try broker.drain(deadLetters)
        #expect(messages.count == cases.count)
        for message in messages {
            let headers = try #require(message.properties.headers)
            let messageId = try #require(message.properties.messageId)
            let index = try #require(Int(messageId.dropFirst(4)))
            let reason = headers["druid-sync-reason"]?.stringValue ?? ""
            #expect(reason.hasPrefix("invalid-event: "), "\(messageId): \(reason)")
            #expect(reason.contains(cases[index].reason), "\(messageId): \(reason) should name \(cases[index].reason)")
            #expect(message.body == cases[index].body, "the dead-letter copy keeps the original body")
            #expect(headers["producer-header"]?.stringValue == "kept-\(index)", "original headers are kept")
            #expect(headers["druid-sync-event-id"]?.stringValue == messageId, "message_id is the event id")
            #expect(headers["druid-sync-original-queue"]?.stringValue == queue)
            #expect(headers["druid-sync-attempts"]?.integerValue == 1)
            #expect(headers["druid-sync-first-failure-at"]?.stringValue?.hasSuffix("Z") == true)
            #expect(headers["druid-sync-last-failure-at"]?.stringValue?.hasSuffix("Z") == true)
        }
        #expect(daemon.process.isRunning, "the daemon keeps going after bad messages")
        #expect(try broker.messageCount(queue) == 0)
        #expect(daemon.terminate() == 0)
    }

    @Test func druidRejectionsAreDeadLetteredWithDruidsError() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        var seeds = factory.seedUsers(count: 2)
        seeds.append(["objectId": "it-owner-\(factory.runId)", "ids": ["email": "taken-\(factory.runId)@example.com"]])
        try await emulator.seedUsers(seeds)
        let daemon = try await startDaemon(emulator: emulator)
        let duplicate =
            "{\"eventId\":\"dup\",\"user\":{\"objectId\":\"\(factory.objectId(0))\",\"ids\":{\"email\":\"taken-\(factory.runId)@example.com\"}}}"
        let missing =
            "{\"eventId\":\"missing\",\"user\":{\"objectId\":\"nobody-\(factory.runId)\",\"ids\":{\"email\":\"n@example.com\"}}}"
        try broker.publish(queue: queue, body: Array(duplicate.utf8))
        try broker.publish(queue: queue, body: Array(missing.utf8))
        try broker.waitForConfirms()
        try await eventually("both rejected messages dead-lettered") {
            try broker.messageCount(queue + ".dead-letter") == 2
        }
        let byEvent = Dictionary(
            uniqueKeysWithValues: try broker.drain(queue + ".dead-letter").map {
                ($0.properties.headers?["druid-sync-event-id"]?.stringValue ?? "", $0.properties.headers ?? [:])
            })
        #expect(byEvent["dup"]?["druid-sync-reason"]?.stringValue == "druid-rejected: email: already exists")
        #expect(byEvent["dup"]?["druid-sync-http-status"]?.integerValue == 400)
        #expect(byEvent["missing"]?["druid-sync-reason"]?.stringValue == "user-not-found")
        #expect(byEvent["missing"]?["druid-sync-http-status"]?.integerValue == 404)
        #expect(daemon.terminate() == 0)
    }

    @Test func unavailableTwiceThenAppliedOnTheThirdAttemptThroughTheRetryQueue() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 1))
        try await emulator.injectFault(["endpoint": "update", "status": 503, "count": 2])
        let daemon = try await startDaemon(emulator: emulator)
        try broker.publish(queue: queue, body: factory.event(0).body)
        try broker.waitForConfirms()
        try await eventually("applied after two 503s") { (try await emulator.stats()["applied"] as? Int ?? 0) == 1 }
        try await daemon.waitForLog("outcome=ack")
        let log = daemon.log
        #expect(log.components(separatedBy: "outcome=retry").count - 1 == 2)
        #expect(log.contains("outcome=ack") && log.contains("attempt=3"))
        let updates = try await emulator.requests(endpoint: "update")
        #expect(updates.count == 3)
        #expect(try broker.messageCount(queue + ".dead-letter") == 0)
        #expect(daemon.terminate() == 0)
    }

    @Test func exhaustedAttemptsAreDeadLetteredAsRetriesExhausted() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 1))
        try await emulator.injectFault(["endpoint": "update", "status": 503, "count": -1])
        let daemon = try await startDaemon(
            emulator: emulator, extra: ["DRUID_SYNC_MAX_ATTEMPTS": "3", "DRUID_SYNC_RETRY_DELAYS": "200ms,500ms"])
        try broker.publish(queue: queue, body: factory.event(0).body)
        try broker.waitForConfirms()
        try await eventually("dead-lettered once attempts ran out") {
            try broker.messageCount(queue + ".dead-letter") == 1
        }
        let message = try #require(try broker.drain(queue + ".dead-letter").first)
        let headers = try #require(message.properties.headers)
        #expect(headers["druid-sync-reason"]?.stringValue == "retries-exhausted: HTTP 503")
        #expect(headers["druid-sync-attempts"]?.integerValue == 3)
        #expect(headers["druid-sync-http-status"]?.integerValue == 503)
        #expect(try await emulator.requests(endpoint: "update").count == 3)
        #expect(daemon.terminate() == 0)
    }

    @Test func unauthorizedOnceGetsANewTokenAndIsApplied() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 1))
        try await emulator.injectFault(["endpoint": "update", "status": 401, "count": 1])
        let daemon = try await startDaemon(emulator: emulator)
        try broker.publish(queue: queue, body: factory.event(0).body)
        try broker.waitForConfirms()
        try await eventually("applied after one 401") { (try await emulator.stats()["applied"] as? Int ?? 0) == 1 }
        try await daemon.waitForLog("outcome=ack")
        #expect(daemon.log.contains("attempt=1"), "a 401 is re-tried at once, not through the retry queue")
        #expect(!daemon.log.contains("outcome=retry"))
        // One token at start-up (the daemon's check), then one per update call.
        let tokens = try await emulator.requests(endpoint: "token")
        #expect(tokens.count == 3, "a new verifier and token for the second call")
        let updates = try await emulator.requests(endpoint: "update")
        #expect(updates.count == 2)
        let verifiers = Set(updates.compactMap { ($0["query"] as? [String: Any])?["code_verifier"] as? String })
        #expect(verifiers.count == 2, "each call uses a verifier of its own")
        #expect(daemon.terminate() == 0)
    }

    @Test func refusedClientCredentialsDeadLetterNothingAndKeepMessagesPending() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 5))
        let daemon = try await startDaemon(
            emulator: emulator, extra: ["DRUID_SYNC_CLIENT_SECRET": "wrong-secret-Kx7"])
        for index in 0..<5 { try broker.publish(queue: queue, body: factory.event(index).body) }
        try broker.waitForConfirms()
        // The first refusals go to the retry queue (logged at error); then the outage breaker
        // opens and the rest wait in the queue.
        try await daemon.waitForLog("refused the service's credentials")
        try await daemon.waitForLog("breaker open: DRUID refuses the service's credentials")
        try await Task.sleep(for: .seconds(2))
        #expect(
            try broker.messageCount(queue + ".dead-letter") == 0, "nothing is dead-lettered for our own credentials")
        #expect(try await emulator.stats()["applied"] as? Int ?? 0 == 0)
        #expect(daemon.terminate() == 0)
        // Every message is still somewhere in the broker: the work queue or a retry queue.
        var pending = try broker.messageCount(queue)
        for index in 0..<5 { pending += (try? broker.messageCount("\(queue).retry.\(index)")) ?? 0 }
        #expect(pending == 5)
        #expect(!daemon.log.contains("wrong-secret-Kx7"))
        #expect(daemon.log.contains("level=error"))
    }

    @Test func killNineMidRunThenRestartLosesNothing() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        let count = 1500
        try await emulator.seedUsers(factory.seedUsers(count: count))
        try await emulator.admin("POST", "/admin/config", ["latencyMs": 5])
        // A first run declares the topology; the events then wait in the queue for the next.
        let declaring = try await startDaemon(emulator: emulator)
        #expect(declaring.terminate() == 0)
        for index in 0..<count { try broker.publish(queue: queue, body: factory.event(index).body) }
        try broker.waitForConfirms()
        let first = try await startDaemon(emulator: emulator)
        try await eventually("some applied before the kill") {
            (try await emulator.stats()["applied"] as? Int ?? 0) >= 200
        }
        first.kill9()
        let appliedAtKill = try await emulator.stats()["applied"] as? Int ?? 0
        #expect(appliedAtKill < count, "the kill happened mid-run")
        let second = try await startDaemon(emulator: emulator)
        try await eventually("every user updated after the restart", timeout: .seconds(120)) {
            try broker.messageCount(queue) == 0
        }
        for index in 0..<count {
            let user = try #require(try await emulator.user(factory.objectId(index)))
            let email = ((user["ids"] as? [String: Any])?["email"] as? [String: Any])?["value"] as? String
            #expect(email == factory.event(index).email, "user \(index) was updated")
        }
        let applied = try await emulator.stats()["applied"] as? Int ?? 0
        print("kill -9 test: \(count) events, \(applied) applications, \(applied - count) duplicates after the kill")
        #expect(try broker.messageCount(queue + ".dead-letter") == 0)
        #expect(second.terminate() == 0)
    }
}
