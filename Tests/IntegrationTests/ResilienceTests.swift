import AMQP
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Broker restarts and freezes, a dead first broker address, a DRUID outage, a graceful
/// stop and systemd notifications (issue 3). These tests stop and freeze the shared broker,
/// so the test command runs this suite on its own (`--filter ResilienceTests --no-parallel`).
@Suite("Resilience", .serialized, .timeLimit(.minutes(5)))
final class ResilienceTests {
    let queue = Harness.uniqueName("resilience")
    let directory: URL
    var daemons: [Daemon] = []

    init() throws {
        directory = try Harness.temporaryDirectory()
    }

    deinit {
        for daemon in daemons { daemon.kill9() }
        if let broker = try? BrokerTool() { broker.deleteTopology(queue: queue) }
    }

    func startDaemon(
        emulator: Emulator, extra: [String: String] = [:], waitUntilConsuming: Bool = true
    )
        async throws -> Daemon
    {
        let environment = Harness.daemonEnvironment(queue: queue, emulator: emulator, extra: extra)
        let daemon = try Daemon(
            environment: environment, logFile: directory.appendingPathComponent("daemon-\(daemons.count).log"))
        daemons.append(daemon)
        if waitUntilConsuming { try await daemon.waitForLog("msg=consuming") }
        return daemon
    }

    /// Starts a daemon once so it declares the topology, then stops it: messages published
    /// afterwards wait in the queue.
    func declareTopology(emulator: Emulator) async throws {
        let daemon = try await startDaemon(emulator: emulator)
        #expect(daemon.terminate() == 0)
    }

    func applied(_ emulator: Emulator) async throws -> Int {
        try await emulator.stats()["applied"] as? Int ?? 0
    }

    func count(_ log: String, _ text: String) -> Int { log.components(separatedBy: text).count - 1 }

