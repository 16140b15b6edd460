import AMQP
import UserUpdates

/// Applies the domain's topology to a broker connection.
enum TopologyDeclarer {
    /// Declares every exchange, queue and binding; an existing one must match or the
    /// broker closes the channel (reply 406), which is reported with the object's name.
    static func declare(_ topology: Topology, on connection: AMQPConnection) throws(AMQPError) {
        for exchange in topology.exchanges {
            try connection.declareExchange(name: exchange.name, type: exchange.kind.rawValue, durable: exchange.durable)
        }
        for queue in topology.queues {
            try connection.declareQueue(
                name: queue.name, durable: queue.durable, arguments: HeaderConversion.table(from: queue.arguments))
        }
        for binding in topology.bindings {
            try connection.bindQueue(binding.queue, exchange: binding.exchange, routingKey: binding.routingKey)
        }
    }

    /// With `DRUID_SYNC_DECLARE=false`: checks that the queues exist (passive declare).
    static func check(_ topology: Topology, on connection: AMQPConnection) throws(AMQPError) {
        for queue in topology.queues {
            try connection.declareQueue(name: queue.name, passive: true)
        }
    }
}
