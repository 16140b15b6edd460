import AMQP
import Druid
import HTTPClient
import UserUpdates

/// `druid-sync check`: tries everything the daemon needs before it is started, and says
/// for each thing what is wrong and how to fix it.
///
/// Checks, in order: the configuration, each broker endpoint, the topology (on the first
/// endpoint that answered) and a DRUID token with the configured client. One line each on
/// standard output; no line ever contains the client secret or a broker password.
/// Exits 0 when every check passed, 1 when one failed, 2 when the configuration is
/// unusable (as `run` does).
enum CheckCommand {
    /// One check's line.
    struct Result {
        enum Status: String {
            case ok = "ok  "
            case fail = "FAIL"
            case skipped = "skip"
        }

        var status: Status
        var subject: String
        var detail: String
        var fix: String?

        static func ok(_ subject: String, _ detail: String) -> Result {
            Result(status: .ok, subject: subject, detail: detail, fix: nil)
        }

        static func fail(_ subject: String, _ problem: String, fix: String) -> Result {
            Result(status: .fail, subject: subject, detail: problem, fix: fix)
        }

        /// `ok    subject: detail` or `FAIL  subject: problem (fix: …)`.
        var text: String {
            var line = status.rawValue + "  " + subject
            if !detail.isEmpty { line += ": " + detail }
            if let fix { line += " (fix: " + fix + ")" }
            return line
        }
    }

    static func run(arguments: [String], environment: [String: String]) async -> Int32 {
        guard arguments.isEmpty else {
            return CommandLineInterface.usageError("check takes no arguments: \(arguments.joined(separator: " "))")
        }
        let configuration: Configuration
        do {
            configuration = try Configuration.fromEnvironment(environment, readFile: Configuration.readTextFile)
        } catch {
            report(
                .fail(
                    "configuration", "\(error)",
                    fix: "correct \(error.variable) where the service's environment is set "
                        + "(/etc/druid-sync/druid-sync.env for the packaged unit)"))
            return 2
        }
        report(.ok("configuration", describe(configuration)))

        var results: [Result] = []
        var reachable: AMQPEndpoint?
        let options = OperatorConsole.connectionOptions(configuration, purpose: "check")
        for endpoint in OperatorConsole.endpoints(configuration) {
            let result = checkBroker(endpoint, options: options)
            if result.status == .ok && reachable == nil { reachable = endpoint }
            results.append(result)
            report(result)
        }
        let topology: Result
        if let reachable {
            topology = checkTopology(configuration, endpoint: reachable, options: options)
        } else {
            topology = Result(
                status: .skipped, subject: "topology", detail: "not checked: no broker endpoint answered", fix: nil)
        }
        results.append(topology)
        report(topology)
        let token = await checkToken(configuration)
        results.append(token)
        report(token)
        return results.allSatisfy { $0.status == .ok } ? 0 : 1
    }

    private static func report(_ result: Result) { OperatorConsole.line(result.text) }

    /// What the configuration amounts to, secrets left out.
    private static func describe(_ configuration: Configuration) -> String {
        let endpoints = configuration.amqp.endpoints.count
        return "work queue \(configuration.amqp.queue), \(endpoints) broker endpoint\(endpoints == 1 ? "" : "s"), "
            + "DRUID client \(configuration.druid.clientId) (client secret: \(configuration.druid.clientSecretSource))"
    }

    // MARK: Broker

    static func checkBroker(_ endpoint: AMQPEndpoint, options: AMQPConnectionOptions) -> Result {
        let subject = "broker \(endpoint)"
        do throws(AMQPError) {
            let connection = try AMQPConnection(endpoint: endpoint, options: options)
            defer { connection.close() }
            return .ok(subject, "connected to \(connection.serverDescription)")
        } catch {
            return .fail(subject, OperatorConsole.brokerProblem(error), fix: OperatorConsole.brokerFix(error))
        }
    }

