import DruidSync
import Foundation
import Testing
import UserUpdates

struct NoSuchFile: Error, CustomStringConvertible {
    var description: String { "No such file or directory" }
}

/// Reads files from a dictionary instead of the disk.
func files(_ contents: [String: String]) -> (String) throws -> String {
    { path in
        guard let content = contents[path] else { throw NoSuchFile() }
        return content
    }
}

func configuration(
    _ environment: [String: String], files contents: [String: String] = [:]
) throws(ConfigurationError)
    -> Configuration
{
    try Configuration.fromEnvironment(environment, readFile: files(contents))
}

/// The error for `environment`, or nil when it is accepted.
func configurationError(_ environment: [String: String], files contents: [String: String] = [:]) -> ConfigurationError?
{
    do {
        _ = try configuration(environment, files: contents)
        return nil
    } catch {
        return error
    }
}

@Suite struct ConfigurationTests {
    // MARK: Defaults

    @Test func defaults() throws {
        let configuration = try configuration([:])
        let endpoint = try #require(configuration.amqp.endpoints.first)
        #expect(configuration.amqp.endpoints.count == 1)
        #expect(!endpoint.usesTLS)
        #expect(endpoint.host == "127.0.0.1")
        #expect(endpoint.port == 5672)
        #expect(endpoint.user == "guest")
        #expect(endpoint.password.revealed == "guest")
        #expect(endpoint.virtualHost == "/")
        #expect(configuration.amqp.queue == "druid-sync.user-updates")
        #expect(configuration.amqp.queueType == .quorum)
        #expect(configuration.amqp.declaresTopology)
        #expect(configuration.amqp.bindExchange == nil)
        #expect(configuration.amqp.bindRoutingKey == "#")
        #expect(configuration.amqp.heartbeat == .seconds(30))
        #expect(configuration.amqp.caFile == nil)
        #expect(configuration.amqp.certificateFile == nil)
        #expect(configuration.amqp.keyFile == nil)
        #expect(configuration.concurrency == 64)
        #expect(configuration.retryPolicy == RetryPolicy())
        #expect(
            configuration.retryPolicy.delays == [
                .seconds(5), .seconds(30), .seconds(120), .seconds(600), .seconds(1800),
            ])
        #expect(configuration.retryPolicy.maxAttempts == 10)
        #expect(configuration.events.maxMessageBytes == 1_048_576)
        #expect(configuration.druid.authURL == "http://127.0.0.1:8080")
        #expect(configuration.druid.graphURL == "http://127.0.0.1:8080")
        #expect(configuration.druid.clientId == "druid-sync-demo")
        #expect(configuration.druid.clientSecret.revealed == "demo-secret")
        #expect(configuration.druid.clientSecretSource == .defaultForEmulator)
        #expect(configuration.druid.entryPoint == "231705665113870-main")
        #expect(configuration.events.verb == "update")
        #expect(configuration.events.defaultLocale == nil)
        #expect(configuration.events.assertionTypology == "user")
        #expect(configuration.druid.timeout == .seconds(10))
        #expect(configuration.druid.caFile == nil)
        #expect(configuration.logging.level == .info)
        #expect(configuration.logging.format == .logfmt)
        #expect(configuration.shutdownGrace == .seconds(20))
        #expect(configuration.statsInterval == .seconds(60))
        #expect(configuration.metricsFile == nil)
    }

    @Test func defaultEffectiveSettings() throws {
        let settings = try configuration([:]).effectiveSettings()
        #expect(settings.map(\.0) == settings.map(\.0).filter { $0.hasPrefix("DRUID_SYNC_") })
        #expect(Set(settings.map(\.0)).count == settings.count)
        let expected: [(String, String)] = [
            ("DRUID_SYNC_AMQP_URL", "amqp://guest:***@127.0.0.1:5672/%2F"),
            ("DRUID_SYNC_QUEUE", "druid-sync.user-updates"),
            ("DRUID_SYNC_QUEUE_TYPE", "quorum"),
            ("DRUID_SYNC_DECLARE", "true"),
            ("DRUID_SYNC_BIND_EXCHANGE", "(none)"),
            ("DRUID_SYNC_BIND_ROUTING_KEY", "#"),
            ("DRUID_SYNC_HEARTBEAT", "30s"),
            ("DRUID_SYNC_AMQP_CA_FILE", "(system CAs)"),
            ("DRUID_SYNC_AMQP_CERT_FILE", "(none)"),
            ("DRUID_SYNC_AMQP_KEY_FILE", "(none)"),
            ("DRUID_SYNC_CONCURRENCY", "64"),
            ("DRUID_SYNC_RETRY_DELAYS", "5s,30s,2m,10m,30m"),
            ("DRUID_SYNC_MAX_ATTEMPTS", "10"),
            ("DRUID_SYNC_MAX_MESSAGE_BYTES", "1048576"),
            ("DRUID_SYNC_AUTH_URL", "http://127.0.0.1:8080"),
            ("DRUID_SYNC_GRAPH_URL", "http://127.0.0.1:8080"),
            ("DRUID_SYNC_CLIENT_ID", "druid-sync-demo"),
            ("DRUID_SYNC_CLIENT_SECRET", "*** (the emulator's default)"),
            ("DRUID_SYNC_ENTRY_POINT", "231705665113870-main"),
            ("DRUID_SYNC_VERB", "update"),
            ("DRUID_SYNC_DEFAULT_LOCALE", "(none)"),
            ("DRUID_SYNC_ASSERTION_TYPOLOGY", "user"),
            ("DRUID_SYNC_HTTP_TIMEOUT", "10s"),
            ("DRUID_SYNC_CA_FILE", "(system CAs)"),
            ("DRUID_SYNC_LOG_LEVEL", "info"),
            ("DRUID_SYNC_LOG_FORMAT", "logfmt"),
            ("DRUID_SYNC_SHUTDOWN_GRACE", "20s"),
            ("DRUID_SYNC_STATS_INTERVAL", "1m"),
            ("DRUID_SYNC_METRICS_FILE", "(none)"),
        ]
        #expect(settings.map { "\($0.0)=\($0.1)" } == expected.map { "\($0.0)=\($0.1)" })
    }

    @Test func emptyValuesMeanUnset() throws {
        let configuration = try configuration([
            "DRUID_SYNC_CONCURRENCY": "", "DRUID_SYNC_BIND_EXCHANGE": "", "DRUID_SYNC_AMQP_URL": "  ",
            "DRUID_SYNC_CLIENT_SECRET": "",
        ])
        #expect(configuration.concurrency == 64)
        #expect(configuration.amqp.bindExchange == nil)
        #expect(configuration.amqp.endpoints.first?.host == "127.0.0.1")
        #expect(configuration.druid.clientSecretSource == .defaultForEmulator)
    }

    // MARK: Every variable, good values

    @Test func goodValues() throws {
        let configuration = try configuration([
            "DRUID_SYNC_QUEUE": "crm.users", "DRUID_SYNC_QUEUE_TYPE": "Classic", "DRUID_SYNC_DECLARE": "no",
            "DRUID_SYNC_BIND_EXCHANGE": "crm.events", "DRUID_SYNC_BIND_ROUTING_KEY": "user.updated",
            "DRUID_SYNC_CONCURRENCY": " 256 ", "DRUID_SYNC_AUTH_URL": "https://auth.demo.dru-id.com/",
            "DRUID_SYNC_GRAPH_URL": "HTTPS://graph.demo.dru-id.com:8443/tenant//", "DRUID_SYNC_CLIENT_ID": "app-1",
            "DRUID_SYNC_ENTRY_POINT": "123-main", "DRUID_SYNC_VERB": "update_admin",
            "DRUID_SYNC_DEFAULT_LOCALE": "es-ES",
            "DRUID_SYNC_ASSERTION_TYPOLOGY": "legal", "DRUID_SYNC_HTTP_TIMEOUT": "2500ms",
            "DRUID_SYNC_CA_FILE": "/etc/ssl/druid.pem",
            "DRUID_SYNC_RETRY_DELAYS": "1s, 10s,1m", "DRUID_SYNC_MAX_ATTEMPTS": "3",
            "DRUID_SYNC_MAX_MESSAGE_BYTES": "512KiB",
            "DRUID_SYNC_LOG_LEVEL": "DEBUG", "DRUID_SYNC_LOG_FORMAT": "json", "DRUID_SYNC_HEARTBEAT": "0",
            "DRUID_SYNC_SHUTDOWN_GRACE": "1m", "DRUID_SYNC_AMQP_CA_FILE": "/ca.pem",
            "DRUID_SYNC_AMQP_CERT_FILE": "/c.pem",
            "DRUID_SYNC_AMQP_KEY_FILE": "/k.pem", "DRUID_SYNC_STATS_INTERVAL": "0s",
            "DRUID_SYNC_METRICS_FILE": "/run/druid-sync/metrics.prom",
        ])
        #expect(configuration.amqp.queue == "crm.users")
        #expect(configuration.amqp.queueType == .classic)
        #expect(!configuration.amqp.declaresTopology)
        #expect(configuration.amqp.bindExchange == "crm.events")
        #expect(configuration.amqp.bindRoutingKey == "user.updated")
        #expect(configuration.concurrency == 256)
        #expect(configuration.druid.authURL == "https://auth.demo.dru-id.com")
        #expect(configuration.druid.graphURL == "https://graph.demo.dru-id.com:8443/tenant")
        #expect(configuration.druid.clientId == "app-1")
        #expect(configuration.druid.entryPoint == "123-main")
        #expect(configuration.events.verb == "update_admin")
        #expect(configuration.events.defaultLocale == "es-ES")
        #expect(configuration.events.assertionTypology == "legal")
        #expect(configuration.druid.timeout == .milliseconds(2500))
        #expect(configuration.druid.caFile == "/etc/ssl/druid.pem")
        #expect(
            configuration.retryPolicy
                == RetryPolicy(delays: [.seconds(1), .seconds(10), .seconds(60)], maxAttempts: 3))
        #expect(configuration.events.maxMessageBytes == 524_288)
        #expect(configuration.logging.level == .debug)
        #expect(configuration.logging.format == .json)
        #expect(configuration.amqp.heartbeat == .zero)
        #expect(configuration.shutdownGrace == .seconds(60))
        #expect(configuration.amqp.caFile == "/ca.pem")
        #expect(configuration.amqp.certificateFile == "/c.pem")
        #expect(configuration.amqp.keyFile == "/k.pem")
        #expect(configuration.statsInterval == .zero)
        #expect(configuration.metricsFile == "/run/druid-sync/metrics.prom")

        let topology = configuration.topology
        #expect(topology.workQueue == "crm.users")
        #expect(topology.queueType == .classic)
        #expect(topology.retryDelays == [.seconds(1), .seconds(10), .seconds(60)])
        #expect(topology.bindExchange == "crm.events")
        #expect(topology.bindRoutingKey == "user.updated")
        #expect(
            configuration.translationSettings
                == TranslationSettings(
                    clientId: "app-1", verb: "update_admin", defaultLocale: "es-ES", assertionTypology: "legal"))
    }

    @Test(arguments: [("true", true), ("FALSE", false), ("1", true), ("0", false), ("yes", true), ("No", false)])
    func booleans(text: String, expected: Bool) throws {
        #expect(try configuration(["DRUID_SYNC_DECLARE": text]).amqp.declaresTopology == expected)
    }

    @Test(arguments: [
        ("1048576", 1_048_576), ("1MiB", 1_048_576), ("512KiB", 524_288), ("1", 1), ("128MiB", 134_217_728),
        ("4096B", 4096),
    ])
    func messageSizes(text: String, expected: Int) throws {
        #expect(try configuration(["DRUID_SYNC_MAX_MESSAGE_BYTES": text]).events.maxMessageBytes == expected)
    }

    @Test(arguments: LogLevel.allCases)
    func everyLogLevel(level: LogLevel) throws {
        #expect(try configuration(["DRUID_SYNC_LOG_LEVEL": level.description]).logging.level == level)
    }

    @Test(arguments: [LogFormat.logfmt, .json])
    func everyLogFormat(format: LogFormat) throws {
        #expect(try configuration(["DRUID_SYNC_LOG_FORMAT": format.rawValue.uppercased()]).logging.format == format)
    }

    @Test(arguments: [("1", 1), ("65535", 65535), ("0064", 64)])
    func concurrencyBounds(text: String, expected: Int) throws {
        #expect(try configuration(["DRUID_SYNC_CONCURRENCY": text]).concurrency == expected)
    }

    // MARK: Every variable, bad values

    @Test(arguments: [
        ("DRUID_SYNC_CONCURRENCY", "abc", #""abc" is not a whole number from 1 to 65535"#),
        ("DRUID_SYNC_CONCURRENCY", "0", #""0" is not a whole number from 1 to 65535"#),
        ("DRUID_SYNC_CONCURRENCY", "65536", #""65536" is not a whole number from 1 to 65535"#),
        ("DRUID_SYNC_CONCURRENCY", "-5", #""-5" is not a whole number from 1 to 65535"#),
        (
            "DRUID_SYNC_CONCURRENCY", "99999999999999999999999",
            #""99999999999999999999999" is not a whole number from 1 to 65535"#
        ),
        ("DRUID_SYNC_MAX_ATTEMPTS", "0", #""0" is not a whole number from 1 to 1000"#),
        ("DRUID_SYNC_MAX_ATTEMPTS", "ten", #""ten" is not a whole number from 1 to 1000"#),
        ("DRUID_SYNC_QUEUE_TYPE", "stream", #""stream" is not one of quorum, classic"#),
        ("DRUID_SYNC_DECLARE", "maybe", #""maybe" is not one of true, false, yes, no, 1, 0"#),
        ("DRUID_SYNC_LOG_LEVEL", "verbose", #""verbose" is not one of trace, debug, info, notice, warning, error"#),
        ("DRUID_SYNC_LOG_FORMAT", "text", #""text" is not one of logfmt, json"#),
        ("DRUID_SYNC_HTTP_TIMEOUT", "0s", #""0s" is not a duration from 1ms to 1h (written like 500ms, 10s, 2m, 1h)"#),
        ("DRUID_SYNC_HTTP_TIMEOUT", "2h", #""2h" is not a duration from 1ms to 1h (written like 500ms, 10s, 2m, 1h)"#),
        (
            "DRUID_SYNC_HTTP_TIMEOUT", "ten",
            #""ten" is not a duration from 1ms to 1h (written like 500ms, 10s, 2m, 1h)"#
        ),
        (
            "DRUID_SYNC_HEARTBEAT", "1500ms",
            #""1500ms" is not whole seconds from 0s (off) to 65535s (written like 500ms, 10s, 2m, 1h)"#
        ),
        (
            "DRUID_SYNC_HEARTBEAT", "19h",
            #""19h" is not whole seconds from 0s (off) to 65535s (written like 500ms, 10s, 2m, 1h)"#
        ),
        (
            "DRUID_SYNC_SHUTDOWN_GRACE", "-1s",
            #""-1s" is not a duration from 0s to 1h (written like 500ms, 10s, 2m, 1h)"#
        ),
        (
            "DRUID_SYNC_STATS_INTERVAL", "25h",
            #""25h" is not a duration from 0s (off) to 24h (written like 500ms, 10s, 2m, 1h)"#
        ),
        (
            "DRUID_SYNC_RETRY_DELAYS", "5s,,30s",
            #""5s,,30s" is not a comma-separated list of delays from 1ms to 49 days, such as 5s,30s,2m,10m,30m"#
        ),
        (
            "DRUID_SYNC_RETRY_DELAYS", "0s",
            #""0s" is not a comma-separated list of delays from 1ms to 49 days, such as 5s,30s,2m,10m,30m"#
        ),
        (
            "DRUID_SYNC_RETRY_DELAYS", "1200h",
            #""1200h" is not a comma-separated list of delays from 1ms to 49 days, such as 5s,30s,2m,10m,30m"#
        ),
        (
            "DRUID_SYNC_RETRY_DELAYS", "5 s",
            #""5 s" is not a comma-separated list of delays from 1ms to 49 days, such as 5s,30s,2m,10m,30m"#
        ),
        (
            "DRUID_SYNC_MAX_MESSAGE_BYTES", "0",
            #""0" is not a size from 1 to 128MiB (bytes, or a number followed by KiB or MiB)"#
        ),
        (
            "DRUID_SYNC_MAX_MESSAGE_BYTES", "1GiB",
            #""1GiB" is not a size from 1 to 128MiB (bytes, or a number followed by KiB or MiB)"#
        ),
        (
            "DRUID_SYNC_MAX_MESSAGE_BYTES", "129MiB",
            #""129MiB" is not a size from 1 to 128MiB (bytes, or a number followed by KiB or MiB)"#
        ),
        (
            "DRUID_SYNC_MAX_MESSAGE_BYTES", "1 MiB",
            #""1 MiB" is not a size from 1 to 128MiB (bytes, or a number followed by KiB or MiB)"#
        ),
        (
            "DRUID_SYNC_MAX_MESSAGE_BYTES", "1mb",
            #""1mb" is not a size from 1 to 128MiB (bytes, or a number followed by KiB or MiB)"#
        ),
        ("DRUID_SYNC_AUTH_URL", "ftp://x", #""ftp://x" does not start with http:// or https://"#),
        ("DRUID_SYNC_AUTH_URL", "auth.dru-id.com", #""auth.dru-id.com" does not start with http:// or https://"#),
        ("DRUID_SYNC_GRAPH_URL", "https://", #""https://" has no host"#),
        (
            "DRUID_SYNC_GRAPH_URL", "https://g.example:0",
            #""https://g.example:0" has a port that is not a number from 1 to 65535"#
        ),
        ("DRUID_SYNC_GRAPH_URL", "https://g.example/?a=1", #""https://g.example/?a=1" has a query or fragment"#),
        (
            "DRUID_SYNC_GRAPH_URL", "https://u:pw@g.example",
            #""https://***@g.example" has user information; DRUID credentials have their own variables"#
        ),
        (
            "DRUID_SYNC_GRAPH_URL", "https://g example",
            #""https://g example" has a host with characters a host name cannot have"#
        ),
        ("DRUID_SYNC_CLIENT_ID", "my app", #""my app" contains white space or control characters"#),
        ("DRUID_SYNC_ENTRY_POINT", "a\tb", #""a\tb" contains white space or control characters"#),
        ("DRUID_SYNC_VERB", "up date", #""up date" contains white space or control characters"#),
        ("DRUID_SYNC_ASSERTION_TYPOLOGY", "a b", #""a b" contains white space or control characters"#),
        ("DRUID_SYNC_DEFAULT_LOCALE", "es_ES", #""es_ES" is not a BCP 47 language tag such as es-ES"#),
        ("DRUID_SYNC_QUEUE", "amq.users", #""amq.users" starts with amq., which RabbitMQ reserves"#),
        ("DRUID_SYNC_AMQP_URL", "http://h", #""http://h" does not start with amqp:// or amqps://"#),
        ("DRUID_SYNC_AMQP_URL", "amqp://h:70000", #""amqp://h:70000" has a port that is not a number from 1 to 65535"#),
        (
            "DRUID_SYNC_AMQP_URL", "amqp://h/a/b",
            #""amqp://h/a/b" has a virtual host with an unescaped '/'; write it as %2F"#
        ),
        ("DRUID_SYNC_AMQP_URL", "amqp://h/%zz", #""amqp://h/%zz" has a virtual host with a malformed %-escape"#),
        (
            "DRUID_SYNC_AMQP_URL", "amqp://h?heartbeat=5",
            #""amqp://h?heartbeat=5" has a query or fragment; use the DRUID_SYNC_* variables for connection options"#
        ),
        ("DRUID_SYNC_AMQP_URL", "amqp://", #""amqp://" has no host"#),
        ("DRUID_SYNC_AMQP_URL", "amqp://[::1", #""amqp://[::1" has an unclosed '[' in its host"#),
        ("DRUID_SYNC_AMQP_URL", "amqp://a,", "has an empty URL (URL 2 of 2) in its comma-separated list"),
        (
            "DRUID_SYNC_AMQP_URL", "amqp://a,http://b",
            #""http://b" (URL 2 of 2) does not start with amqp:// or amqps://"#
        ),
    ])
    func badValues(variable: String, value: String, problem: String) {
        let error = configurationError([variable: value])
        #expect(error == ConfigurationError(variable: variable, problem: problem))
        #expect(error?.description == variable + ": " + problem)
    }

    @Test func longValuesAreShortenedInErrors() throws {
        let error = try #require(configurationError(["DRUID_SYNC_CONCURRENCY": String(repeating: "9", count: 500)]))
        #expect(error.description.utf8.count < 200)
    }

    @Test func certificateAndKeyGoTogether() {
        #expect(configurationError(["DRUID_SYNC_AMQP_CERT_FILE": "/c.pem"])?.variable == "DRUID_SYNC_AMQP_CERT_FILE")
        #expect(configurationError(["DRUID_SYNC_AMQP_KEY_FILE": "/k.pem"])?.variable == "DRUID_SYNC_AMQP_KEY_FILE")
    }

    @Test func tooManyRetryDelays() {
        let delays = Array(repeating: "1s", count: 33).joined(separator: ",")
        #expect(
            configurationError(["DRUID_SYNC_RETRY_DELAYS": delays])?.problem.hasSuffix("has more than 32 delays")
                == true)
        #expect(
            configurationError(["DRUID_SYNC_RETRY_DELAYS": Array(repeating: "1s", count: 32).joined(separator: ",")])
                == nil)
    }

    @Test func longQueueNamesAreRefused() {
        #expect(configurationError(["DRUID_SYNC_QUEUE": String(repeating: "q", count: 240)]) == nil)
        #expect(
            configurationError(["DRUID_SYNC_QUEUE": String(repeating: "q", count: 241)])?.variable == "DRUID_SYNC_QUEUE"
        )
        #expect(
            configurationError(["DRUID_SYNC_BIND_EXCHANGE": String(repeating: "x", count: 256)])?.variable
                == "DRUID_SYNC_BIND_EXCHANGE")
    }

    // MARK: Client secret

    @Test func secretFromTheEnvironmentWins() throws {
        let druid = try configuration(
            [
                "DRUID_SYNC_CLIENT_SECRET": "s3cret-env", "DRUID_SYNC_CLIENT_SECRET_FILE": "/run/secret",
                "CREDENTIALS_DIRECTORY": "/run/credentials/druid-sync.service",
            ],
            files: [
                "/run/secret": "from-file\n",
                "/run/credentials/druid-sync.service/druid-client-secret": "from-credentials",
            ]
        ).druid
        #expect(druid.clientSecret.revealed == "s3cret-env")
        #expect(druid.clientSecretSource == .environment)
    }

    @Test func secretFileComesNext() throws {
        let druid = try configuration(
            ["DRUID_SYNC_CLIENT_SECRET_FILE": "/run/secret", "CREDENTIALS_DIRECTORY": "/run/credentials/x"],
            files: ["/run/secret": "from-file\r\n\n", "/run/credentials/x/druid-client-secret": "from-credentials"]
        ).druid
        #expect(druid.clientSecret.revealed == "from-file")
        #expect(druid.clientSecretSource == .file(path: "/run/secret"))
    }

    @Test func credentialsDirectoryComesLast() throws {
        let druid = try configuration(
            ["CREDENTIALS_DIRECTORY": "/run/credentials/x/"],
            files: ["/run/credentials/x/druid-client-secret": " spaced secret \n"]
        ).druid
        #expect(druid.clientSecret.revealed == " spaced secret ")
        #expect(druid.clientSecretSource == .credentialsDirectory(path: "/run/credentials/x/druid-client-secret"))
    }

    @Test func credentialsDirectoryWithoutOurFileMeansDefault() throws {
        let druid = try configuration(["CREDENTIALS_DIRECTORY": "/run/credentials/x"]).druid
        #expect(druid.clientSecret.revealed == "demo-secret")
        #expect(druid.clientSecretSource == .defaultForEmulator)
    }

    @Test func unreadableOrEmptySecretFileIsAnError() {
        #expect(
            configurationError(["DRUID_SYNC_CLIENT_SECRET_FILE": "/nope"])
                == ConfigurationError(
                    variable: "DRUID_SYNC_CLIENT_SECRET_FILE",
                    problem: #"cannot read "/nope": No such file or directory"#))
        #expect(
            configurationError(["DRUID_SYNC_CLIENT_SECRET_FILE": "/empty"], files: ["/empty": "\n"])
                == ConfigurationError(variable: "DRUID_SYNC_CLIENT_SECRET_FILE", problem: #""/empty" is empty"#))
        #expect(
            configurationError(["CREDENTIALS_DIRECTORY": "/c"], files: ["/c/druid-client-secret": ""])?.variable
                == "CREDENTIALS_DIRECTORY")
    }

    @Test func secretsNeverShow() throws {
        let secret = "Sup3r-S3cret-Value"
        let configuration = try configuration([
            "DRUID_SYNC_CLIENT_SECRET": secret,
            "DRUID_SYNC_AMQP_URL": "amqps://svc:\(secret)@mq1.example,amqp://svc:\(secret)@mq2.example",
        ])
        let settings = configuration.effectiveSettings().map { "\($0.0)=\($0.1)" }.joined(separator: "\n")
        #expect(!settings.contains(secret))
        #expect(settings.contains("DRUID_SYNC_CLIENT_SECRET=*** (from DRUID_SYNC_CLIENT_SECRET)"))
        #expect(
            settings.contains(
                "DRUID_SYNC_AMQP_URL=amqps://svc:***@mq1.example:5671/%2F,amqp://svc:***@mq2.example:5672/%2F"))
        #expect(!String(describing: configuration.druid).contains(secret))
        #expect(!String(describing: configuration.amqp).contains(secret))
        #expect(!String(reflecting: configuration).contains(secret))
    }

    @Test(arguments: [
        "amqp://user:Sup3r-S3cret@host:99999/",  // bad port
        "amqp://user:Sup3r-S3cret@/",  // no host
        "amqp://user:Sup3r-S3cret",  // host forgotten: the password reads as a port
        "amqp://user:Sup3r-S3cret/x",  // … with a path
        "amqp://user:Sup3r/S3cret@host",  // unescaped '/' in the password
        "amqp://user:Sup3r-S3cret@host/a/b",  // bad vhost
        "amqp://user:Sup3r%zzS3cret@host",  // bad escape in the password
        "amqp://user:Sup3r-S3cret@host?x=1",
        "amqp://user:Sup3r#S3cret@host",
        "amqp://ok@h,amqp://user:Sup3r,S3cret@host",  // comma in the password splits the list
        "xmpp://user:Sup3r-S3cret@host",
    ])
    func amqpURLErrorsHideThePassword(url: String) throws {
        let error = try #require(configurationError(["DRUID_SYNC_AMQP_URL": url]))
        #expect(error.variable == "DRUID_SYNC_AMQP_URL")
        #expect(!error.description.contains("Sup3r"))
        #expect(!error.description.contains("S3cret"))
    }

    @Test func clientSecretErrorsNeverQuoteIt() throws {
        // Even a file path error quotes the path, not the content.
        let error = try #require(
            configurationError(
                ["DRUID_SYNC_CLIENT_SECRET_FILE": "/s", "DRUID_SYNC_CONCURRENCY": "x"], files: ["/s": "Sup3r-S3cret"]))
        #expect(!error.description.contains("Sup3r"))
    }

    @Test func readTextFileReadsRealFiles() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "druid-sync-secret-\(UUID().uuidString)"
        ).path
        try "file-secret\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let configuration = try Configuration.fromEnvironment(
            ["DRUID_SYNC_CLIENT_SECRET_FILE": path], readFile: Configuration.readTextFile)
        #expect(configuration.druid.clientSecret.revealed == "file-secret")
        #expect(throws: (any Error).self) { try Configuration.readTextFile(path + ".missing") }
        let error = try #require(
            configurationError(["DRUID_SYNC_CLIENT_SECRET_FILE": path + ".missing"]).map(\.variable))
        #expect(error == "DRUID_SYNC_CLIENT_SECRET_FILE")
    }
}
