import AMQP
import FoundationEssentials

#if canImport(Glibc)
    import Glibc
#endif

/// What the operator commands (`check`, `dead-letters`) share: unbuffered output, the
/// configuration, and short-lived broker connections.
///
/// These commands run in the foreground for a person: they block their thread on the
/// broker (rabbitmq-c is synchronous) and write whole lines straight to the descriptor,
/// so a progress line shows at once and nothing is left in a buffer when the process is
/// killed.
enum OperatorConsole {
    /// Writes `text` followed by a line end to standard output.
    static func line(_ text: String) { emit(text + "\n", to: 1) }

    /// Writes `text` to standard output as it is (progress lines that end in `\r`).
    static func raw(_ text: String, toStandardError: Bool = false) { emit(text, to: toStandardError ? 2 : 1) }

    /// Everything on standard input, until end of file.
    static func readStandardInput() -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(0, &chunk, chunk.count)
            if count > 0 {
                bytes.append(contentsOf: chunk[0..<count])
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                return bytes
            }
        }
    }

    /// Writes `druid-sync: text` and a line end to standard error.
    static func problem(_ text: String) { emit("druid-sync: " + text + "\n", to: 2) }

    /// Whether standard output is a terminal (progress lines are drawn only then).
    static var isTerminal: Bool { isatty(1) == 1 }

    private static func emit(_ text: String, to descriptor: Int32) {
        Array(text.utf8).withUnsafeBytes { writeFully($0, to: descriptor) }
    }

    /// The configuration from the environment, or nil after printing why not to standard
    /// error (the caller then exits 2, as `run` does).
    static func configuration(from environment: [String: String]) -> Configuration? {
        do {
            return try Configuration.fromEnvironment(environment, readFile: Configuration.readTextFile)
        } catch {
            problem("configuration error: \(error)")
            return nil
        }
    }

    /// Connection options for a command's own connection, named so the management UI
    /// tells it from the daemon's.
    static func connectionOptions(_ configuration: Configuration, purpose: String) -> AMQPConnectionOptions {
        var options = AMQPConnectionOptions()
        options.heartbeatSeconds = Int(configuration.amqp.heartbeat.components.seconds)
        options.clientVersion = CommandLineInterface.version
        options.connectionName = "druid-sync \(purpose) \(ProcessInfo.processInfo.hostName) pid \(getpid())"
        return options
    }

    /// The broker endpoints in the order the daemon tries them.
    static func endpoints(_ configuration: Configuration) -> [AMQPEndpoint] {
        configuration.amqp.endpoints.map { $0.brokerEndpoint(tls: configuration.amqp) }
    }

    /// Connects to the first endpoint that answers, or prints each failure to standard
    /// error and returns nil.
    static func connect(_ configuration: Configuration, purpose: String) -> AMQPConnection? {
        let options = connectionOptions(configuration, purpose: purpose)
        for endpoint in endpoints(configuration) {
            do throws(AMQPError) {
                return try AMQPConnection(endpoint: endpoint, options: options)
            } catch {
                problem("cannot connect to \(endpoint): \(brokerProblem(error)) (fix: \(brokerFix(error)))")
            }
        }
        return nil
    }

    /// The broker's explanation of `error`, without the context the caller already names.
    static func brokerProblem(_ error: AMQPError) -> String {
        error.detail + (error.replyCode.map { " (AMQP \($0))" } ?? "")
    }

    /// What an operator can do about a failed connection.
    static func brokerFix(_ error: AMQPError) -> String {
        switch error.code {
        case .authenticationFailed where error.replyCode == 530:
            return "the user may not use this virtual host: check the path of DRUID_SYNC_AMQP_URL "
                + "and the user's permissions (rabbitmqctl list_user_permissions USER)"
        case .authenticationFailed:
            return "check the user and password in DRUID_SYNC_AMQP_URL and that the user has "
                + "permissions on the virtual host (rabbitmqctl list_user_permissions USER)"
        case .tlsFailed:
            return "check DRUID_SYNC_AMQP_CA_FILE (the CA that signed the broker's certificate), that the "
                + "host name in DRUID_SYNC_AMQP_URL is one the certificate names, and "
                + "DRUID_SYNC_AMQP_CERT_FILE/DRUID_SYNC_AMQP_KEY_FILE if the broker wants a client certificate"
        case .connectionFailed, .timeout:
            return "check the host and port in DRUID_SYNC_AMQP_URL, that RabbitMQ runs there "
                + "and that no firewall is in the way"
        default:
            return "see the broker's log for this connection"
        }
    }
}