    /// Every queue must exist (passive declare). With `DRUID_SYNC_DECLARE=true` the topology
    /// is then declared as the daemon will at start, a no-op when it matches, so a queue
    /// of another type or with other arguments, or a missing permission, shows here.
    static func checkTopology(
        _ configuration: Configuration, endpoint: AMQPEndpoint, options: AMQPConnectionOptions
    ) -> Result {
        let topology = configuration.topology
        let subject = "topology"
        let session = BrokerSession(endpoint: endpoint, options: options)
        defer { session.close() }
        var missing: [String] = []
        var workQueueCounts: (messageCount: UInt32, consumerCount: UInt32)?
        var deadLetterCount: UInt32?
        for queue in topology.queues {
            do throws(AMQPError) {
                let counts = try session.connection().declareQueue(name: queue.name, passive: true)
                if queue.name == topology.workQueue { workQueueCounts = counts }
                if queue.name == topology.deadLetterQueue { deadLetterCount = counts.messageCount }
            } catch {
                // A failed declaration closes the channel: the next one needs a new connection.
                session.drop()
                guard error.replyCode == 404 else {
                    return .fail(
                        subject, "cannot check queue \(queue.name): \(OperatorConsole.brokerProblem(error))",
                        fix: permissionFix(error))
                }
                missing.append(queue.name)
            }
        }
        if !missing.isEmpty {
            let declares = configuration.amqp.declaresTopology
            return .fail(
                subject,
                "\(missing.count) of \(topology.queues.count) queues missing: \(missing.joined(separator: ", "))",
                fix: declares
                    ? "start the daemon once (DRUID_SYNC_DECLARE=true declares them; the broker user needs "
                        + "the configure permission) or import deploy/rabbitmq/definitions.json"
                    : "run the daemon once with DRUID_SYNC_DECLARE=true or import deploy/rabbitmq/definitions.json")
        }
        if configuration.amqp.declaresTopology {
            do throws(AMQPError) {
                try TopologyDeclarer.declare(topology, on: try session.connection())
            } catch {
                session.drop()
                let fix =
                    error.replyCode == 406
                    ? "an existing queue or exchange differs from what the settings describe (DRUID_SYNC_QUEUE_TYPE, "
                        + "DRUID_SYNC_RETRY_DELAYS, DRUID_SYNC_BIND_EXCHANGE): change the setting back, or delete "
                        + "the object once it is empty so the daemon declares it anew"
                    : permissionFix(error)
                return .fail(
                    subject,
                    "the queues exist but declaring them as the daemon does failed: \(error)", fix: fix)
            }
        }
        var detail = "all \(topology.queues.count) queues present"
        if let workQueueCounts {
            detail +=
                "; \(topology.workQueue): \(workQueueCounts.messageCount) ready, "
                + "\(workQueueCounts.consumerCount) consumer\(workQueueCounts.consumerCount == 1 ? "" : "s")"
        }
        if let deadLetterCount { detail += "; \(topology.deadLetterQueue): \(deadLetterCount) messages" }
        if configuration.amqp.declaresTopology { detail += "; declarations match the settings" }
        return .ok(subject, detail)
    }

    private static func permissionFix(_ error: AMQPError) -> String {
        if error.replyCode == 403 {
            return "the broker user lacks a permission on these objects: grant configure, write and read on "
                + "them (rabbitmqctl set_permissions), or set DRUID_SYNC_DECLARE=false and import "
                + "deploy/rabbitmq/definitions.json"
        }
        return OperatorConsole.brokerFix(error)
    }

    // MARK: DRUID

    static func checkToken(_ configuration: Configuration) async -> Result {
        let druid = configuration.druid
        let subject = "DRUID token \(druid.authURL)/oauth2/token"
        let http: HTTPClient
        do {
            http = try HTTPClient(
                configuration: HTTPClientConfiguration(
                    maximumIdleConnections: 2, certificateAuthorityFile: druid.caFile,
                    userAgent: "druid-sync/\(CommandLineInterface.version) check"))
        } catch {
            return .fail(subject, "\(error)", fix: "check DRUID_SYNC_CA_FILE")
        }
        defer { http.shutdown() }
        let client = DruidClient(
            configuration: DruidClientConfiguration(
                authURL: druid.authURL, graphURL: druid.graphURL, clientId: druid.clientId,
                clientSecret: druid.clientSecret, entryPoint: druid.entryPoint, timeout: druid.timeout),
            http: http)
        switch await client.requestToken() {
        case .success(let token):
            return .ok(subject, "client \(druid.clientId): \(token)")
        case .failure(let failure):
            if case .credentialsRefused = failure.answer {
                var fix =
                    "the client secret or the client id is wrong: check DRUID_SYNC_CLIENT_ID (\(druid.clientId)) "
                    + "and the secret (\(druid.clientSecretSource)), and that DRUID lets this client use "
                    + "the challenge-code grant"
                if druid.clientSecretSource == .defaultForEmulator {
                    fix +=
                        "; no secret is configured: put it in the file of LoadCredential=druid-client-secret "
                        + "or name it with DRUID_SYNC_CLIENT_SECRET_FILE"
                }
                return .fail(subject, "\(failure)", fix: fix)
            }
            return .fail(
                subject, "\(failure)",
                fix: "check DRUID_SYNC_AUTH_URL, that this host reaches it (proxy, firewall, DNS) "
                    + "and, for https, DRUID_SYNC_CA_FILE")
        }
    }
}

/// A connection opened on first use and dropped after a channel error, since the AMQP
/// module's connection has a single channel that a failed declaration closes.
final class BrokerSession {
    let endpoint: AMQPEndpoint
    let options: AMQPConnectionOptions
    private var current: AMQPConnection?

    init(endpoint: AMQPEndpoint, options: AMQPConnectionOptions) {
        self.endpoint = endpoint
        self.options = options
    }

    func connection() throws(AMQPError) -> AMQPConnection {
        if let current { return current }
        let opened = try AMQPConnection(endpoint: endpoint, options: options)
        current = opened
        return opened
    }

    func drop() { current = nil }

    func close() {
        current?.close()
        current = nil
    }
}
