import AMQP
import Foundation
import Testing

/// TLS end to end: `amqps://` to RabbitMQ's TLS listener on localhost:5671 and HTTPS to an
/// emulator, both with certificates made by `scripts/make-test-certs`; a wrong CA, a wrong host
/// name or an expired certificate stops the daemon at start-up with a message that names the
/// problem, and no log line carries key material or a password.
///
/// Needs the broker started by `scripts/test` (`start_broker` in `scripts/lib.sh` gives it the
/// TLS listener) and the certificates in `DRUID_SYNC_TEST_CERTS` (default `.build/test-certs`).
@Suite("TLS", .serialized, .timeLimit(.minutes(4)))
final class TLSTests {
    let queue = Harness.uniqueName("tls")
    let directory: URL
    let certificates: TestCertificates
    let broker: BrokerTool
    var daemons: [Daemon] = []

    /// The daemon gets this long to give up on a TLS failure at start-up.
    static let startupFailureLimit: Duration = .seconds(15)
    static let tlsBrokerURL = "amqps://guest:guest@localhost:5671/%2F"

    init() throws {
        certificates = try TestCertificates()
        directory = try Harness.temporaryDirectory()
        broker = try BrokerTool()
    }

    deinit {
        for daemon in daemons { daemon.kill9() }
        broker.deleteTopology(queue: queue)
    }

    // MARK: Helpers

    /// Starts the daemon with a configuration that works; `extra` replaces parts of it.
    func startDaemon(druidURL: String, extra: [String: String]) throws -> Daemon {
        var environment = [
            "DRUID_SYNC_AMQP_URL": Harness.brokerURL,
            "DRUID_SYNC_QUEUE": queue,
            "DRUID_SYNC_QUEUE_TYPE": "classic",
            "DRUID_SYNC_AUTH_URL": druidURL,
            "DRUID_SYNC_GRAPH_URL": druidURL,
            "DRUID_SYNC_CLIENT_ID": "druid-sync-it",
            "DRUID_SYNC_CLIENT_SECRET": Harness.clientSecret,
            "DRUID_SYNC_RETRY_DELAYS": "1s",
            "DRUID_SYNC_LOG_LEVEL": "debug",
        ]
        for (key, value) in extra { environment[key] = value }
        let daemon = try Daemon(
            environment: environment, logFile: directory.appendingPathComponent("daemon-\(daemons.count).log"))
        daemons.append(daemon)
        return daemon
    }