    @Test func brokerRestartWhileEventsFlowLosesNothing() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        let total = 2000
        try await emulator.seedUsers(factory.seedUsers(count: total))
        try await emulator.admin("POST", "/admin/config", ["latencyMs": 2])
        try await declareTopology(emulator: emulator)
        let broker = try BrokerTool()
        for index in 0..<total { try broker.publish(queue: queue, body: factory.event(index).body) }
        try broker.waitForConfirms()
        let daemon = try await startDaemon(emulator: emulator)
        try await eventually("some applied before the restart") { try await applied(emulator) >= 300 }
        try BrokerControl.run("stop_app")
        try await Task.sleep(for: .seconds(3))
        try BrokerControl.run("start_app")
        try await daemon.waitForLog("msg=consuming", occurrences: 2, timeout: .seconds(90))
        let after = try BrokerTool()
        try await eventually("the queue drained after the restart", timeout: .seconds(120)) {
            try after.messageCount(queue) == 0 && after.consumerCount(queue) == 1
        }
        for index in 0..<total {
            let user = try #require(try await emulator.user(factory.objectId(index)))
            let email = ((user["ids"] as? [String: Any])?["email"] as? [String: Any])?["value"] as? String
            #expect(email == factory.event(index).email, "user \(index) was updated")
        }
        let applications = try await applied(emulator)
        print("broker restart: \(total) events, \(applications) applications, \(applications - total) duplicates")
        #expect(try after.messageCount(queue + ".dead-letter") == 0)
        #expect(daemon.process.isRunning, "the same process reconnected by itself")
        #expect(count(daemon.log, "connection to the broker lost") >= 1)
        #expect(count(daemon.log, "connection to the broker lost") <= 3, "the loss is logged once, not per message")
        #expect(daemon.terminate() == 0)
    }

    @Test func frozenBrokerIsDetectedWithinTwoHeartbeats() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        let total = 300
        try await emulator.seedUsers(factory.seedUsers(count: total))
        let daemon = try await startDaemon(emulator: emulator, extra: ["DRUID_SYNC_HEARTBEAT": "2s"])
        let broker = try BrokerTool()
        for index in 0..<100 { try broker.publish(queue: queue, body: factory.event(index).body) }
        try broker.waitForConfirms()
        try await eventually("the first events applied") { try await applied(emulator) >= 100 }
        let pid = try BrokerControl.pid()
        kill(pid, SIGSTOP)
        let frozenAt = ContinuousClock.now
        do {
            try await daemon.waitForLog("connection to the broker lost", timeout: .seconds(12))
        } catch {
            kill(pid, SIGCONT)
            throw error
        }
        let detectedAfter = ContinuousClock.now - frozenAt
        try await Task.sleep(for: .seconds(2))
        kill(pid, SIGCONT)
        print("frozen broker detected after \(detectedAfter)")
        #expect(detectedAfter <= .seconds(7), "detected within about two heartbeat intervals (2 s each)")
        try await daemon.waitForLog("msg=consuming", occurrences: 2, timeout: .seconds(60))
        let after = try BrokerTool()
        for index in 100..<total { try after.publish(queue: queue, body: factory.event(index).body) }
        try after.waitForConfirms()
        try await eventually("every event applied after the freeze", timeout: .seconds(90)) {
            try await applied(emulator) >= total
        }
        #expect(try after.messageCount(queue + ".dead-letter") == 0)
        #expect(daemon.terminate() == 0)
    }

    @Test func firstBrokerAddressDownMeansTheSecondIsUsed() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 1))
        let daemon = try await startDaemon(
            emulator: emulator,
            extra: ["DRUID_SYNC_AMQP_URL": "amqp://guest:guest@127.0.0.1:5673/%2F,\(Harness.brokerURL)"])
        #expect(daemon.log.contains("cannot connect to the broker"), "the first address was tried and failed")
        #expect(daemon.log.contains("msg=consuming endpoint=amqp://guest@127.0.0.1:5672"))
        let broker = try BrokerTool()
        try broker.publish(queue: queue, body: factory.event(0).body)
        try broker.waitForConfirms()
        try await eventually("applied through the second address") { try await applied(emulator) == 1 }
        #expect(daemon.terminate() == 0)
    }

    @Test func queueDeletedUnderTheConsumerIsDeclaredAndConsumedAgain() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        try await emulator.seedUsers(factory.seedUsers(count: 1))
        let daemon = try await startDaemon(emulator: emulator)
        let broker = try BrokerTool()
        try broker.connection.deleteQueue(queue)
        try await daemon.waitForLog("cancelled the consumer")
        try await daemon.waitForLog("msg=consuming", occurrences: 2)
        let after = try BrokerTool()
        #expect(try after.consumerCount(queue) == 1)
        try after.publish(queue: queue, body: factory.event(0).body)
        try after.waitForConfirms()
        try await eventually("applied after the queue came back") { try await applied(emulator) == 1 }
        #expect(daemon.terminate() == 0)
    }

    @Test func brokerAlarmHoldsCopiesButNotAcks() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        var seeds = factory.seedUsers(count: 5)
        seeds.append(["objectId": "it-owner-\(factory.runId)", "ids": ["email": "taken-\(factory.runId)@example.com"]])
        try await emulator.seedUsers(seeds)
        try await emulator.admin("POST", "/admin/config", ["latencyMs": 1500])
        let daemon = try await startDaemon(emulator: emulator)
        let broker = try BrokerTool()
        // One message DRUID will reject (its dead-letter copy needs a publish), five it will apply.
        let rejected =
            "{\"eventId\":\"dup\",\"user\":{\"objectId\":\"\(factory.objectId(0))\",\"ids\":{\"email\":\"taken-\(factory.runId)@example.com\"}}}"
        try broker.publish(queue: queue, body: Array(rejected.utf8))
        for index in 1..<5 { try broker.publish(queue: queue, body: factory.event(index).body) }
        try broker.waitForConfirms()
        // A memory alarm: the broker blocks every connection that publishes.
        try BrokerControl.run("set_vm_memory_high_watermark", "0.000001")
        var alarmCleared = false
        defer { if !alarmCleared { try? BrokerControl.run("set_vm_memory_high_watermark", "0.4") } }
        try await daemon.waitForLog("blocked publishing", timeout: .seconds(20))
        try await eventually("the four valid messages applied and acked during the alarm") {
            try await applied(emulator) == 4 && count(daemon.log, "outcome=ack") == 4
        }
        #expect(count(daemon.log, "outcome=dead-letter") == 0, "the dead-letter copy waits for the alarm to clear")
        try BrokerControl.run("set_vm_memory_high_watermark", "0.4")
        alarmCleared = true
        try await daemon.waitForLog("unblocked publishing", timeout: .seconds(20))
        try await daemon.waitForLog("outcome=dead-letter", timeout: .seconds(20))
        let after = try BrokerTool()
        try await eventually("the dead-letter copy confirmed and the original acked") {
            try after.messageCount(queue + ".dead-letter") == 1 && after.messageCount(queue) == 0
        }
        #expect(daemon.terminate() == 0)
    }

    @Test func druidOutageOpensTheBreakerAndNothingIsDeadLettered() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        let total = 200
        try await emulator.seedUsers(factory.seedUsers(count: total))
        try await declareTopology(emulator: emulator)
        try await emulator.injectFault(["endpoint": "any", "status": 503, "forSeconds": 60])
        try await emulator.injectFault(["endpoint": "any", "status": 429, "retryAfter": "3", "count": 2])
        let broker = try BrokerTool()
        for index in 0..<total { try broker.publish(queue: queue, body: factory.event(index).body) }
        try broker.waitForConfirms()
        let daemon = try await startDaemon(
            emulator: emulator, extra: ["DRUID_SYNC_MAX_ATTEMPTS": "3", "DRUID_SYNC_LOG_LEVEL": "debug"])
        try await daemon.waitForLog("breaker open")
        try await eventually("everything applied once DRUID is back", timeout: .seconds(150)) {
            try await applied(emulator) >= total
        }
        try await eventually("the queues drained") {
            try broker.messageCount(queue) == 0 && broker.messageCount(queue + ".retry.0") == 0
        }
        let log = daemon.log
        #expect(try broker.messageCount(queue + ".dead-letter") == 0, "an outage dead-letters nothing")
        #expect(count(log, "breaker open") >= 1)
        #expect(count(log, "breaker closed") >= 1)
        let retryLines = count(log, "outcome=retry")
        print("DRUID outage: \(retryLines) retry lines, \(count(log, "breaker open")) openings")
        #expect(retryLines <= 20, "the log shows the breaker, not a line per failed attempt")
        let updates = try await emulator.requests(endpoint: "update")
        #expect(updates.count < total * 2, "no retry storm while DRUID was down")
        #expect(daemon.terminate() == 0)
    }

    @Test func sigtermWithSixtyFourInFlightSettlesThemAndExitsCleanly() async throws {
        let emulator = try Emulator()
        let factory = EventFactory()
        let total = 1000
        try await emulator.seedUsers(factory.seedUsers(count: total))
        try await emulator.admin("POST", "/admin/config", ["latencyMs": 200])
        try await declareTopology(emulator: emulator)
        let broker = try BrokerTool()
        for index in 0..<total { try broker.publish(queue: queue, body: factory.event(index).body) }
        try broker.waitForConfirms()
        let daemon = try await startDaemon(emulator: emulator)
        try await eventually("64 in flight") { try await applied(emulator) >= 64 }
        let stoppedAt = ContinuousClock.now
        let status = daemon.terminate(timeout: .seconds(25))
        let took = ContinuousClock.now - stoppedAt
        print("graceful stop took \(took)")
        #expect(status == 0)
        #expect(took < .seconds(20), "within the grace period")
        let log = daemon.log
        #expect(!log.contains("grace period over"), "every in-flight message was settled")
        let acked = count(log, "outcome=ack")
        let remaining = try broker.messageCount(queue)
        #expect(remaining > 0, "the rest stayed in the queue")
        #expect(acked + remaining == total, "nothing lost: \(acked) acked + \(remaining) waiting")
        #expect(try await applied(emulator) == acked, "no update was left half-done")
    }

    @Test func systemdHearsReadyStatusWatchdogAndStopping() async throws {
        let emulator = try Emulator()
        let listener = try NotifyListener(path: directory.appendingPathComponent("notify.sock").path)
        let daemon = try await startDaemon(
            emulator: emulator,
            extra: ["NOTIFY_SOCKET": listener.path, "WATCHDOG_USEC": "2000000"])
        var received: [String] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            received += listener.receive()
            if received.contains(where: { $0.contains("WATCHDOG=1") })
                && received.contains(where: { $0.contains("STATUS=consuming;") })
            {
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(received.first?.contains("READY=1") == true, "READY=1 first: \(received)")
        #expect(received.contains { $0.contains("WATCHDOG=1") })
        #expect(received.contains { $0.contains("STATUS=consuming;") && $0.contains("breaker closed") })
        #expect(daemon.terminate() == 0)
        received += listener.receive()
        #expect(received.contains { $0.contains("STOPPING=1") })
    }
}

