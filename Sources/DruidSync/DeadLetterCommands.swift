import AMQP
import UserUpdates

/// `druid-sync dead-letters list` and `druid-sync dead-letters replay`: what is in the
/// dead-letter queue, and moving it back to the work queue once the cause is fixed.
///
/// Both read the queue with `basic.get` and never with auto-ack, so a message leaves the
/// dead-letter queue only when this command acknowledges it, and it acknowledges only a
/// message whose copy the broker has confirmed in the work queue. Whatever it has read but
/// not acknowledged returns to the queue when its connection closes, killed or not.
///
/// Each reads at most as many messages as the queue held when it started: the messages it
/// leaves are held unacknowledged (not requeued one by one), so it never reads one twice.
///
/// A quorum dead-letter queue counts each such return as a delivery attempt; with a
/// `delivery-limit` on it, many `list` runs could drop messages. druid-sync declares the
/// dead-letter queue as a classic queue.
enum DeadLetterCommands {
    static func run(arguments: [String], environment: [String: String]) -> Int32 {
        var arguments = arguments
        guard let subcommand = arguments.first else {
            return CommandLineInterface.usageError("dead-letters needs a subcommand: list or replay")
        }
        arguments.removeFirst()
        switch subcommand {
        case "list":
            guard let options = ListOptions(arguments: arguments) else { return listUsage(arguments) }
            guard let configuration = OperatorConsole.configuration(from: environment) else { return 2 }
            return list(configuration, options: options)
        case "replay":
            let options: ReplayOptions
            switch ReplayOptions.parse(arguments) {
            case .success(let parsed): options = parsed
            case .failure(let problem): return CommandLineInterface.usageError("dead-letters replay: \(problem.text)")
            }
            guard let configuration = OperatorConsole.configuration(from: environment) else { return 2 }
            return replay(configuration, options: options)
        default:
            return CommandLineInterface.usageError("unknown dead-letters subcommand \(subcommand): use list or replay")
        }
    }

    private static func listUsage(_ arguments: [String]) -> Int32 {
        CommandLineInterface.usageError(
            "dead-letters list takes --show-bodies and --json only, not: \(arguments.joined(separator: " "))")
    }

    // MARK: list

    struct ListOptions {
        var showsBodies = false
        var printsJSON = false

        init?(arguments: [String]) {
            for argument in arguments {
                switch argument {
                case "--show-bodies": showsBodies = true
                case "--json": printsJSON = true
                default: return nil
                }
            }
        }
    }

    static func list(_ configuration: Configuration, options: ListOptions) -> Int32 {
        let queue = configuration.topology.deadLetterQueue
        guard let connection = OperatorConsole.connect(configuration, purpose: "dead-letters list") else { return 1 }
        defer { connection.close() }
        var summary = DeadLetterSummary()
        var bodies: [DeadLetterInfo] = []
        do throws(AMQPError) {
            let count = try connection.declareQueue(name: queue, passive: true).messageCount
            while summary.total < count, let message = try connection.get(queue: queue, autoAck: false) {
                var info = DeadLetterInfo(message)
                summary.add(info)
                guard options.showsBodies else { continue }
                if options.printsJSON {
                    info.maskedBody = BodyMasking.displayText(message.body)
                    bodies.append(info)
                } else {
                    OperatorConsole.line("message \(summary.total): \(info.headline)")
                    OperatorConsole.line("  " + BodyMasking.displayText(message.body))
                }
            }
        } catch {
            OperatorConsole.problem("cannot read \(queue): \(error)\(missingQueueHint(error))")
            return 1
        }
        if options.printsJSON {
            OperatorConsole.line(summary.json(queue: queue, bodies: options.showsBodies ? bodies : nil))
        } else {
            for line in summary.table(queue: queue) { OperatorConsole.line(line) }
        }
        return 0
    }

    private static func missingQueueHint(_ error: AMQPError) -> String {
        error.replyCode == 404
            ? " (fix: the queue does not exist yet: start the daemon once, or check DRUID_SYNC_QUEUE)" : ""
    }

    // MARK: replay