    /// Waits for the daemon to exit on its own; returns its exit status.
    func exitStatus(of daemon: Daemon, within limit: Duration = startupFailureLimit) async throws -> Int32 {
        let deadline = ContinuousClock.now + limit
        while daemon.process.isRunning {
            guard ContinuousClock.now < deadline else {
                throw HarnessError(
                    "druid-sync was still running \(limit) after start-up; a TLS failure before the first "
                        + "connection must stop it:\n\(daemon.log.suffix(3000))")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let status = daemon.process.terminationStatus
        #expect(
            daemon.process.terminationReason == .exit,
            "druid-sync did not exit but died of signal \(status):\n\(daemon.log.suffix(6000))")
        return status
    }

    /// The daemon must have stopped with a non-zero status, and its log must hold every phrase.
    func expectStartupFailure(_ daemon: Daemon, phrases: [String]) async throws {
        let status = try await exitStatus(of: daemon)
        #expect(status != 0, "druid-sync exited with status 0 after a TLS failure")
        let log = daemon.log
        for phrase in phrases {
            #expect(log.contains(phrase), "the log does not say \"\(phrase)\":\n\(log.suffix(3000))")
        }
    }

    /// No private key of the test folder, no password and no client secret in `log`.
    func expectNoSecrets(in log: String) throws {
        for name in TestCertificates.keyFiles {
            let leaked = try certificates.keyBodyLines(name).filter { log.contains($0) }
            #expect(leaked.isEmpty, "lines of \(name) reached the log")
        }
        #expect(!log.contains("PRIVATE KEY"), "a PEM private key reached the log")
        #expect(!log.contains("guest:guest"), "the broker password reached the log")
        #expect(!log.contains(Harness.clientSecret), "the DRUID client secret reached the log")
    }

    /// Fails the test, saying how to fix it, unless RabbitMQ's TLS listener on localhost:5671
    /// presents a certificate from the test CA.
    func requireBrokerTLSListener() throws {
        let endpoint = AMQPEndpoint(
            host: "localhost", port: 5671, user: "guest", password: "guest", virtualHost: "/",
            tls: AMQPTLSSettings(caFile: certificates.path("ca.pem")))
        do {
            let connection = try AMQPConnection(endpoint: endpoint, options: AMQPConnectionOptions())
            connection.close()
        } catch {
            throw HarnessError(
                "RabbitMQ has no usable TLS listener on localhost:5671 with a certificate from "
                    + "\(certificates.path("ca.pem")) (\(error)). scripts/test starts the broker with one; a broker "
                    + "that was already running without it must be stopped first (rabbitmqctl stop), or started with "
                    + "RABBITMQ_CONFIG_FILE=\(certificates.path("rabbitmq.conf")) (see start_broker in scripts/lib.sh)."
            )
        }
    }

    /// Publishes `count` events on the plain port, waits until the emulator applied all of them,
    /// and checks a few users.
    func publishAndExpectApplied(count: Int, factory: EventFactory, emulator: HTTPSEmulator) async throws {
        var made: [EventFactory.Made] = []
        for index in 0..<count {
            let event = factory.event(index)
            made.append(event)
            try broker.publish(queue: queue, body: event.body)
        }
        try broker.waitForConfirms()
        try await eventually("all \(count) events applied over HTTPS") {
            (try emulator.stats()["applied"] as? Int ?? 0) >= count
        }
        try await eventually("the work queue drained") { try broker.messageCount(queue) == 0 }
        for event in made.prefix(5) {
            let user = try #require(try emulator.user(event.objectId))
            let email = ((user["ids"] as? [String: Any])?["email"] as? [String: Any])?["value"] as? String
            #expect(email == event.email, "user \(event.objectId) holds the new e-mail")
        }
        #expect(try broker.messageCount(queue + ".dead-letter") == 0)
    }

    // MARK: Working TLS

    @Test func amqpsAndHTTPSWithTheTestCA() async throws {
        try requireBrokerTLSListener()
        let emulator = try HTTPSEmulator(certificates: certificates)
        let factory = EventFactory()
        let count = 30
        try emulator.seedUsers(factory.seedUsers(count: count))
        let daemon = try startDaemon(
            druidURL: emulator.url,
            extra: [
                "DRUID_SYNC_AMQP_URL": Self.tlsBrokerURL,
                "DRUID_SYNC_AMQP_CA_FILE": certificates.path("ca.pem"),
                "DRUID_SYNC_CA_FILE": certificates.path("ca.pem"),
            ])
        try await daemon.waitForLog("msg=consuming")
        let consuming = daemon.log.split(separator: "\n").first { $0.contains("msg=consuming") } ?? ""
        #expect(consuming.contains("endpoint=amqps://guest@localhost:5671"), "consuming over TLS: \(consuming)")
        try await publishAndExpectApplied(count: count, factory: factory, emulator: emulator)

        if let connections = try BrokerConnections.of(daemon) {
            #expect(!connections.isEmpty, "the broker lists the daemon's connections")
            for connection in connections {
                #expect(connection.ssl, "the broker sees a TLS connection")
                #expect(["tlsv1.2", "tlsv1.3"].contains(connection.protocolVersion), "TLS 1.2 or newer")
                #expect(connection.peerCertificateSubject.isEmpty, "no client certificate was configured")
            }
        }
        #expect(daemon.terminate() == 0)
        try expectNoSecrets(in: daemon.log)
    }

    @Test func clientCertificateAndKeyAreLoadedAndPresented() async throws {
        try requireBrokerTLSListener()
        let emulator = try HTTPSEmulator(certificates: certificates)
        let factory = EventFactory()
        let count = 10
        try emulator.seedUsers(factory.seedUsers(count: count))
        let daemon = try startDaemon(
            druidURL: emulator.url,
            extra: [
                "DRUID_SYNC_AMQP_URL": Self.tlsBrokerURL,
                "DRUID_SYNC_AMQP_CA_FILE": certificates.path("ca.pem"),
                "DRUID_SYNC_AMQP_CERT_FILE": certificates.path("client.pem"),
                "DRUID_SYNC_AMQP_KEY_FILE": certificates.path("client.key"),
                "DRUID_SYNC_CA_FILE": certificates.path("ca.pem"),
            ])
        try await daemon.waitForLog("msg=consuming")
        try await publishAndExpectApplied(count: count, factory: factory, emulator: emulator)

        // The broker asks for a client certificate but does not insist (fail_if_no_peer_cert =
        // false): its connection list shows whether one came.
        if let connections = try BrokerConnections.of(daemon) {
            #expect(!connections.isEmpty, "the broker lists the daemon's connections")
            for connection in connections {
                #expect(connection.ssl)
                #expect(
                    connection.peerCertificateSubject.contains("CN=druid-sync"),
                    "the broker saw the client certificate: \(connection.peerCertificateSubject)")
            }
        }
        #expect(daemon.terminate() == 0)
        try expectNoSecrets(in: daemon.log)
    }

