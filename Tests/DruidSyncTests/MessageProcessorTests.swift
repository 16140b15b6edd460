import AMQP
import Foundation
import Locking
import Testing
import UserUpdates

@testable import DruidSync

/// DRUID as a script of answers, recording how often it was asked.
private final class ScriptedDruid: DruidUpdating {
    private let state: Locked<(answers: [DruidAnswer], calls: Int)>

    init(_ answers: [DruidAnswer]) { state = Locked((answers, 0)) }

    var calls: Int { state.withLock { $0.calls } }

    func update(_ activity: UpdateActivity) async -> DruidAnswer {
        state.withLock { state in
            state.calls += 1
            return state.answers.isEmpty ? .accepted(status: 200) : state.answers.removeFirst()
        }
    }
}

/// The broker's confirming publisher, recording what it was given (or refusing it).
private final class RecordingPublisher: ConfirmedPublishing {
    struct Copy {
        let exchange: String
        let routingKey: String
        let properties: MessageProperties
        let body: [UInt8]
    }

    private let copies = Locked<[Copy]>([])
    let fails: Bool

    init(fails: Bool = false) { self.fails = fails }

    var published: [Copy] { copies.withLock { $0 } }

    func publish(
        exchange: String, routingKey: String, properties: MessageProperties, body: [UInt8]
    )
        async throws(AMQPError)
    {
        if fails { throw AMQPError(code: .connectionClosed, context: "publish", detail: "broker gone") }
        copies.withLock {
            $0.append(Copy(exchange: exchange, routingKey: routingKey, properties: properties, body: body))
        }
    }
}

@Suite("Message processor")
struct MessageProcessorTests {
    static let configuration = Configuration()

    private func processor(
        _ druid: ScriptedDruid, _ publisher: RecordingPublisher, holds: Bool = false
    )
        -> MessageProcessor<ScriptedDruid, RecordingPublisher>
    {
        let pipeline = EventPipeline(configuration: Self.configuration)
        return MessageProcessor(
            decoder: pipeline.decoder, translator: pipeline.translator, policy: Self.configuration.retryPolicy,
            topology: Self.configuration.topology, druid: druid, publisher: publisher,
            now: { UTCTimestamp(secondsSince1970: 1_800_000_000) }, observeAnswer: { _ in holds })
    }

    private func delivery(_ body: String, attempt: Int32? = nil) -> Delivery {
        var properties = MessageProperties(contentType: "application/json", messageId: "m-1")
        if let attempt { properties.headers = AMQPTable([(key: FailureHeaders.attempt, value: .int32(attempt))]) }
        return Delivery(
            deliveryTag: 7, channelGeneration: 1, isRedelivered: false, exchange: "", routingKey: "q",
            properties: properties, body: Array(body.utf8))
    }

    private let valid = #"{"eventId":"e-1","user":{"objectId":"u-1","ids":{"email":"a@example.com"}}}"#