    struct ReplayOptions {
        /// Only messages whose `druid-sync-reason` contains this text (case-sensitive).
        var reason: String?
        /// At most this many messages are moved.
        var limit: Int?
        var isDryRun = false

        struct Problem: Error {
            let text: String
        }

        static func parse(_ arguments: [String]) -> Result<ReplayOptions, Problem> {
            var options = ReplayOptions()
            var remaining = arguments[...]
            while let argument = remaining.popFirst() {
                switch argument {
                case "--dry-run":
                    options.isDryRun = true
                case "--reason":
                    guard let text = remaining.popFirst(), !text.isEmpty else {
                        return .failure(Problem(text: "--reason needs a text"))
                    }
                    options.reason = text
                case "--limit":
                    guard let text = remaining.popFirst(), let limit = Int(text), limit > 0 else {
                        return .failure(Problem(text: "--limit needs a whole number from 1"))
                    }
                    options.limit = limit
                default:
                    return .failure(Problem(text: "unknown option \(argument)"))
                }
            }
            return .success(options)
        }
    }

    /// Copies published and confirmed before their dead-letter originals are acknowledged.
    static let batchSize = 100
    /// How long to wait for the broker to confirm one batch before giving up.
    static let confirmTimeout = Duration.seconds(30)

    static func replay(_ configuration: Configuration, options: ReplayOptions) -> Int32 {
        let topology = configuration.topology
        let source = topology.deadLetterQueue
        let target = topology.workQueue
        guard let connection = OperatorConsole.connect(configuration, purpose: "dead-letters replay") else { return 1 }
        defer { connection.close() }
        var progress = ReplayProgress(isDryRun: options.isDryRun, drawsProgress: OperatorConsole.isTerminal)
        let limit = options.limit ?? Int.max
        var batch: [GetResult] = []
        do throws(ReplayFailure) {
            do throws(AMQPError) {
                progress.total = Int(try connection.declareQueue(name: source, passive: true).messageCount)
            } catch {
                throw ReplayFailure("cannot read \(source): \(error)\(missingQueueHint(error))")
            }
            do throws(AMQPError) {
                try connection.declareQueue(name: target, passive: true)
                if !options.isDryRun { try connection.enableConfirms() }
            } catch {
                throw ReplayFailure("cannot publish to the work queue \(target): \(error)\(missingQueueHint(error))")
            }
            while progress.examined < progress.total && progress.moved + batch.count < limit {
                let next: GetResult?
                do throws(AMQPError) {
                    next = try connection.get(queue: source, autoAck: false)
                } catch {
                    throw ReplayFailure("cannot read \(source): \(error)")
                }
                guard let message = next else { break }
                progress.examined += 1
                let info = DeadLetterInfo(message)
                guard options.reason.map({ info.reason?.contains($0) == true }) ?? true else {
                    progress.skipped += 1
                    continue
                }
                if options.isDryRun {
                    progress.moved += 1
                    progress.clear()
                    OperatorConsole.line("would move: \(info.headline)")
                    progress.draw()
                    continue
                }
                batch.append(message)
                if batch.count == batchSize {
                    try move(batch, to: target, on: connection)
                    progress.moved += batch.count
                    batch.removeAll(keepingCapacity: true)
                    progress.draw()
                }
            }
            try move(batch, to: target, on: connection)
            progress.moved += batch.count
        } catch {
            progress.clear()
            OperatorConsole.problem(error.text)
            if progress.examined > 0 {
                OperatorConsole.line(
                    progress.summary(source: source, target: target, options: options, isComplete: false))
            }
            return 1
        }
        progress.clear()
        OperatorConsole.line(progress.summary(source: source, target: target, options: options, isComplete: true))
        return 0
    }

