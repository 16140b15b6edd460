import DruidSync
import Foundation
import Testing
import UserUpdates

/// `deploy/rabbitmq/definitions.json` is what operators load when they run druid-sync with
/// `DRUID_SYNC_DECLARE=false`: it must describe exactly the objects the daemon declares
/// with its default settings, or the daemon's passive checks (and any later
/// `DRUID_SYNC_DECLARE=true` start, which the broker would answer with 406) fail.
///
/// Each object is compared as one line of text, so a failure shows which object differs
/// and how. `deploy/rabbitmq/check-definitions` proves the same against a real broker.
@Suite struct DefinitionsFileTests {
    /// The file's top-level keys.
    let sections: [String]
    let exchanges: [String]
    let queues: [String]
    let bindings: [String]
    /// Every `vhost` value in the file.
    let virtualHosts: Set<String>

    /// What the daemon declares when no variable is set.
    static let declared = Configuration().topology

    init() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/rabbitmq/definitions.json").path
        let data = try #require(FileManager.default.contents(atPath: path), "cannot read \(path)")
        let root = try #require(
            try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(path) is not a JSON object")
        sections = root.keys.sorted()

        var virtualHosts = Set<String>()
        func objects(_ key: String) throws -> [[String: Any]] {
            let list = try #require(root[key] as? [[String: Any]], "\(key) is not a list of objects")
            for object in list { virtualHosts.insert(object["vhost"] as? String ?? "(no vhost)") }
            return list
        }
        let json = Self.json
        exchanges = try objects("exchanges").map { exchange in
            Self.line(
                "exchange", json(exchange["name"]), "type", json(exchange["type"]),
                "durable", json(exchange["durable"]), "auto_delete", json(exchange["auto_delete"]),
                "internal", json(exchange["internal"]),
                "arguments", Self.fileArguments(exchange["arguments"]))
        }.sorted()
        queues = try objects("queues").map { queue in
            Self.line(
                "queue", json(queue["name"]), "durable", json(queue["durable"]),
                "auto_delete", json(queue["auto_delete"]),
                "arguments", Self.fileArguments(queue["arguments"]))
        }.sorted()
        bindings = try objects("bindings").map { binding in
            Self.line(
                "binding of", json(binding["destination_type"]), json(binding["destination"]), "to",
                json(binding["source"]), "routing key", json(binding["routing_key"]),
                "arguments", Self.fileArguments(binding["arguments"]))
        }.sorted()
        self.virtualHosts = virtualHosts
    }

    @Test func holdsOnlyTopologyInTheDefaultVirtualHost() {
        // No users, permissions or policies: importing it must not touch anything else.
        #expect(sections == ["bindings", "exchanges", "queues"])
        #expect(virtualHosts == ["/"])
    }

    @Test func theDefaultConfigurationDeclaresTheDefaultTopology() {
        #expect(Self.declared == Topology())
        #expect(Self.declared.workQueue == "druid-sync.user-updates")
        #expect(Self.declared.queueType == .quorum)
        #expect(Self.declared.bindExchange == nil)
    }

    @Test func exchangesMatchTheDeclaredOnes() {
        let expected = Self.declared.exchanges.map { exchange in
            Self.line(
                "exchange", exchange.name, "type", exchange.kind.rawValue, "durable", String(exchange.durable),
                "auto_delete", "false", "internal", "false", "arguments", "{}")
        }.sorted()
        #expect(exchanges == expected)
    }

    @Test func queuesMatchTheDeclaredOnes() {
        let expected = Self.declared.queues.map { queue in
            Self.line(
                "queue", queue.name, "durable", String(queue.durable), "auto_delete", "false",
                "arguments", Self.declaredArguments(queue.arguments))
        }.sorted()
        #expect(queues == expected)
    }

    @Test func retryQueuesHoldMessagesForTheDefaultDelays() {
        // The same fact as above, spelled out: TTLs in milliseconds, in retry-queue order.
        let expected = RetryPolicy.defaultDelays.enumerated().map { index, delay in
            let milliseconds = delay.components.seconds * 1000
            return "druid-sync.user-updates.retry.\(index) x-message-ttl=integer:\(milliseconds)"
        }
        let found = queues.compactMap { line -> String? in
            guard let name = line.split(separator: " ").dropFirst().first, name.contains(".retry."),
                let ttl = line.split(separator: " ").first(where: { $0.hasPrefix("x-message-ttl=") })
            else { return nil }
            return "\(name) \(ttl)"
        }
        #expect(found == expected)
    }

    @Test func bindingsMatchTheDeclaredOnes() {
        let expected = Self.declared.bindings.map { binding in
            Self.line(
                "binding of", "queue", binding.queue, "to", binding.exchange, "routing key", binding.routingKey,
                "arguments", "{}")
        }.sorted()
        #expect(bindings == expected)
    }

    // MARK: One line per object

    /// The parts of one object's description, joined by spaces.
    private static func line(_ parts: String...) -> String { parts.joined(separator: " ") }

    /// A JSON value of the file as text: strings as they are, booleans as true/false,
    /// whole numbers as `integer:N`, and anything else (a missing field included) in a form
    /// no expected line contains.
    private static func json(_ value: Any?) -> String {
        switch value {
        case let text as String:
            return text
        case let number as NSNumber:
            // JSONSerialization gives booleans as NSNumbers too; only their type code says so.
            if String(cString: number.objCType) == "c" { return number.boolValue ? "true" : "false" }
            if let integer = Int64(exactly: number.doubleValue), number.stringValue == String(integer) {
                return "integer:\(integer)"
            }
            return "(number \(number))"
        case nil:
            return "(missing)"
        case let other?:
            return "(unexpected \(other))"
        }
    }

    /// Queue arguments as the daemon declares them, `key=type:value` sorted by key.
    private static func declaredArguments(_ table: [(String, HeaderValue)]) -> String {
        let entries = table.map { key, value -> String in
            switch value {
            case .string(let text): "\(key)=string:\(text)"
            case .int64(let number): "\(key)=integer:\(number)"
            default: "\(key)=unsupported:\(value)"
            }
        }
        return entries.isEmpty ? "{}" : entries.sorted().joined(separator: " ")
    }

    /// An `arguments` object of the file, in the same form. A JSON integer becomes the
    /// broker's `long`, the type the daemon declares numbers with.
    private static func fileArguments(_ object: Any?) -> String {
        guard let object = object as? [String: Any] else { return "(arguments missing or not an object)" }
        let entries = object.map { key, value -> String in
            let text = json(value)
            return value is String ? "\(key)=string:\(text)" : "\(key)=\(text)"
        }
        return entries.isEmpty ? "{}" : entries.sorted().joined(separator: " ")
    }
}
