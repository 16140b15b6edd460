public import UserUpdates

/// Everything druid-sync can be told, with the defaults it uses when told nothing.
///
/// Built from the environment by `fromEnvironment(_:readFile:)`; every nested struct also
/// has an `init()` with the documented defaults, so tests and tools can start from those
/// and change a field or two. The defaults target a local broker and the DRUID emulator,
/// never a real tenant.
public struct Configuration: Sendable {
    public var amqp = AMQPSettings()
    public var druid = DruidSettings()
    public var events = EventSettings()
    public var logging = LoggingSettings()
    /// Messages in flight at once, the consumer prefetch (`DRUID_SYNC_CONCURRENCY`,
    /// default 64, 1…65535).
    public var concurrency = 64
    /// `DRUID_SYNC_RETRY_DELAYS` (default 5s,30s,2m,10m,30m) and `DRUID_SYNC_MAX_ATTEMPTS` (default 10).
    public var retryPolicy = RetryPolicy()
    /// How long a stop waits for in-flight messages (`DRUID_SYNC_SHUTDOWN_GRACE`, default 20s).
    public var shutdownGrace = Duration.seconds(20)
    /// How often counters are logged, 0 = never (`DRUID_SYNC_STATS_INTERVAL`, default 60s).
    public var statsInterval = Duration.seconds(60)
    /// Where to write metrics (`DRUID_SYNC_METRICS_FILE`, default none).
    public var metricsFile: String?

    /// The defaults of every setting.
    public init() {}

    /// The RabbitMQ side.
    public struct AMQPSettings: Sendable {
        /// Brokers to connect to, tried in order (`DRUID_SYNC_AMQP_URL`, comma-separated).
        /// Default: `amqp://guest:guest@127.0.0.1:5672/%2F`.
        public var endpoints = [AMQPEndpoint()]
        /// The work queue (`DRUID_SYNC_QUEUE`, default `druid-sync.user-updates`).
        public var queue = "druid-sync.user-updates"
        /// `DRUID_SYNC_QUEUE_TYPE`, default quorum.
        public var queueType = QueueType.quorum
        /// Whether to declare the topology at start (`DRUID_SYNC_DECLARE`, default true).
        public var declaresTopology = true
        /// A producer's exchange to bind the work queue to (`DRUID_SYNC_BIND_EXCHANGE`, default none).
        public var bindExchange: String?
        /// `DRUID_SYNC_BIND_ROUTING_KEY`, default `#`.
        public var bindRoutingKey = "#"
        /// AMQP heartbeat, whole seconds, 0 = off (`DRUID_SYNC_HEARTBEAT`, default 30s).
        public var heartbeat = Duration.seconds(30)
        /// CA bundle for `amqps` (`DRUID_SYNC_AMQP_CA_FILE`, default: the system's).
        public var caFile: String?
        /// Client certificate for `amqps` (`DRUID_SYNC_AMQP_CERT_FILE`); needs `keyFile`.
        public var certificateFile: String?
        /// Client key for `amqps` (`DRUID_SYNC_AMQP_KEY_FILE`); needs `certificateFile`.
        public var keyFile: String?

        public init() {}
    }

    /// One broker address, parsed from an `amqp://` or `amqps://` URL.
    public struct AMQPEndpoint: Sendable, Equatable {
        /// True for `amqps` (TLS).
        public var usesTLS = false
        public var host = "127.0.0.1"
        /// Default 5672, or 5671 with TLS.
        public var port = 5672
        public var user = "guest"
        public var password = Secret("guest")
        /// The virtual host, percent-decoded: `/` for an empty path or `%2F`.
        public var virtualHost = "/"

        public init() {}

        /// The URL with the password shown as `***`, for logs and error messages.
        public var redactedURL: String {
            let hostText = host.contains(":") ? "[" + host + "]" : host
            return (usesTLS ? "amqps" : "amqp") + "://" + PercentEncoding.encode(user) + ":***@" + hostText + ":"
                + String(port) + "/" + PercentEncoding.encode(virtualHost)
        }
    }

    /// The DRUID side.
    public struct DruidSettings: Sendable {
        /// Base URL of the token host (`DRUID_SYNC_AUTH_URL`, default `http://127.0.0.1:8080`,
        /// the emulator). No trailing slash.
        public var authURL = "http://127.0.0.1:8080"
        /// Base URL of the graph host (`DRUID_SYNC_GRAPH_URL`, default `http://127.0.0.1:8080`).
        public var graphURL = "http://127.0.0.1:8080"
        /// `DRUID_SYNC_CLIENT_ID`, default `druid-sync-demo` (the emulator's demo client).
        public var clientId = "druid-sync-demo"
        /// The client secret: `DRUID_SYNC_CLIENT_SECRET`, else the file named by
        /// `DRUID_SYNC_CLIENT_SECRET_FILE`, else `$CREDENTIALS_DIRECTORY/druid-client-secret`
        /// (systemd's `LoadCredential=`), else `demo-secret`, which only the emulator accepts.
        public var clientSecret = Secret("demo-secret")
        /// Where `clientSecret` came from, for the start-up log.
        public var clientSecretSource = SecretSource.defaultForEmulator
        /// The `From` header (`DRUID_SYNC_ENTRY_POINT`, default `231705665113870-main`).
        public var entryPoint = "231705665113870-main"
        /// Limit on one HTTP exchange with DRUID (`DRUID_SYNC_HTTP_TIMEOUT`, default 10s).
        public var timeout = Duration.seconds(10)
        /// CA bundle for https (`DRUID_SYNC_CA_FILE`, default: the system's).
        public var caFile: String?