    struct ReplayFailure: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }

    /// Publishes a copy of each message to the work queue, waits until the broker has
    /// confirmed every copy, then acknowledges the originals. On any refusal, return or
    /// timeout nothing of the batch is acknowledged: the originals stay (some may now be in
    /// both queues, which costs DRUID a repeated update, never a message).
    static func move(_ batch: [GetResult], to target: String, on connection: AMQPConnection) throws(ReplayFailure) {
        guard !batch.isEmpty else { return }
        var pending = Set<UInt64>()
        do throws(AMQPError) {
            for message in batch {
                let sequence = try connection.publish(
                    exchange: "", routingKey: target, body: message.body,
                    properties: replayProperties(message.properties), mandatory: true)
                pending.insert(sequence)
            }
        } catch {
            throw ReplayFailure("cannot publish to \(target): \(error); the dead letters of this batch stay")
        }
        var refused = 0
        var returned = 0
        let deadline = ContinuousClock.now + confirmTimeout
        while !pending.isEmpty {
            guard ContinuousClock.now < deadline else {
                throw ReplayFailure(
                    "the broker did not confirm \(pending.count) copies within \(confirmTimeout); "
                        + "the dead letters of this batch stay (a resource alarm blocks publishing?)")
            }
            let next: AMQPEvent?
            do throws(AMQPError) {
                next = try connection.nextSignal(timeout: .milliseconds(500))
            } catch {
                throw ReplayFailure("lost the broker while waiting for confirms: \(error)")
            }
            guard let signal = next else { continue }
            switch signal {
            case .confirmed(let sequence, let multiple), .refused(let sequence, let multiple):
                let settled = multiple ? pending.filter { $0 <= sequence } : pending.intersection([sequence])
                pending.subtract(settled)
                if case .refused = signal { refused += settled.count }
            case .returned:
                returned += 1
            default:
                break
            }
        }
        guard refused == 0 && returned == 0 else {
            throw ReplayFailure(
                "the broker refused \(refused) and could not route \(returned) copies to \(target); "
                    + "none of this batch was acknowledged, so the dead letters stay (some may now be in both queues)")
        }
        do throws(AMQPError) {
            for message in batch { try connection.ack(message.deliveryTag) }
        } catch {
            throw ReplayFailure(
                "lost the broker while acknowledging: \(error); unacknowledged dead letters stay in both queues")
        }
    }

    /// The original's properties and body for the copy, without druid-sync's failure
    /// bookkeeping (every `druid-sync-` header, so the attempt count starts again) and
    /// without the broker's own `x-death` history; the producer's headers stay.
    static func replayProperties(_ original: MessageProperties) -> MessageProperties {
        var properties = original
        // The broker checks user-id against the publishing user, which is ours, not the producer's.
        properties.userId = nil
        if let headers = original.headers {
            let kept = headers.entries.filter { !isFailureBookkeeping($0.key) }
            properties.headers = kept.isEmpty ? nil : AMQPTable(kept)
        }
        return properties
    }

    static func isFailureBookkeeping(_ header: String) -> Bool {
        header.hasPrefix("druid-sync-") || header == "x-death" || header.hasPrefix("x-first-death-")
            || header.hasPrefix("x-last-death-")
    }
}

/// The counters of a replay, its progress line and its summary.
struct ReplayProgress {
    let isDryRun: Bool
    let drawsProgress: Bool
    var total = 0
    var examined = 0
    var moved = 0
    var skipped = 0
    private var isDrawn = false

    init(isDryRun: Bool, drawsProgress: Bool) {
        self.isDryRun = isDryRun
        self.drawsProgress = drawsProgress
    }

    /// Redraws the progress line (on a terminal only).
    mutating func draw() {
        guard drawsProgress else { return }
        let verb = isDryRun ? "would move" : "moved"
        OperatorConsole.raw("\r\(verb) \(moved), skipped \(skipped), examined \(examined) of \(total)\u{1B}[K")
        isDrawn = true
    }

    /// Removes the progress line before a whole line is printed.
    mutating func clear() {
        guard isDrawn else { return }
        OperatorConsole.raw("\r\u{1B}[K")
        isDrawn = false
    }

    func summary(
        source: String, target: String, options: DeadLetterCommands.ReplayOptions, isComplete: Bool
    ) -> String {
        var parts: [String] = []
        if isDryRun {
            parts.append(
                "dry run: would move \(moved) of \(total) dead letters from \(source) to \(target); nothing moved")
        } else {
            parts.append(
                "\(isComplete ? "" : "stopped: ")moved \(moved) of \(total) dead letters from \(source) to \(target) "
                    + "(attempt counts reset)")
        }
        if let reason = options.reason, skipped > 0 {
            parts.append("\(skipped) without \(JSONText.quoted(reason)) in their reason stay")
        }
        if let limit = options.limit, moved >= limit { parts.append("--limit \(limit) reached") }
        return parts.joined(separator: "; ")
    }
}

