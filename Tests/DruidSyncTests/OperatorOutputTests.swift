import AMQP
import Foundation
import Testing

@testable import DruidSync

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `body` with a logger writing into a pipe and returns the lines it wrote.
func loggedLines(
    level: LogLevel = .trace, format: LogFormat, isJournal: Bool, _ body: (Logger) -> Void
) throws -> [String] {
    var ends: [Int32] = [0, 0]
    try #require(pipe(&ends) == 0)
    let logger = Logger(level: level, format: format, descriptor: ends[1], isJournal: isJournal)
    body(logger)
    close(ends[1])
    let data = FileHandle(fileDescriptor: ends[0], closeOnDealloc: true).readDataToEndOfFile()
    return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
}

@Suite struct JournalPrefixTests {
    @Test func eachLineStartsWithItsSyslogPriorityWhenStderrIsTheJournal() throws {
        let lines = try loggedLines(format: .logfmt, isJournal: true) { logger in
            logger.error("e")
            logger.warning("w")
            logger.notice("n")
            logger.info("i")
            logger.debug("d")
            logger.trace("t")
        }
        #expect(lines.map { String($0.prefix(3)) } == ["<3>", "<4>", "<5>", "<6>", "<7>", "<7>"])
        #expect(lines[1].hasPrefix("<4>time="))
        #expect(lines[1].hasSuffix(" level=warning msg=w"))
    }

    @Test func jsonLinesKeepThePrefixOutsideTheObject() throws {
        let lines = try loggedLines(format: .json, isJournal: true) { $0.error("broken", [("queue", "q")]) }
        let line = try #require(lines.first)
        #expect(line.hasPrefix("<3>{\"time\":\""))
        let object = try JSONSerialization.jsonObject(with: Data(line.dropFirst(3).utf8)) as? [String: Any]
        #expect(object?["level"] as? String == "error")
        #expect(object?["queue"] as? String == "q")
    }

    @Test func noPrefixOutsideTheJournal() throws {
        let lines = try loggedLines(format: .logfmt, isJournal: false) { $0.error("e") }
        #expect(lines.first?.hasPrefix("time=") == true)
    }

    @Test func linesBelowTheLevelAreNotWritten() throws {
        let lines = try loggedLines(level: .warning, format: .logfmt, isJournal: true) { logger in
            logger.info("hidden")
            logger.warning("shown")
        }
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix("<4>") == true)
    }
}

@Suite struct MetricsTextTests {
    var snapshot: MetricsSnapshot {
        var snapshot = MetricsSnapshot()
        snapshot.received = 120
        snapshot.acked = 100
        snapshot.retried = 7
        snapshot.requeued = 1
        snapshot.held = 2
        snapshot.inFlight = 3
        snapshot.deadLetteredByReason = ["invalid-event": 9, "user-not-found": 3]
        snapshot.latency = (p50: .microseconds(12_345), p99: .milliseconds(1_250))
        snapshot.isBreakerOpen = true
        return snapshot
    }

