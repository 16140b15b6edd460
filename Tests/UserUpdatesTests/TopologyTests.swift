import Testing
import UserUpdates

@Suite struct TopologyTests {
    @Test func defaultNames() {
        let topology = Topology()
        #expect(topology.workQueue == "druid-sync.user-updates")
        #expect(topology.retryExchange == "druid-sync.user-updates.retry")
        #expect(topology.deadLetterExchange == "druid-sync.user-updates.dead-letter")
        #expect(topology.deadLetterQueue == "druid-sync.user-updates.dead-letter")
        #expect(topology.retryQueueName(0) == "druid-sync.user-updates.retry.0")
        #expect(topology.retryQueueName(4) == "druid-sync.user-updates.retry.4")
    }

    @Test func exchanges() {
        #expect(
            Topology(queue: "q").exchanges == [
                ExchangeDeclaration(name: "q.retry", kind: .direct, durable: true),
                ExchangeDeclaration(name: "q.dead-letter", kind: .fanout, durable: true),
            ])
        #expect(ExchangeDeclaration.Kind.direct.rawValue == "direct")
        #expect(ExchangeDeclaration.Kind.fanout.rawValue == "fanout")
    }

    @Test func queuesAndArguments() {
        let topology = Topology(
            queue: "q", queueType: .classic, retryDelays: [.milliseconds(500), .seconds(30), .seconds(7200)])
        #expect(
            topology.queues == [
                QueueDeclaration(
                    name: "q", durable: true,
                    arguments: [
                        ("x-queue-type", .string("classic")), ("x-dead-letter-exchange", .string("q.dead-letter")),
                    ]),
                QueueDeclaration(
                    name: "q.retry.0", durable: true,
                    arguments: [
                        ("x-message-ttl", .int64(500)), ("x-dead-letter-exchange", .string("")),
                        ("x-dead-letter-routing-key", .string("q")),
                    ]),
                QueueDeclaration(
                    name: "q.retry.1", durable: true,
                    arguments: [
                        ("x-message-ttl", .int64(30_000)), ("x-dead-letter-exchange", .string("")),
                        ("x-dead-letter-routing-key", .string("q")),
                    ]),
                QueueDeclaration(
                    name: "q.retry.2", durable: true,
                    arguments: [
                        ("x-message-ttl", .int64(7_200_000)), ("x-dead-letter-exchange", .string("")),
                        ("x-dead-letter-routing-key", .string("q")),
                    ]),
                QueueDeclaration(name: "q.dead-letter", durable: true, arguments: []),
            ])
    }

    @Test func quorumIsTheDefaultType() {
        let work = Topology().queues[0]
        #expect(work.arguments.first { $0.0 == "x-queue-type" }?.1 == .string("quorum"))
    }

    @Test func defaultRetryQueuesFollowTheDefaultDelays() {
        let ttls = Topology().queues.dropFirst().dropLast().map { $0.arguments[0].1 }
        #expect(ttls == [.int64(5000), .int64(30_000), .int64(120_000), .int64(600_000), .int64(1_800_000)])
    }

    @Test func bindings() {
        let topology = Topology(queue: "q", retryDelays: [.seconds(1), .seconds(2)])
        #expect(
            topology.bindings == [
                BindingDeclaration(queue: "q.retry.0", exchange: "q.retry", routingKey: "q.retry.0"),
                BindingDeclaration(queue: "q.retry.1", exchange: "q.retry", routingKey: "q.retry.1"),
                BindingDeclaration(queue: "q.dead-letter", exchange: "q.dead-letter", routingKey: ""),
            ])
        let bound = Topology(
            queue: "q", retryDelays: [.seconds(1)], bindExchange: "crm.events", bindRoutingKey: "user.*")
        #expect(bound.bindings.last == BindingDeclaration(queue: "q", exchange: "crm.events", routingKey: "user.*"))
        #expect(Topology(bindExchange: "x").bindings.last?.routingKey == "#")
    }

    @Test func queueDeclarationEqualityLooksAtArguments() {
        let a = QueueDeclaration(name: "q", durable: true, arguments: [("x", .int64(1))])
        #expect(a != QueueDeclaration(name: "q", durable: true, arguments: [("x", .int32(1))]))
        #expect(a != QueueDeclaration(name: "q", durable: true, arguments: [("y", .int64(1))]))
        #expect(a == QueueDeclaration(name: "q", durable: true, arguments: [("x", .int64(1))]))
    }

    @Test func headerValueEquality() {
        let table = HeaderValue.table([("a", .array([.string("x"), .void])), ("b", .decimal(scale: 2, value: 150))])
        #expect(table == .table([("a", .array([.string("x"), .void])), ("b", .decimal(scale: 2, value: 150))]))
        #expect(table != .table([("b", .decimal(scale: 2, value: 150)), ("a", .array([.string("x"), .void]))]))
        #expect(HeaderValue.bytes([1]) != .string("\u{1}"))
        #expect(HeaderValue.timestamp(5) != .uint64(5))
    }
}