        public init() {}
    }

    /// Where the client secret was read from.
    public enum SecretSource: Sendable, Equatable, CustomStringConvertible {
        case environment
        case file(path: String)
        case credentialsDirectory(path: String)
        case defaultForEmulator

        public var description: String {
            switch self {
            case .environment: "from DRUID_SYNC_CLIENT_SECRET"
            case .file(let path): "from DRUID_SYNC_CLIENT_SECRET_FILE " + path
            case .credentialsDirectory(let path): "from " + path
            case .defaultForEmulator: "the emulator's default"
            }
        }
    }

    /// How events are read and turned into DRUID activities.
    public struct EventSettings: Sendable {
        /// Largest accepted body (`DRUID_SYNC_MAX_MESSAGE_BYTES`, default 1 MiB).
        public var maxMessageBytes = 1_048_576
        /// The activity's verb (`DRUID_SYNC_VERB`, default `update`).
        public var verb = "update"
        /// `Accept-Language` for events without a locale (`DRUID_SYNC_DEFAULT_LOCALE`, default none).
        public var defaultLocale: String?
        /// Typology of assertions given in object form (`DRUID_SYNC_ASSERTION_TYPOLOGY`, default `user`).
        public var assertionTypology = "user"

        public init() {}
    }

    /// Log output.
    public struct LoggingSettings: Sendable {
        /// `DRUID_SYNC_LOG_LEVEL`, default info.
        public var level = LogLevel.info
        /// `DRUID_SYNC_LOG_FORMAT`, default logfmt.
        public var format = LogFormat.logfmt

        public init() {}
    }

    // MARK: Derived values

    /// The broker objects to declare and use.
    public var topology: Topology {
        Topology(
            queue: amqp.queue, queueType: amqp.queueType, retryDelays: retryPolicy.delays,
            bindExchange: amqp.bindExchange, bindRoutingKey: amqp.bindRoutingKey)
    }

    /// The settings of the event → activity translation.
    public var translationSettings: TranslationSettings {
        TranslationSettings(
            clientId: druid.clientId, verb: events.verb, defaultLocale: events.defaultLocale,
            assertionTypology: events.assertionTypology)
    }

    /// Every setting as it will be used, named by its environment variable, in a fixed
    /// order; secrets appear as `***` (with where the client secret came from). Meant for
    /// the start-up log.
    public func effectiveSettings() -> [(String, String)] {
        func optional(_ value: String?, none: String = "(none)") -> String { value ?? none }
        return [
            ("DRUID_SYNC_AMQP_URL", amqp.endpoints.map(\.redactedURL).joined(separator: ",")),
            ("DRUID_SYNC_QUEUE", amqp.queue),
            ("DRUID_SYNC_QUEUE_TYPE", amqp.queueType.rawValue),
            ("DRUID_SYNC_DECLARE", amqp.declaresTopology ? "true" : "false"),
            ("DRUID_SYNC_BIND_EXCHANGE", optional(amqp.bindExchange)),
            ("DRUID_SYNC_BIND_ROUTING_KEY", amqp.bindRoutingKey),
            ("DRUID_SYNC_HEARTBEAT", DurationText.format(amqp.heartbeat)),
            ("DRUID_SYNC_AMQP_CA_FILE", optional(amqp.caFile, none: "(system CAs)")),
            ("DRUID_SYNC_AMQP_CERT_FILE", optional(amqp.certificateFile)),
            ("DRUID_SYNC_AMQP_KEY_FILE", optional(amqp.keyFile)),
            ("DRUID_SYNC_CONCURRENCY", String(concurrency)),
            ("DRUID_SYNC_RETRY_DELAYS", retryPolicy.delays.map(DurationText.format).joined(separator: ",")),
            ("DRUID_SYNC_MAX_ATTEMPTS", String(retryPolicy.maxAttempts)),
            ("DRUID_SYNC_MAX_MESSAGE_BYTES", String(events.maxMessageBytes)),
            ("DRUID_SYNC_AUTH_URL", druid.authURL),
            ("DRUID_SYNC_GRAPH_URL", druid.graphURL),
            ("DRUID_SYNC_CLIENT_ID", druid.clientId),
            ("DRUID_SYNC_CLIENT_SECRET", "*** (\(druid.clientSecretSource))"),
            ("DRUID_SYNC_ENTRY_POINT", druid.entryPoint),
            ("DRUID_SYNC_VERB", events.verb),
            ("DRUID_SYNC_DEFAULT_LOCALE", optional(events.defaultLocale)),
            ("DRUID_SYNC_ASSERTION_TYPOLOGY", events.assertionTypology),
            ("DRUID_SYNC_HTTP_TIMEOUT", DurationText.format(druid.timeout)),
            ("DRUID_SYNC_CA_FILE", optional(druid.caFile, none: "(system CAs)")),
            ("DRUID_SYNC_LOG_LEVEL", logging.level.description),
            ("DRUID_SYNC_LOG_FORMAT", logging.format.rawValue),
            ("DRUID_SYNC_SHUTDOWN_GRACE", DurationText.format(shutdownGrace)),
            ("DRUID_SYNC_STATS_INTERVAL", DurationText.format(statsInterval)),
            ("DRUID_SYNC_METRICS_FILE", optional(metricsFile)),
        ]
    }
}
