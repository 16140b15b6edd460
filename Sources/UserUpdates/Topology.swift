/// The type of the work queue (`DRUID_SYNC_QUEUE_TYPE`).
public enum QueueType: String, Sendable, Equatable, CaseIterable {
    /// Replicated, the default: what RabbitMQ recommends for queues that must not lose messages.
    case quorum
    case classic
}

/// An exchange druid-sync declares.
public struct ExchangeDeclaration: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case direct
        case fanout
    }

    public let name: String
    public let kind: Kind
    public let durable: Bool

    public init(name: String, kind: Kind, durable: Bool) {
        self.name = name
        self.kind = kind
        self.durable = durable
    }
}

/// A queue druid-sync declares, with its `x-` arguments in a fixed order.
public struct QueueDeclaration: Sendable, Equatable {
    public let name: String
    public let durable: Bool
    public let arguments: [(String, HeaderValue)]

    public init(name: String, durable: Bool, arguments: [(String, HeaderValue)]) {
        self.name = name
        self.durable = durable
        self.arguments = arguments
    }

    public static func == (lhs: QueueDeclaration, rhs: QueueDeclaration) -> Bool {
        lhs.name == rhs.name && lhs.durable == rhs.durable && HeaderTable.equal(lhs.arguments, rhs.arguments)
    }
}

/// A binding of a queue to an exchange.
public struct BindingDeclaration: Sendable, Equatable {
    public let queue: String
    public let exchange: String
    public let routingKey: String

    public init(queue: String, exchange: String, routingKey: String) {
        self.queue = queue
        self.exchange = exchange
        self.routingKey = routingKey
    }
}

/// The broker objects of event-schema.md section 5, as values to declare in order:
/// `exchanges`, then `queues`, then `bindings`.
///
/// With `Q` the work queue's name:
/// - `Q`: durable, `x-queue-type` as configured, `x-dead-letter-exchange: Q.dead-letter`
///   (a backstop for messages the broker itself dead-letters, e.g. a quorum delivery limit).
/// - `Q.retry`: a durable direct exchange. Retry queue i is named `Q.retry.<i>` (i counted
///   from 0, one per configured delay) and bound to `Q.retry` with the routing key
///   `Q.retry.<i>`, so a retry copy is published to `Q.retry` with its queue's name as the
///   routing key. Each retry queue holds messages for its delay (`x-message-ttl`, in ms)
///   and then dead-letters them through the default exchange (`""`) back to `Q`.
/// - `Q.dead-letter`: a durable fanout exchange and a durable queue of the same name bound
///   to it; dead-letter copies are published to the exchange.
/// - Optionally, `Q` bound to a producer's exchange.
public struct Topology: Sendable, Equatable {
    /// The queue druid-sync consumes (`Q`).
    public let workQueue: String
    public let queueType: QueueType
    public let retryDelays: [Duration]
    public let bindExchange: String?
    public let bindRoutingKey: String

    public init(
        queue: String = "druid-sync.user-updates", queueType: QueueType = .quorum,
        retryDelays: [Duration] = RetryPolicy.defaultDelays, bindExchange: String? = nil, bindRoutingKey: String = "#"
    ) {
        self.workQueue = queue
        self.queueType = queueType
        self.retryDelays = retryDelays
        self.bindExchange = bindExchange
        self.bindRoutingKey = bindRoutingKey
    }

    /// `Q.retry`: where retry copies are published, with `retryQueueName(i)` as routing key.
    public var retryExchange: String { workQueue + ".retry" }
    /// `Q.dead-letter`: where dead-letter copies are published (fanout: any routing key).
    public var deadLetterExchange: String { workQueue + ".dead-letter" }
    /// `Q.dead-letter`: the queue operators read dead letters from.
    public var deadLetterQueue: String { workQueue + ".dead-letter" }

    /// `Q.retry.<index>`: the name of retry queue `index` and its routing key on `retryExchange`.
    public func retryQueueName(_ index: Int) -> String {
        workQueue + ".retry." + String(index)
    }

    public var exchanges: [ExchangeDeclaration] {
        [
            ExchangeDeclaration(name: retryExchange, kind: .direct, durable: true),
            ExchangeDeclaration(name: deadLetterExchange, kind: .fanout, durable: true),
        ]
    }

    public var queues: [QueueDeclaration] {
        var queues = [
            QueueDeclaration(
                name: workQueue, durable: true,
                arguments: [
                    ("x-queue-type", .string(queueType.rawValue)),
                    ("x-dead-letter-exchange", .string(deadLetterExchange)),
                ])
        ]
        for (index, delay) in retryDelays.enumerated() {
            queues.append(
                QueueDeclaration(
                    name: retryQueueName(index), durable: true,
                    arguments: [
                        ("x-message-ttl", .int64(DurationText.milliseconds(delay))),
                        ("x-dead-letter-exchange", .string("")),
                        ("x-dead-letter-routing-key", .string(workQueue)),
                    ]))
        }
        queues.append(QueueDeclaration(name: deadLetterQueue, durable: true, arguments: []))
        return queues
    }

    public var bindings: [BindingDeclaration] {
        var bindings = retryDelays.indices.map { index in
            BindingDeclaration(queue: retryQueueName(index), exchange: retryExchange, routingKey: retryQueueName(index))
        }
        bindings.append(BindingDeclaration(queue: deadLetterQueue, exchange: deadLetterExchange, routingKey: ""))
        if let bindExchange {
            bindings.append(BindingDeclaration(queue: workQueue, exchange: bindExchange, routingKey: bindRoutingKey))
        }
        return bindings
    }
}