    @Test func samplesCarryTheCounters() {
        let text = MetricsText.render(snapshot)
        let samples = Set(text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map(String.init))
        #expect(
            samples == [
                "druid_sync_up 1",
                "druid_sync_messages_received_total 120",
                "druid_sync_messages_acked_total 100",
                "druid_sync_messages_retried_total 7",
                "druid_sync_messages_dead_lettered_total{reason=\"druid-rejected\"} 0",
                "druid_sync_messages_dead_lettered_total{reason=\"invalid-event\"} 9",
                "druid_sync_messages_dead_lettered_total{reason=\"retries-exhausted\"} 0",
                "druid_sync_messages_dead_lettered_total{reason=\"user-not-found\"} 3",
                "druid_sync_messages_requeued_total 1",
                "druid_sync_messages_held_total 2",
                "druid_sync_in_flight 3",
                "druid_sync_breaker_open 1",
                "druid_sync_druid_latency_seconds{quantile=\"0.5\"} 0.012345",
                "druid_sync_druid_latency_seconds{quantile=\"0.99\"} 1.250000",
            ])
    }

    /// Every family has HELP then TYPE before its samples; counters end in `_total`;
    /// the text ends with a line end (the textfile collector refuses anything else).
    @Test func followsTheExpositionFormat() {
        let text = MetricsText.render(snapshot)
        #expect(text.hasSuffix("\n"))
        var declared: [String: String] = [:]
        var lastHelp: String?
        for line in text.split(separator: "\n").map(String.init) {
            let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
            if line.hasPrefix("# HELP ") {
                lastHelp = parts[2]
                #expect(parts.count == 4 && !parts[3].isEmpty)
            } else if line.hasPrefix("# TYPE ") {
                #expect(parts[2] == lastHelp, "TYPE follows its HELP")
                #expect(["counter", "gauge"].contains(parts[3]))
                declared[parts[2]] = parts[3]
            } else {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                let type = declared[name]
                #expect(type != nil, "\(name) is declared before its samples")
                if type == "counter" { #expect(name.hasSuffix("_total")) }
                #expect(Double(parts.last ?? "") != nil, "\(line) ends with a number")
            }
        }
    }

    @Test func latencyIsLeftOutWhenNothingWasMeasuredAndUpIsZeroAfterAStop() {
        var stopped = MetricsSnapshot()
        stopped.isUp = false
        let text = MetricsText.render(stopped)
        #expect(text.contains("druid_sync_up 0\n"))
        #expect(text.contains("# TYPE druid_sync_druid_latency_seconds gauge\n"))
        #expect(!text.contains("{quantile="))
    }

    @Test func labelValuesAreEscaped() {
        #expect(MetricsText.escapedLabel("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
        var odd = MetricsSnapshot()
        odd.deadLetteredByReason = ["we\"ird": 1]
        #expect(MetricsText.render(odd).contains("{reason=\"we\\\"ird\"} 1\n"))
    }

    @Test func secondsHaveMicrosecondPrecision() {
        #expect(MetricsText.seconds(.zero) == "0.000000")
        #expect(MetricsText.seconds(.nanoseconds(999_999_600)) == "1.000000")
        #expect(MetricsText.seconds(.seconds(61) + .microseconds(7)) == "61.000007")
    }

    @Test func theFileIsReplacedWholeAndNoTemporaryFileStays() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "metrics-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("druid-sync.prom").path
        #expect(MetricsFileWriter.replace(path, with: Array("first 1\n".utf8)) == nil)
        #expect(MetricsFileWriter.replace(path, with: Array("second 2\n".utf8)) == nil)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "second 2\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path) == ["druid-sync.prom"])
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o644)
    }

    @Test func aFailedWriteSaysWhy() {
        let problem = MetricsFileWriter.replace("/nonexistent-dir-\(getpid())/m.prom", with: Array("x 1\n".utf8))
        #expect(problem?.contains("cannot create /nonexistent-dir-") == true)
        #expect(problem?.contains("No such file or directory") == true)
    }
}

