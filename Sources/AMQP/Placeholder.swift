internal import CRabbitMQ
func rabbitVersion() -> String { String(cString: amqp_version()) }
