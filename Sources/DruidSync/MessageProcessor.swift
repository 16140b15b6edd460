public import AMQP
import Druid
public import UserUpdates

/// Sends one update to DRUID. `DruidClient` is the real one; tests use fakes.
public protocol DruidUpdating: Sendable {
    func update(_ activity: UpdateActivity) async -> DruidAnswer
    /// The same without a task: `completion` gets the answer once, on any thread.
    func update(_ activity: UpdateActivity, completion: @escaping @Sendable (DruidAnswer) -> Void)
}

extension DruidUpdating {
    /// Runs the async ``update(_:)`` in a new task (fakes in tests; `DruidClient` has its own).
    public func update(_ activity: UpdateActivity, completion: @escaping @Sendable (DruidAnswer) -> Void) {
        Task { completion(await update(activity)) }
    }
}

/// Publishes a copy of a message and returns once the broker confirmed it.
/// `ConfirmingPublisher` is the real one; tests use fakes.
public protocol ConfirmedPublishing: Sendable {
    func publish(
        exchange: String, routingKey: String, properties: MessageProperties, body: [UInt8])
        async throws(AMQPError)
}

extension ConfirmingPublisher: ConfirmedPublishing {}

extension DruidClient: DruidUpdating {}

/// What to do with the delivery once it has been handled.
public enum Settlement: Sendable, Equatable {
    /// Done: DRUID accepted it, or its retry or dead-letter copy is safely in the broker.
    case ack
    /// Give it back to the broker to deliver again (its copy could not be published).
    case requeue
}

/// What happened to one message, for its log line and the counters.
public struct ProcessingReport: Sendable {
    public enum Kind: String, Sendable {
        case applied = "ack"
        case retried = "retry"
        case deadLettered = "dead-letter"
        case requeued = "requeue"
        /// DRUID is down and the breaker is open: the message goes back to the queue to wait.
        case held = "hold"
    }

    public var kind: Kind
    public var settlement: Settlement
    public var eventId: String
    public var objectId: String?
    public var reason: String?
    public var httpStatus: Int?
    public var attempt: Int
    /// Time spent waiting on DRUID, all calls for this delivery together.
    public var druidLatency: Duration
    /// Set when DRUID refused the service's own credentials: the caller slows down.
    public var credentialsRefused: Bool
    /// Set when DRUID failed for a reason that is not the message's (down, overloaded,
    /// refusing our credentials): what the outage breaker counts.
    public var isServiceFailure: Bool = false
    /// DRUID's `Retry-After`, when it gave one.
    public var retryAfter: Duration?
    /// False when the message never reached DRUID (it was invalid).
    public var askedDruid = true
}

/// The whole handling of one delivery: decode, translate, call DRUID, and decide.
///
/// Settling (ack or requeue) is left to the caller, which owns the consuming channel.
/// A copy (retry or dead-letter) is published and confirmed before `.ack` is returned,
/// so the message exists somewhere at every moment.
public struct MessageProcessor<Druid: DruidUpdating, Publisher: ConfirmedPublishing>: Sendable {
    public let decoder: EventDecoder
    public let translator: ActivityTranslator
    public let policy: RetryPolicy
    public let topology: Topology
    public let druid: Druid
    public let publisher: Publisher
    /// Supplies the current time, for the failure timestamps.
    public let now: @Sendable () -> UTCTimestamp
    /// Told of every DRUID answer as soon as it arrives (so the outage breaker counts
    /// failures without waiting for copies to be published); returns whether a
    /// service-side failure should send the message back to the queue to wait (the
    /// breaker is open) instead of through the retry queues.
    public let observeAnswer: @Sendable (DruidAnswer) -> Bool

    public init(
        decoder: EventDecoder, translator: ActivityTranslator, policy: RetryPolicy, topology: Topology,
        druid: Druid, publisher: Publisher, now: @escaping @Sendable () -> UTCTimestamp,
        observeAnswer: @escaping @Sendable (DruidAnswer) -> Bool = { _ in false }
    ) {
        self.observeAnswer = observeAnswer
        self.decoder = decoder
        self.translator = translator
        self.policy = policy
        self.topology = topology
        self.druid = druid
        self.publisher = publisher
        self.now = now
    }

    /// A delivery read and translated, ready for DRUID.
    public struct Prepared: Sendable {
        public let delivery: Delivery
        public let event: UserUpdateEvent
        public let activity: UpdateActivity
        /// Attempts already made (the `druid-sync-attempt` header; absent = 0).
        public let previousAttempts: Int
        public var attempt: Int { previousAttempts + 1 }
    }

    /// What ``prepare(_:)`` made of a delivery.
    public enum Preparation: Sendable {
        case ready(Prepared)
        /// The message is invalid: ``deadLetterInvalid(_:_:)`` dead-letters it.
        case invalid(InvalidEvent, attempt: Int)
    }