    @Test("prepare: a valid event is ready with its attempt from the header; an invalid one says why")
    func prepare() {
        let processor = processor(ScriptedDruid([]), RecordingPublisher())
        guard case .ready(let prepared) = processor.prepare(delivery(valid, attempt: 2)) else {
            Issue.record("a valid event was not ready")
            return
        }
        #expect(prepared.attempt == 3)
        #expect(prepared.event.eventId == "e-1")
        #expect(String(decoding: prepared.activity.body, as: UTF8.self).contains("u-1"))
        guard case .invalid(let invalid, let attempt) = processor.prepare(delivery(#"{"user":{}}"#)) else {
            Issue.record("an invalid event was ready")
            return
        }
        #expect(attempt == 1)
        #expect(invalid.reason.contains("objectId"), "\(invalid.reason)")
    }

    @Test("only an acceptance is settled without a task")
    func acceptance() {
        let processor = processor(ScriptedDruid([]), RecordingPublisher())
        guard case .ready(let prepared) = processor.prepare(delivery(valid)) else { return }
        #expect(processor.isAcceptance(.accepted(status: 200), for: prepared))
        #expect(!processor.isAcceptance(.unauthorized, for: prepared))
        #expect(!processor.isAcceptance(.unavailable(status: 503, retryAfter: nil, detail: ""), for: prepared))
        #expect(!processor.isAcceptance(.rejected(status: 400, errors: []), for: prepared))
        let report = processor.appliedReport(prepared, answer: .accepted(status: 200), latency: .milliseconds(3))
        #expect(report.kind == .applied && report.settlement == .ack && report.eventId == "e-1")
        #expect(report.druidLatency == .milliseconds(3))
    }

    @Test("conclude after a 401 asks DRUID again and acks when that call is accepted")
    func unauthorizedThenAccepted() async {
        let druid = ScriptedDruid([.accepted(status: 200)])
        let publisher = RecordingPublisher()
        let processor = processor(druid, publisher)
        guard case .ready(let prepared) = processor.prepare(delivery(valid)) else { return }
        let report = await processor.conclude(prepared, answer: .unauthorized, holds: false, latency: .milliseconds(5))
        #expect(report.kind == .applied && report.settlement == .ack)
        #expect(druid.calls == 1)
        #expect(report.druidLatency >= .milliseconds(5))
        #expect(publisher.published.isEmpty)
    }

    @Test("conclude after a 503 publishes a retry copy with the attempt counted, then acks")
    func unavailableIsRetried() async {
        let publisher = RecordingPublisher()
        let processor = processor(ScriptedDruid([]), publisher)
        guard case .ready(let prepared) = processor.prepare(delivery(valid, attempt: 1)) else { return }
        let report = await processor.conclude(
            prepared, answer: .unavailable(status: 503, retryAfter: nil, detail: "down"), holds: false, latency: .zero)
        #expect(report.kind == .retried && report.settlement == .ack && report.attempt == 2)
        let copy = publisher.published.first
        #expect(publisher.published.count == 1)
        #expect(copy?.exchange == Self.configuration.topology.retryExchange)
        #expect(copy?.body == prepared.delivery.body)
        if case .int32(let attempts)? = copy?.properties.headers?[FailureHeaders.attempt] {
            #expect(attempts == 2)
        } else if case .int64(let attempts)? = copy?.properties.headers?[FailureHeaders.attempt] {
            #expect(attempts == 2)
        } else {
            Issue.record("no attempt header on the retry copy: \(String(describing: copy?.properties.headers))")
        }
    }

    @Test("conclude while the breaker holds: back to the queue, nothing published")
    func heldWhileTheBreakerIsOpen() async {
        let publisher = RecordingPublisher()
        let processor = processor(ScriptedDruid([]), publisher, holds: true)
        guard case .ready(let prepared) = processor.prepare(delivery(valid)) else { return }
        let report = await processor.conclude(
            prepared, answer: .unavailable(status: 503, retryAfter: .seconds(4), detail: ""), holds: true,
            latency: .zero)
        #expect(report.kind == .held && report.settlement == .requeue && report.isServiceFailure)
        #expect(report.retryAfter == .seconds(4))
        #expect(publisher.published.isEmpty)
    }

    @Test("conclude after a 400 dead-letters with DRUID's reason; a failed publish requeues instead")
    func rejectedIsDeadLettered() async {
        let publisher = RecordingPublisher()
        let rejection = DruidAnswer.rejected(
            status: 400, errors: [DruidFieldError(message: "email", details: "already exists")])
        guard case .ready(let prepared) = processor(ScriptedDruid([]), publisher).prepare(delivery(valid)) else {
            return
        }
        let report = await processor(ScriptedDruid([]), publisher).conclude(
            prepared, answer: rejection, holds: false, latency: .zero)
        #expect(report.kind == .deadLettered && report.settlement == .ack)
        #expect(report.reason == "druid-rejected: email: already exists")
        #expect(publisher.published.first?.exchange == Self.configuration.topology.deadLetterExchange)
        #expect(
            publisher.published.first?.properties.headers?[FailureHeaders.reason]
                == .string("druid-rejected: email: already exists"))

        let failing = RecordingPublisher(fails: true)
        let requeued = await processor(ScriptedDruid([]), failing).conclude(
            prepared, answer: rejection, holds: false, latency: .zero)
        #expect(requeued.kind == .requeued && requeued.settlement == .requeue)
    }

    @Test("process runs the same steps for callers in a task")
    func processAsAWhole() async {
        let druid = ScriptedDruid([.unavailable(status: nil, retryAfter: nil, detail: "timeout")])
        let publisher = RecordingPublisher()
        let report = await processor(druid, publisher).process(delivery(valid))
        #expect(report.kind == .retried && druid.calls == 1 && publisher.published.count == 1)
        let invalid = await processor(druid, publisher).process(delivery("not json"))
        #expect(invalid.kind == .deadLettered && !invalid.askedDruid && druid.calls == 1)
    }
}

@Suite("Delivery relay")
struct DeliveryRelayTests {
    private func delivery(_ tag: UInt64) -> Delivery {
        Delivery(
            deliveryTag: tag, channelGeneration: 1, isRedelivered: false, exchange: "", routingKey: "q",
            properties: MessageProperties(), body: [])
    }

    @Test("deliveries that arrive before the handler wait for it; later ones go straight through")
    func buffersUntilConnected() {
        let relay = DeliveryRelay()
        let seen = Locked<[UInt64]>([])
        relay.deliver(delivery(1))
        relay.deliver(delivery(2))
        #expect(seen.withLock { $0 }.isEmpty)
        relay.connect { delivery in seen.withLock { $0.append(delivery.deliveryTag) } }
        #expect(seen.withLock { $0 } == [1, 2])
        relay.deliver(delivery(3))
        #expect(seen.withLock { $0 } == [1, 2, 3])
    }
}
