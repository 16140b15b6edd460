/// The `basic` content properties of a message. Copies made for retry and dead-letter
/// keep these as they came, so the original producer's intent travels with the message.
public struct MessageProperties: Sendable, Equatable {
    public var contentType: String?
    public var contentEncoding: String?
    public var headers: AMQPTable?
    /// 2 means persistent.
    public var deliveryMode: UInt8?
    public var priority: UInt8?
    public var correlationId: String?
    public var replyTo: String?
    public var expiration: String?
    public var messageId: String?
    public var timestamp: UInt64?
    public var type: String?
    public var userId: String?
    public var appId: String?
    public var clusterId: String?

    public init(
        contentType: String? = nil, headers: AMQPTable? = nil, deliveryMode: UInt8? = nil,
        messageId: String? = nil
    ) {
        self.contentType = contentType
        self.headers = headers
        self.deliveryMode = deliveryMode
        self.messageId = messageId
    }
}

/// One message handed to this consumer by the broker.
///
/// The delivery tag belongs to the channel the message arrived on; `channelGeneration`
/// says which one, so a settlement meant for a channel that has since died is dropped
/// instead of acknowledging some other message on the new channel.
public struct Delivery: Sendable {
    public let deliveryTag: UInt64
    public let channelGeneration: UInt64
    public let isRedelivered: Bool
    public let exchange: String
    public let routingKey: String
    public let properties: MessageProperties
    /// The body, copied out of the library's buffers.
    public let body: [UInt8]

    public init(
        deliveryTag: UInt64, channelGeneration: UInt64, isRedelivered: Bool, exchange: String,
        routingKey: String, properties: MessageProperties, body: [UInt8]
    ) {
        self.deliveryTag = deliveryTag
        self.channelGeneration = channelGeneration
        self.isRedelivered = isRedelivered
        self.exchange = exchange
        self.routingKey = routingKey
        self.properties = properties
        self.body = body
    }
}

/// A message read with `basic.get` (used by tools that inspect a queue).
public struct GetResult: Sendable {
    public let deliveryTag: UInt64
    public let isRedelivered: Bool
    public let exchange: String
    public let routingKey: String
    public let messageCount: UInt32
    public let properties: MessageProperties
    public let body: [UInt8]
}