/// Runs `rabbitmqctl` and finds the broker's process.
enum BrokerControl {
    static func run(_ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/rabbitmqctl")
        process.arguments = ["-q"] + arguments
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        while process.isRunning { usleep(50_000) }
        guard process.terminationStatus == 0 else {
            throw HarnessError("rabbitmqctl \(arguments.joined(separator: " ")) failed")
        }
    }

    /// The PID of the broker's Erlang VM.
    static func pid() throws -> pid_t {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/rabbitmqctl")
        process.arguments = ["-q", "eval", "os:getpid()."]
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        while process.isRunning { usleep(50_000) }
        let digits = String(decoding: data, as: UTF8.self).filter(\.isNumber)
        guard let pid = pid_t(digits) else { throw HarnessError("cannot find the broker's PID") }
        return pid
    }
}

/// A datagram socket standing in for systemd's notification socket.
final class NotifyListener {
    let path: String
    private let descriptor: Int32

    init(path: String) throws {
        self.path = path
        unlink(path)
        descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in path.utf8.prefix(buffer.count - 1).enumerated() { buffer[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard descriptor >= 0, bound == 0 else { throw HarnessError("cannot bind \(path)") }
        _ = fcntl(descriptor, F_SETFL, O_NONBLOCK)
    }

    deinit {
        close(descriptor)
        unlink(path)
    }

    /// The datagrams waiting now.
    func receive() -> [String] {
        var messages: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(descriptor, &buffer, buffer.count, 0)
            guard count > 0 else { break }
            messages.append(String(decoding: buffer[0..<count], as: UTF8.self))
        }
        return messages
    }
}