/// What `list` and `replay` show of one dead letter: its failure headers, never its body.
struct DeadLetterInfo {
    var reason: String?
    var eventId: String?
    var attempts: Int?
    var lastFailureAt: String?
    var messageId: String?
    /// The body with its secrets masked, filled in only for `list --show-bodies --json`.
    var maskedBody: String?

    init(_ message: GetResult) { self.init(properties: message.properties) }

    init(properties: MessageProperties) {
        let headers = HeaderConversion.headers(from: properties.headers)
        func text(_ name: String) -> String? { HeaderTable.value(name, in: headers)?.stringValue }
        reason = text(FailureHeaders.reason)
        if reason == nil, let brokerReason = text("x-first-death-reason") {
            // Dead-lettered by the broker itself (the work queue's backstop), not by druid-sync.
            reason = "dead-lettered by the broker: \(brokerReason)"
        }
        eventId = text(FailureHeaders.eventId)
        attempts = HeaderTable.value(FailureHeaders.attempts, in: headers)?.integerValue
        lastFailureAt = text(FailureHeaders.lastFailureAt)
        messageId = properties.messageId
    }

    /// `event E, reason "R", attempts N, last failure T`.
    var headline: String {
        var parts = ["event \(eventId ?? messageId ?? "(no id)")"]
        parts.append("reason \(JSONText.quoted(reason ?? "(none)"))")
        if let attempts { parts.append("attempts \(attempts)") }
        if let lastFailureAt { parts.append("last failure \(lastFailureAt)") }
        return parts.joined(separator: ", ")
    }
}

/// Counts by reason, with the oldest and newest last failure of each.
struct DeadLetterSummary {
    struct Group {
        var count = 0
        var oldest: String?
        var newest: String?

        mutating func add(_ time: String?) {
            count += 1
            // Our timestamps are fixed-width RFC 3339 in UTC, so text order is time order.
            guard let time else { return }
            if oldest.map({ time < $0 }) ?? true { oldest = time }
            if newest.map({ time > $0 }) ?? true { newest = time }
        }
    }

    private(set) var total = 0
    private(set) var all = Group()
    private(set) var byReason: [String: Group] = [:]

    mutating func add(_ info: DeadLetterInfo) {
        total += 1
        all.add(info.lastFailureAt)
        byReason[info.reason ?? "(no reason header)", default: Group()].add(info.lastFailureAt)
    }

    /// Reasons with the most messages first.
    var sortedReasons: [(reason: String, group: Group)] {
        byReason.map { (reason: $0.key, group: $0.value) }.sorted {
            $0.group.count != $1.group.count ? $0.group.count > $1.group.count : $0.reason < $1.reason
        }
    }

    func table(queue: String) -> [String] {
        guard total > 0 else { return ["\(queue): no dead letters"] }
        var lines = ["\(queue): \(total) dead letter\(total == 1 ? "" : "s")"]
        let width = max(5, String(sortedReasons.first?.group.count ?? 0).count)
        func padded(_ text: String, _ size: Int) -> String {
            text.count >= size ? text : String(repeating: " ", count: size - text.count) + text
        }
        func column(_ time: String?) -> String {
            let text = time ?? "-"
            return text + String(repeating: " ", count: max(0, 24 - text.count))
        }
        lines.append(padded("count", width) + "  " + column("oldest") + "  " + column("newest") + "  reason")
        for (reason, group) in sortedReasons {
            lines.append(
                padded(String(group.count), width) + "  " + column(group.oldest) + "  " + column(group.newest)
                    + "  " + JSONText.printable(reason))
        }
        lines.append("oldest \(all.oldest ?? "-"), newest \(all.newest ?? "-")")
        return lines
    }