@Suite struct DeadLetterOutputTests {
    @Test func passwordsAreMaskedAtAnyDepthAndTheRestIsKept() {
        let body =
            #"{"eventId":"e1","user":{"objectId":"u","password":"hunter2","datas":{"Old_Password":"x"}},"list":[{"clientSecret":"s"}],"n":1.50}"#
        #expect(
            BodyMasking.displayText(Array(body.utf8))
                == #"{"eventId":"e1","user":{"objectId":"u","password":"***","datas":{"Old_Password":"***"}},"list":[{"clientSecret":"***"}],"n":1.50}"#
        )
    }

    @Test func aBodyThatIsNotJSONIsShownOnlyWhenItMentionsNoPassword() {
        #expect(BodyMasking.displayText(Array("hello\nworld".utf8)) == "hello\\nworld")
        #expect(
            BodyMasking.displayText(Array("{\"user\":{\"PASSWORD\":\"abc\"".utf8))
                == "(body withheld: not JSON, and it mentions a password or secret)")
    }

    @Test func theCopyLosesTheFailureBookkeepingAndKeepsTheProducersHeaders() {
        var original = MessageProperties(
            contentType: "application/json",
            headers: [
                "producer": .string("p"),
                "druid-sync-reason": .string("user-not-found"),
                "druid-sync-attempts": .int64(10),
                "druid-sync-attempt": .int64(9),
                "druid-sync-first-failure-at": .string("2026-12-01T10:00:00.000Z"),
                "druid-sync-last-failure-at": .string("2026-12-01T11:00:00.000Z"),
                "druid-sync-event-id": .string("e"),
                "druid-sync-original-queue": .string("q"),
                "druid-sync-publish-id": .uint64(4),
                "x-death": .array([]),
                "x-first-death-reason": .string("delivery_limit"),
                "trace-id": .string("t"),
            ], deliveryMode: 2, messageId: "m")
        original.userId = "producer-user"
        original.correlationId = "c"
        let copy = DeadLetterCommands.replayProperties(original)
        #expect(copy.headers?.entries.map(\.key) == ["producer", "trace-id"])
        #expect(copy.userId == nil, "the broker would refuse a user-id that is not ours")
        #expect(copy.messageId == "m" && copy.correlationId == "c" && copy.deliveryMode == 2)
        #expect(copy.contentType == "application/json")

        let bare = DeadLetterCommands.replayProperties(
            MessageProperties(headers: ["druid-sync-reason": .string("r")]))
        #expect(bare.headers == nil)
    }

    @Test func summaryCountsByReasonWithOldestAndNewest() {
        func info(_ reason: String?, _ time: String?) -> DeadLetterInfo {
            var headers = AMQPTable()
            if let reason { headers["druid-sync-reason"] = .string(reason) }
            if let time { headers["druid-sync-last-failure-at"] = .string(time) }
            return DeadLetterInfo(properties: MessageProperties(headers: headers))
        }
        var summary = DeadLetterSummary()
        summary.add(info("user-not-found", "2026-12-02T10:00:00.000Z"))
        summary.add(info("invalid-event: x", "2026-12-01T09:00:00.000Z"))
        summary.add(info("user-not-found", "2026-12-03T10:00:00.000Z"))
        summary.add(info(nil, nil))
        #expect(
            summary.table(queue: "q.dead-letter") == [
                "q.dead-letter: 4 dead letters",
                "count  oldest                    newest                    reason",
                "    2  2026-12-02T10:00:00.000Z  2026-12-03T10:00:00.000Z  user-not-found",
                "    1  -                         -                         (no reason header)",
                "    1  2026-12-01T09:00:00.000Z  2026-12-01T09:00:00.000Z  invalid-event: x",
                "oldest 2026-12-01T09:00:00.000Z, newest 2026-12-03T10:00:00.000Z",
            ])
        #expect(DeadLetterSummary().table(queue: "q.dead-letter") == ["q.dead-letter: no dead letters"])
    }

    @Test func replayOptionsAreParsedStrictly() throws {
        let options = try DeadLetterCommands.ReplayOptions.parse(["--reason", "HTTP 503", "--limit", "5", "--dry-run"])
            .get()
        #expect(options.reason == "HTTP 503" && options.limit == 5 && options.isDryRun)
        for bad in [["--limit", "0"], ["--limit"], ["--limit", "x"], ["--reason"], ["--force"]] {
            #expect(throws: DeadLetterCommands.ReplayOptions.Problem.self) {
                try DeadLetterCommands.ReplayOptions.parse(bad).get()
            }
        }
    }
}

@Test("mimalloc serves malloc in a process that links DruidSync, and says so")
func mimallocIsTheAllocator() {
    #expect(MemoryAllocator.isMimallocInUse)
    #expect(MemoryAllocator.mimallocVersion.hasPrefix("2."))
    #expect(MemoryAllocator.description == "mimalloc \(MemoryAllocator.mimallocVersion)")
}