    /// The whole handling of one delivery, for callers in a task: ``prepare(_:)``, DRUID,
    /// then ``conclude(_:answer:holds:latency:)``.
    public func process(_ delivery: Delivery) async -> ProcessingReport {
        switch prepare(delivery) {
        case .invalid(let invalid, let attempt):
            return await deadLetterInvalid(delivery, invalid, attempt: attempt)
        case .ready(let prepared):
            let clock = ContinuousClock()
            let started = clock.now
            let answer = await druid.update(prepared.activity)
            let latency = clock.now - started
            return await conclude(prepared, answer: answer, holds: observeAnswer(answer), latency: latency)
        }
    }

    /// Decodes and translates a delivery: synchronous work only, on the caller's thread.
    public func prepare(_ delivery: Delivery) -> Preparation {
        // Only the attempt header is read here; the whole table is converted only when a
        // retry or dead-letter copy is made, off the path of a message DRUID accepts.
        let attemptHeader = delivery.properties.headers?[FailureHeaders.attempt].map {
            [(FailureHeaders.attempt, HeaderConversion.headerValue($0))]
        }
        let previousAttempts = FailureHeaders.attemptCount(in: attemptHeader ?? [])
        switch decoder.decode(
            body: delivery.body, contentType: delivery.properties.contentType,
            messageId: delivery.properties.messageId)
        {
        case .success(let event):
            return .ready(
                Prepared(
                    delivery: delivery, event: event, activity: translator.activity(for: event),
                    previousAttempts: previousAttempts))
        case .failure(let invalid):
            return .invalid(invalid, attempt: previousAttempts + 1)
        }
    }

    /// Dead-letters an invalid message with the decoder's reason.
    public func deadLetterInvalid(
        _ delivery: Delivery, _ invalid: InvalidEvent, attempt: Int
    ) async
        -> ProcessingReport
    {
        var report = await deadLetter(
            delivery, eventId: invalid.eventId, objectId: nil, reason: invalid.reason,
            httpStatus: nil, attempt: attempt, latency: .zero)
        report.askedDruid = false
        return report
    }

    /// The report for a delivery whose first answer was an acceptance, when the caller
    /// settles it itself without a task (see ``isAcceptance(_:for:)``).
    public func appliedReport(_ prepared: Prepared, answer: DruidAnswer, latency: Duration) -> ProcessingReport {
        ProcessingReport(
            kind: .applied, settlement: .ack, eventId: prepared.event.eventId, objectId: prepared.event.user.objectId,
            reason: nil, httpStatus: answer.httpStatus, attempt: prepared.attempt, druidLatency: latency,
            credentialsRefused: false)
    }

    /// Whether the policy acknowledges `answer` at once (nothing to publish, no new call).
    public func isAcceptance(_ answer: DruidAnswer, for prepared: Prepared) -> Bool {
        policy.outcome(for: answer, attempt: prepared.attempt, immediateRetries: 0) == .ack
    }

    /// Acts on DRUID's first answer for a prepared delivery (already shown to
    /// ``observeAnswer``, which returned `holds`): calls DRUID again when the policy says
    /// so, publishes a retry or dead-letter copy when needed, and reports.
    public func conclude(
        _ prepared: Prepared, answer firstAnswer: DruidAnswer, holds firstHolds: Bool, latency firstLatency: Duration
    ) async -> ProcessingReport {
        let delivery = prepared.delivery
        let event = prepared.event
        let previousAttempts = prepared.previousAttempts
        let attempt = prepared.attempt
        var immediateRetries = 0
        var latency = firstLatency
        var answer = firstAnswer
        var holds = firstHolds
        let clock = ContinuousClock()
        while true {
            let outcome = policy.outcome(for: answer, attempt: attempt, immediateRetries: immediateRetries)
            switch outcome {
            case .ack:
                return appliedReport(prepared, answer: answer, latency: latency)
            case .retryNow:
                immediateRetries += 1
                let started = clock.now
                answer = await druid.update(prepared.activity)
                latency += clock.now - started
                holds = observeAnswer(answer)
                continue
            case .retry(let queueIndex, _, let reason, let countsAsAttempt):
                let isServiceFailure = answer.isServiceFailure
                if isServiceFailure && holds {
                    return ProcessingReport(
                        kind: .held, settlement: .requeue, eventId: event.eventId, objectId: event.user.objectId,
                        reason: reason, httpStatus: answer.httpStatus, attempt: attempt, druidLatency: latency,
                        credentialsRefused: answer.isCredentialsRefusal, isServiceFailure: true,
                        retryAfter: answer.retryAfter)
                }
                let copyHeaders = FailureHeaders.retryHeaders(
                    original: HeaderConversion.headers(from: delivery.properties.headers),
                    attemptsMade: countsAsAttempt ? attempt : previousAttempts,
                    reason: reason, now: now())
                var properties = delivery.properties
                properties.headers = HeaderConversion.table(from: copyHeaders)
                let settlement = await publishCopy(
                    exchange: topology.retryExchange, routingKey: topology.retryQueueName(queueIndex),
                    properties: properties, body: delivery.body)
                return ProcessingReport(
                    kind: settlement == .ack ? .retried : .requeued, settlement: settlement, eventId: event.eventId,
                    objectId: event.user.objectId, reason: reason, httpStatus: answer.httpStatus, attempt: attempt,
                    druidLatency: latency, credentialsRefused: answer.isCredentialsRefusal,
                    isServiceFailure: isServiceFailure, retryAfter: answer.retryAfter)
            case .deadLetter(let reason, let httpStatus):
                var report = await deadLetter(
                    delivery, eventId: event.eventId, objectId: event.user.objectId,
                    reason: reason, httpStatus: httpStatus, attempt: attempt, latency: latency)
                report.isServiceFailure = answer.isServiceFailure
                return report
            }
        }
    }