    func json(queue: String, bodies: [DeadLetterInfo]?) -> String {
        var writer = JSONWriter()
        writer.writeByte(UInt8(ascii: "{"))
        writer.writeName("queue")
        writer.writeString(queue)
        writer.writeByte(UInt8(ascii: ","))
        writer.writeName("messages")
        writer.writeInteger(total)
        writer.writeByte(UInt8(ascii: ","))
        writer.writeName("oldest")
        writer.writeValue(all.oldest.map(JSONValue.string) ?? .null)
        writer.writeByte(UInt8(ascii: ","))
        writer.writeName("newest")
        writer.writeValue(all.newest.map(JSONValue.string) ?? .null)
        writer.writeByte(UInt8(ascii: ","))
        writer.writeName("reasons")
        writer.writeByte(UInt8(ascii: "["))
        for (index, (reason, group)) in sortedReasons.enumerated() {
            if index > 0 { writer.writeByte(UInt8(ascii: ",")) }
            writer.writeValue(
                .object([
                    (key: "reason", value: .string(reason)),
                    (key: "count", value: .number(String(group.count))),
                    (key: "oldest", value: group.oldest.map(JSONValue.string) ?? .null),
                    (key: "newest", value: group.newest.map(JSONValue.string) ?? .null),
                ]))
        }
        writer.writeByte(UInt8(ascii: "]"))
        if let bodies {
            writer.writeByte(UInt8(ascii: ","))
            writer.writeName("bodies")
            writer.writeByte(UInt8(ascii: "["))
            for (index, info) in bodies.enumerated() {
                if index > 0 { writer.writeByte(UInt8(ascii: ",")) }
                writer.writeValue(info.jsonValue)
            }
            writer.writeByte(UInt8(ascii: "]"))
        }
        writer.writeByte(UInt8(ascii: "}"))
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}

extension DeadLetterInfo {
    fileprivate var jsonValue: JSONValue {
        func optional(_ text: String?) -> JSONValue { text.map(JSONValue.string) ?? .null }
        return .object([
            (key: "eventId", value: optional(eventId)),
            (key: "messageId", value: optional(messageId)),
            (key: "reason", value: optional(reason)),
            (key: "attempts", value: attempts.map { .number(String($0)) } ?? .null),
            (key: "lastFailureAt", value: optional(lastFailureAt)),
            (key: "body", value: .string(maskedBody ?? "")),
        ])
    }
}

/// Shows a message body to a person with every password replaced by `***`.
enum BodyMasking {
    /// Members whose name contains one of these (any case) are masked, at any depth.
    static let secretNameParts = ["password", "secret"]

    /// The body as compact JSON with secrets masked; a body that is not JSON as it is
    /// (control characters escaped) unless it mentions a password, then a notice instead.
    static func displayText(_ body: [UInt8]) -> String {
        if let value = try? JSONParser.parse(body) {
            var writer = JSONWriter(reservingCapacity: body.count)
            writer.writeValue(masked(value))
            return String(decoding: writer.bytes, as: UTF8.self)
        }
        let text = String(decoding: body, as: UTF8.self)
        let lowercased = text.lowercased()
        if secretNameParts.contains(where: { lowercased.contains($0) }) {
            return "(body withheld: not JSON, and it mentions a password or secret)"
        }
        return JSONText.printable(text)
    }

    static func masked(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let members):
            return .object(
                members.map { member in
                    let name = member.key.lowercased()
                    let isSecret = secretNameParts.contains { name.contains($0) }
                    return (key: member.key, value: isSecret ? .string("***") : masked(member.value))
                })
        case .array(let elements):
            return .array(elements.map(masked))
        default:
            return value
        }
    }
}

/// Small text helpers for the operator commands' output.
enum JSONText {
    /// `text` as a JSON string literal: quoted, control characters escaped.
    static func quoted(_ text: String) -> String {
        var writer = JSONWriter(reservingCapacity: text.utf8.count + 2)
        writer.writeString(text)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// `text` with control characters escaped as in JSON, so it cannot move the cursor or
    /// break a line of the output.
    static func printable(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else { return text }
        return String(quoted(text).dropFirst().dropLast())
    }
}