    // MARK: Broker TLS failures

    @Test func brokerCertificateFromAnUnknownCAFailsStartUp() async throws {
        try requireBrokerTLSListener()
        let emulator = try Emulator()
        let daemon = try startDaemon(
            druidURL: emulator.baseURL,
            extra: [
                "DRUID_SYNC_AMQP_URL": Self.tlsBrokerURL,
                "DRUID_SYNC_AMQP_CA_FILE": certificates.path("other-ca.pem"),
                // A client key in play too, to show it stays out of the error.
                "DRUID_SYNC_AMQP_CERT_FILE": certificates.path("client.pem"),
                "DRUID_SYNC_AMQP_KEY_FILE": certificates.path("client.key"),
            ])
        try await expectStartupFailure(
            daemon,
            phrases: [
                "msg=\"cannot connect to the broker\"", "the broker's certificate could not be verified",
                "unknown CA",
            ])
        try expectNoSecrets(in: daemon.log)
    }

    @Test func brokerCertificateForAnotherHostNameFailsStartUp() async throws {
        try requireBrokerTLSListener()
        let emulator = try Emulator()
        // The server certificate names localhost only; 127.0.0.1 is not in it.
        let daemon = try startDaemon(
            druidURL: emulator.baseURL,
            extra: [
                "DRUID_SYNC_AMQP_URL": "amqps://guest:guest@127.0.0.1:5671/%2F",
                "DRUID_SYNC_AMQP_CA_FILE": certificates.path("ca.pem"),
            ])
        try await expectStartupFailure(
            daemon, phrases: ["msg=\"cannot connect to the broker\"", "does not match the host name"])
        try expectNoSecrets(in: daemon.log)
    }

    @Test func clientKeyThatDoesNotMatchItsCertificateFailsStartUp() async throws {
        try requireBrokerTLSListener()
        let emulator = try Emulator()
        let daemon = try startDaemon(
            druidURL: emulator.baseURL,
            extra: [
                "DRUID_SYNC_AMQP_URL": Self.tlsBrokerURL,
                "DRUID_SYNC_AMQP_CA_FILE": certificates.path("ca.pem"),
                "DRUID_SYNC_AMQP_CERT_FILE": certificates.path("client.pem"),
                "DRUID_SYNC_AMQP_KEY_FILE": certificates.path("server.key"),
            ])
        try await expectStartupFailure(
            daemon, phrases: ["msg=\"cannot connect to the broker\"", "cannot load the client certificate"])
        try expectNoSecrets(in: daemon.log)
    }

    /// The AMQP module itself, against the listener: the error names the cause.
    @Test func amqpErrorsNameTheTLSProblem() throws {
        try requireBrokerTLSListener()
        let cases: [(host: String, ca: String, phrase: String)] = [
            ("localhost", "other-ca.pem", "could not be verified"),
            ("127.0.0.1", "ca.pem", "does not match the host name"),
        ]
        for item in cases {
            let endpoint = AMQPEndpoint(
                host: item.host, port: 5671, user: "guest", password: "tls-test-Pw7", virtualHost: "/",
                tls: AMQPTLSSettings(
                    caFile: certificates.path(item.ca), certificateFile: certificates.path("client.pem"),
                    keyFile: certificates.path("client.key")))
            do {
                _ = try AMQPConnection(endpoint: endpoint, options: AMQPConnectionOptions())
                Issue.record("connecting to \(item.host) trusting \(item.ca) succeeded")
            } catch {
                #expect(error.code == .tlsFailed, "\(error)")
                #expect(error.description.contains(item.phrase), "\(error)")
                #expect(!error.description.contains("tls-test-Pw7"))
                let leaked = try certificates.keyBodyLines("client.key").filter { error.description.contains($0) }
                #expect(leaked.isEmpty)
            }
        }
    }

    // MARK: DRUID TLS failures

    struct DruidCase: Sendable, CustomTestStringConvertible {
        let name: String
        let certificate: String
        let caFile: String
        let host: String
        let phrase: String
        var testDescription: String { name }
    }