    private func deadLetter(
        _ delivery: Delivery, eventId: String, objectId: String?, reason: String,
        httpStatus: Int?, attempt: Int, latency: Duration
    ) async -> ProcessingReport {
        let copyHeaders = FailureHeaders.deadLetterHeaders(
            original: HeaderConversion.headers(from: delivery.properties.headers), reason: reason,
            httpStatus: httpStatus, attempts: attempt, eventId: eventId,
            originalQueue: topology.workQueue, now: now())
        var properties = delivery.properties
        properties.headers = HeaderConversion.table(from: copyHeaders)
        let settlement = await publishCopy(
            exchange: topology.deadLetterExchange, routingKey: topology.workQueue, properties: properties,
            body: delivery.body)
        return ProcessingReport(
            kind: settlement == .ack ? .deadLettered : .requeued, settlement: settlement, eventId: eventId,
            objectId: objectId, reason: reason, httpStatus: httpStatus, attempt: attempt, druidLatency: latency,
            credentialsRefused: false)
    }

    private func publishCopy(
        exchange: String, routingKey: String, properties: MessageProperties, body: [UInt8]
    )
        async -> Settlement
    {
        var properties = properties
        // The broker checks user-id against the publishing user; ours is not the producer's.
        properties.userId = nil
        do throws(AMQPError) {
            try await publisher.publish(exchange: exchange, routingKey: routingKey, properties: properties, body: body)
            return .ack
        } catch {
            return .requeue
        }
    }
}

extension DruidAnswer {
    /// Whether the failure is DRUID's or the service's own, never the message's.
    var isServiceFailure: Bool {
        switch self {
        case .unavailable, .credentialsRefused, .unauthorized: true
        case .accepted, .rejected: false
        }
    }

    var isCredentialsRefusal: Bool {
        if case .credentialsRefused = self { return true }
        return false
    }

    var retryAfter: Duration? {
        if case .unavailable(_, let retryAfter, _) = self { return retryAfter }
        return nil
    }

    /// The HTTP status to log, when there was one.
    var httpStatus: Int? {
        switch self {
        case .accepted(let status), .rejected(let status, _): status
        case .unauthorized: 401
        case .credentialsRefused(let status, _), .unavailable(let status, _, _): status
        }
    }
}

/// Converts between the domain's header values and the AMQP module's table values,
/// case by case (both cover every AMQP field type, so nothing is lost on a copy).
enum HeaderConversion {
    static func headers(from table: AMQPTable?) -> [(String, HeaderValue)] {
        guard let table else { return [] }
        return table.entries.map { ($0.key, headerValue($0.value)) }
    }

    static func table(from headers: [(String, HeaderValue)]) -> AMQPTable {
        AMQPTable(headers.map { (key: $0.0, value: amqpValue($0.1)) })
    }

    static func headerValue(_ value: AMQPValue) -> HeaderValue {
        switch value {
        case .bool(let v): .bool(v)
        case .int8(let v): .int8(v)
        case .uint8(let v): .uint8(v)
        case .int16(let v): .int16(v)
        case .uint16(let v): .uint16(v)
        case .int32(let v): .int32(v)
        case .uint32(let v): .uint32(v)
        case .int64(let v): .int64(v)
        case .uint64(let v): .uint64(v)
        case .float(let v): .float(v)
        case .double(let v): .double(v)
        case .decimal(let decimals, let v): .decimal(scale: decimals, value: v)
        case .string(let v): .string(v)
        case .bytes(let v): .bytes(v)
        case .array(let values): .array(values.map(headerValue))
        case .timestamp(let v): .timestamp(v)
        case .table(let nested): .table(headers(from: nested))
        case .void: .void
        }
    }

    static func amqpValue(_ value: HeaderValue) -> AMQPValue {
        switch value {
        case .bool(let v): .bool(v)
        case .int8(let v): .int8(v)
        case .uint8(let v): .uint8(v)
        case .int16(let v): .int16(v)
        case .uint16(let v): .uint16(v)
        case .int32(let v): .int32(v)
        case .uint32(let v): .uint32(v)
        case .int64(let v): .int64(v)
        case .uint64(let v): .uint64(v)
        case .float(let v): .float(v)
        case .double(let v): .double(v)
        case .decimal(let scale, let v): .decimal(decimals: scale, value: v)
        case .string(let v): .string(v)
        case .bytes(let v): .bytes(v)
        case .array(let values): .array(values.map(amqpValue))
        case .timestamp(let v): .timestamp(v)
        case .table(let nested): .table(table(from: nested))
        case .void: .void
        }
    }
}
