import AMQP
import Foundation
import Testing

/// Tests of the rabbitmq-c wrapper against the real broker on 127.0.0.1:5672 (guest/guest),
/// which the test command starts. They fail, not skip, when it is missing.
@Suite("AMQP against a real RabbitMQ", .serialized)
struct AMQPBrokerTests {
    static let endpoint = AMQPEndpoint(
        host: "127.0.0.1", port: 5672, user: "guest", password: "guest", virtualHost: "/")

    func connect() throws -> AMQPConnection {
        try AMQPConnection(endpoint: Self.endpoint, options: AMQPConnectionOptions())
    }

    func uniqueQueue() -> String { "amqp-test-\(UInt32.random(in: 0...UInt32.max))" }

    @Test func publishWithConfirmsThenGetKeepsBodyAndProperties() throws {
        let connection = try connect()
        let queue = uniqueQueue()
        try connection.declareQueue(name: queue, durable: false, arguments: ["x-expires": .int32(60_000)])
        try connection.enableConfirms()
        var properties = MessageProperties(contentType: "application/json", deliveryMode: 2, messageId: "m-1")
        properties.headers = [
            "druid-sync-attempt": .int32(3), "text": .string("héllo"), "nested": .table(["a": .bool(true)]),
        ]
        let body = Array("{\"x\":1}".utf8)
        let sequence = try connection.publish(exchange: "", routingKey: queue, body: body, properties: properties)
        #expect(sequence == 1)
        var confirmed = false
        for _ in 0..<50 where !confirmed {
            if case .confirmed(let seq, _) = try connection.nextSignal(timeout: .milliseconds(100)) {
                confirmed = seq == 1
            }
        }
        #expect(confirmed)
        let message = try #require(try connection.get(queue: queue))
        #expect(message.body == body)
        #expect(message.properties.contentType == "application/json")
        #expect(message.properties.messageId == "m-1")
        #expect(message.properties.deliveryMode == 2)
        #expect(message.properties.headers?["druid-sync-attempt"]?.integerValue == 3)
        #expect(message.properties.headers?["text"] == .string("héllo"))
        #expect(message.properties.headers?["nested"] == .table(["a": .bool(true)]))
        try connection.ack(message.deliveryTag)
        try connection.deleteQueue(queue)
    }

    @Test func wrongPasswordIsAnAuthenticationFailureWithoutThePassword() throws {
        var endpoint = Self.endpoint
        endpoint.password = "not-the-password-s3cr3t"
        #expect {
            _ = try AMQPConnection(endpoint: endpoint, options: AMQPConnectionOptions())
        } throws: { error in
            let amqpError = error as? AMQPError
            return amqpError?.code == .authenticationFailed && !"\(error)".contains("s3cr3t")
        }
    }

    @Test func refusedPortIsAConnectionFailure() throws {
        var endpoint = Self.endpoint
        endpoint.port = 1
        #expect {
            _ = try AMQPConnection(endpoint: endpoint, options: AMQPConnectionOptions())
        } throws: { error in (error as? AMQPError)?.code == .connectionFailed }
    }

    @Test func mismatchedRedeclarationClosesTheChannelWithReplyCode406() throws {
        let connection = try connect()
        let queue = uniqueQueue()
        try connection.declareQueue(name: queue, durable: false, arguments: ["x-expires": .int32(60_000)])
        #expect {
            try connection.declareQueue(name: queue, durable: true)
        } throws: { error in (error as? AMQPError)?.replyCode == 406 }
    }

    @Test func consumerDeliversAndAcksAcrossThreads() async throws {
        let queue = uniqueQueue()
        let setup = try connect()
        try setup.declareQueue(name: queue, durable: false, arguments: ["x-expires": .int32(60_000)])
        let publisher = ConfirmingPublisher(endpoints: [Self.endpoint], options: AMQPConnectionOptions())
        defer { publisher.shutdown() }
        for index in 0..<200 {
            try await publisher.publish(
                exchange: "", routingKey: queue, properties: MessageProperties(deliveryMode: 2),
                body: Array("message \(index)".utf8))
        }
        let consumer = AMQPConsumer(
            configuration: .init(
                endpoints: [Self.endpoint], options: AMQPConnectionOptions(), queue: queue, prefetch: 32,
                prepare: { _ in }))
        var received = Set<String>()
        for await event in consumer.events {
            if case .delivery(let delivery) = event {
                received.insert(String(decoding: delivery.body, as: UTF8.self))
                consumer.ack(delivery)
                if received.count == 200 { break }
            }
        }
        consumer.shutdown()
        #expect(received.count == 200)
        try await Task.sleep(for: .milliseconds(300))
        let (remaining, _) = try setup.declareQueue(name: queue, passive: true)
        #expect(remaining == 0)
        try setup.deleteQueue(queue)
    }

    @Test func pauseAndResumeStopAndRestartDeliveriesButAStopIsFinal() async throws {
        let queue = uniqueQueue()
        let setup = try connect()
        try setup.declareQueue(name: queue, durable: false, arguments: ["x-expires": .int32(60_000)])
        let consumer = AMQPConsumer(
            configuration: .init(
                endpoints: [Self.endpoint], options: AMQPConnectionOptions(), queue: queue, prefetch: 8,
                prepare: { _ in }))
        defer { consumer.shutdown() }
        var events = consumer.events.makeAsyncIterator()
        guard case .consuming = await events.next() else { Issue.record("not consuming"); return }
        func consumers() async throws -> UInt32 {
            try await Task.sleep(for: .milliseconds(300))
            return try setup.declareQueue(name: queue, passive: true).consumerCount
        }
        #expect(try await consumers() == 1)
        consumer.pauseConsuming()
        #expect(try await consumers() == 0, "paused: basic.cancel sent")
        consumer.resumeConsuming()
        #expect(try await consumers() == 1, "resumed: basic.consume again")
        consumer.stopConsuming()
        #expect(try await consumers() == 0)
        consumer.resumeConsuming()
        #expect(try await consumers() == 0, "a resume after a stop does nothing")
        try setup.deleteQueue(queue)
    }

    @Test func unroutableMandatoryPublishIsRefused() async throws {
        let publisher = ConfirmingPublisher(endpoints: [Self.endpoint], options: AMQPConnectionOptions())
        defer { publisher.shutdown() }
        await #expect {
            try await publisher.publish(
                exchange: "", routingKey: "no-such-queue-\(UInt32.random(in: 0...UInt32.max))",
                properties: MessageProperties(), body: [1, 2, 3])
        } throws: { error in (error as? AMQPError)?.code == .publishRefused }
    }
}