    @Test(
        arguments: [
            DruidCase(
                name: "unknown CA", certificate: "server", caFile: "other-ca.pem", host: "localhost",
                phrase: "unable to get local issuer certificate"),
            DruidCase(
                name: "host name not in the certificate", certificate: "server", caFile: "ca.pem",
                host: "127.0.0.1", phrase: "target host name"),
            DruidCase(
                name: "expired certificate", certificate: "expired-server", caFile: "ca.pem", host: "localhost",
                phrase: "certificate has expired"),
        ])
    func druidCertificateProblemsFailStartUp(_ item: DruidCase) async throws {
        let emulator = try HTTPSEmulator(certificates: certificates, certificate: item.certificate)
        let url = emulator.url.replacingOccurrences(of: "://localhost:", with: "://\(item.host):")
        // The broker is reached over plain AMQP here: only DRUID's certificate is wrong.
        let daemon = try startDaemon(druidURL: url, extra: ["DRUID_SYNC_CA_FILE": certificates.path(item.caFile)])
        try await expectStartupFailure(daemon, phrases: ["msg=\"cannot reach DRUID over TLS\"", item.phrase])
        try expectNoSecrets(in: daemon.log)
    }

    // MARK: Unit: key material stays out of errors

    @Test func amqpErrorForAnUnusableClientKeyCarriesNoKeyMaterial() throws {
        // An unreadable "key" with a recognisable body, and a real key that belongs to another
        // certificate. Both fail before any connection is attempted.
        let secretLine = "U0VDUkVULUtFWS1NQVRFUklBTC1kby1ub3QtcHJpbnQtbWUtWnE5dg=="
        let garbage = directory.appendingPathComponent("garbage.key")
        try "-----BEGIN PRIVATE KEY-----\n\(secretLine)\n-----END PRIVATE KEY-----\n".write(
            to: garbage, atomically: true, encoding: .utf8)
        let mismatched = certificates.path("server.key")
        let cases: [(file: String, lines: [String])] = [
            (garbage.path, [secretLine]), (mismatched, try certificates.keyBodyLines("server.key")),
        ]
        for item in cases {
            let endpoint = AMQPEndpoint(
                host: "localhost", port: 5671, user: "guest", password: "tls-test-Pw7", virtualHost: "/",
                tls: AMQPTLSSettings(
                    caFile: certificates.path("ca.pem"), certificateFile: certificates.path("client.pem"),
                    keyFile: item.file))
            do {
                _ = try AMQPConnection(endpoint: endpoint, options: AMQPConnectionOptions())
                Issue.record("a client key that cannot be used was accepted: \(item.file)")
            } catch {
                #expect(error.code == .tlsFailed, "\(error)")
                #expect(error.description.contains("client certificate"), "the error names what failed: \(error)")
                let text = error.description + error.detail + error.context
                #expect(item.lines.allSatisfy { !text.contains($0) }, "key material in the error: \(error)")
                #expect(!text.contains("PRIVATE KEY") && !text.contains("tls-test-Pw7"), "\(error)")
            }
        }
    }
}

// MARK: - Support

/// The folder `scripts/make-test-certs` fills: `DRUID_SYNC_TEST_CERTS`, or `.build/test-certs`.
struct TestCertificates {
    static let certificateFiles = ["ca.pem", "server.pem", "client.pem", "other-ca.pem", "expired-server.pem"]
    static let keyFiles = ["ca.key", "server.key", "client.key", "other-ca.key", "expired-server.key"]
    let directory: URL

    init() throws {
        let configured = ProcessInfo.processInfo.environment["DRUID_SYNC_TEST_CERTS"].flatMap { $0.isEmpty ? nil : $0 }
        directory =
            configured.map { URL(fileURLWithPath: $0) }
            ?? Harness.packageRoot.appendingPathComponent(".build/test-certs")
        let missing = (Self.certificateFiles + Self.keyFiles).filter {
            !FileManager.default.isReadableFile(atPath: directory.appendingPathComponent($0).path)
        }
        guard missing.isEmpty else {
            throw HarnessError(
                "the TLS test certificates are missing from \(directory.path) (\(missing.joined(separator: ", "))): "
                    + "run scripts/make-test-certs \(directory.path) (scripts/test does, then starts RabbitMQ "
                    + "with a TLS listener using them)")
        }
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The base64 lines of a PEM key: the part that must never be printed.
    func keyBodyLines(_ name: String) throws -> [String] {
        let text = try String(contentsOfFile: path(name), encoding: .utf8)
        return text.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("-----") && $0.count >= 16 }
    }
}

/// An emulator serving HTTPS with a test certificate, reached as `https://localhost:PORT`
/// (the name in the certificate). Its admin API is called with the curl command, trusting
/// the test CA (URLSession on Linux cannot be given a CA per session).
final class HTTPSEmulator: @unchecked Sendable {  // See Emulator.
    let emulator: Emulator
    let url: String
    let caFile: String

    init(certificates: TestCertificates, certificate: String = "server") throws {
        emulator = try Emulator(arguments: [
            "--tls-cert", certificates.path("\(certificate).pem"), "--tls-key", certificates.path("\(certificate).key"),
        ])
        guard emulator.baseURL.hasPrefix("https://127.0.0.1:") else {
            throw HarnessError("the emulator did not start with HTTPS: \(emulator.baseURL)")
        }
        url = emulator.baseURL.replacingOccurrences(of: "https://127.0.0.1:", with: "https://localhost:")
        caFile = certificates.path("ca.pem")
    }

    @discardableResult
    func admin(_ method: String, _ path: String, _ body: Any? = nil) throws -> Any {
        // The emulator listens on 127.0.0.1 only: pin localhost there, so no ::1 attempt first.
        var arguments = [
            "-sS", "--max-time", "10", "--cacert", caFile, "--resolve",
            String(url.dropFirst("https://".count)) + ":127.0.0.1",
            "-X", method, "-w", "\n%{http_code}",
        ]
        if let body {
            let data = try JSONSerialization.data(withJSONObject: body)
            arguments += [
                "-H", "Content-Type: application/json", "--data-binary", String(decoding: data, as: UTF8.self),
            ]
        }
        arguments.append(url + path)
        let result = try runCommand("/usr/bin/curl", arguments)
        guard result.status == 0 else {
            throw HarnessError("curl \(method) \(url)\(path) failed (\(result.status)): \(result.errorText)")
        }
        var text = String(decoding: result.output, as: UTF8.self)
        let statusLine = text.split(separator: "\n").last.map(String.init) ?? ""
        text = String(text.dropLast(statusLine.count))
        let status = Int(statusLine) ?? 0
        guard (200..<300).contains(status) || (status == 404 && method == "GET") else {
            throw HarnessError("emulator \(method) \(path) answered \(status): \(text)")
        }
        if status == 404 { return NSNull() }
        return try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
    }

    func seedUsers(_ users: [[String: Any]]) throws { try admin("POST", "/admin/users", ["users": users]) }

    func user(_ objectId: String) throws -> [String: Any]? {
        try admin("GET", "/admin/users/\(objectId)") as? [String: Any]
    }

    func stats() throws -> [String: Any] { try admin("GET", "/admin/stats") as? [String: Any] ?? [:] }
}

/// The broker's own view of a daemon's connections, from `rabbitmqctl list_connections`.
struct BrokerConnections {
    let ssl: Bool
    let protocolVersion: String
    let peerCertificateSubject: String

    /// The connections whose name carries the daemon's process id; `nil` when rabbitmqctl cannot
    /// be used here (not installed, or no access to the node's cookie), so the check is left out.
    static func of(_ daemon: Daemon) throws -> [BrokerConnections]? {
        let marker = " pid \(daemon.process.processIdentifier)"
        guard
            let result = try? runCommand(
                "/usr/bin/env",
                [
                    "rabbitmqctl", "-q", "list_connections", "ssl", "ssl_protocol", "peer_cert_subject",
                    "client_properties", "--formatter", "json",
                ]),
            result.status == 0
        else {
            print("TLSTests: rabbitmqctl is not usable here; the broker-side TLS checks are left out")
            return nil
        }
        let rows = try JSONSerialization.jsonObject(with: result.output) as? [[String: Any]] ?? []
        return rows.compactMap { row in
            let properties = row["client_properties"] as? [[Any]] ?? []
            let name = properties.first { $0.first as? String == "connection_name" }?.last as? String ?? ""
            guard name.hasSuffix(marker) else { return nil }
            return BrokerConnections(
                ssl: row["ssl"] as? Bool ?? false, protocolVersion: row["ssl_protocol"] as? String ?? "",
                peerCertificateSubject: row["peer_cert_subject"] as? String ?? "")
        }
    }
}

/// Runs a short command to completion; returns its status, standard output and error text.
func runCommand(
    _ executable: String, _ arguments: [String]
) throws -> (
    status: Int32, output: Data, errorText: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    let errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.fileHandleForReading.readDataToEndOfFile()
    // Polling, like stopProcess: waitUntilExit spins a run loop.
    while process.isRunning { usleep(10_000) }
    return (process.terminationStatus, data, String(decoding: errorData, as: UTF8.self))
}
