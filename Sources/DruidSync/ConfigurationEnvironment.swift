import FoundationEssentials
import UserUpdates

#if canImport(Glibc)
    import Glibc
#endif

extension Configuration {
    /// Reads the configuration from environment variables (names and defaults on each
    /// field of `Configuration`).
    ///
    /// A variable set to the empty string counts as unset; white space around a value is
    /// ignored, except in the client secret. Durations are written `500ms`, `10s`, `2m`,
    /// `1h` (a bare number is seconds); booleans `true`/`false`, `yes`/`no` or `1`/`0`.
    ///
    /// - Parameters:
    ///   - environment: the process environment, e.g. `ProcessInfo.processInfo.environment`.
    ///   - readFile: reads a whole text file (the client secret files); injected so tests
    ///     need no files.
    /// - Throws: `ConfigurationError` for the first variable that cannot be used, naming
    ///   it and what it accepts. Nothing is read from the network.
    public static func fromEnvironment(
        _ environment: [String: String], readFile: (String) throws -> String
    ) throws(ConfigurationError) -> Configuration {
        let env = EnvironmentReader(environment: environment)
        var configuration = Configuration()

        // Broker
        configuration.amqp.endpoints = try env.amqpEndpoints(
            "DRUID_SYNC_AMQP_URL", default: configuration.amqp.endpoints)
        configuration.amqp.queue = try env.queueName("DRUID_SYNC_QUEUE", default: configuration.amqp.queue)
        configuration.amqp.queueType = try env.choice(
            "DRUID_SYNC_QUEUE_TYPE", default: configuration.amqp.queueType)
        configuration.amqp.declaresTopology = try env.boolean(
            "DRUID_SYNC_DECLARE", default: configuration.amqp.declaresTopology)
        configuration.amqp.bindExchange = try env.optionalShortString("DRUID_SYNC_BIND_EXCHANGE")
        configuration.amqp.bindRoutingKey =
            try env.optionalShortString("DRUID_SYNC_BIND_ROUTING_KEY") ?? configuration.amqp.bindRoutingKey
        configuration.amqp.heartbeat = try env.duration(
            "DRUID_SYNC_HEARTBEAT", default: configuration.amqp.heartbeat, allowsZero: true, wholeSeconds: true,
            maximum: .seconds(65535), accepts: "whole seconds from 0s (off) to 65535s")
        configuration.amqp.caFile = env.value("DRUID_SYNC_AMQP_CA_FILE")
        configuration.amqp.certificateFile = env.value("DRUID_SYNC_AMQP_CERT_FILE")
        configuration.amqp.keyFile = env.value("DRUID_SYNC_AMQP_KEY_FILE")
        switch (configuration.amqp.certificateFile, configuration.amqp.keyFile) {
        case (nil, .some):
            throw ConfigurationError(
                variable: "DRUID_SYNC_AMQP_KEY_FILE",
                problem: "needs DRUID_SYNC_AMQP_CERT_FILE too (a client key goes with its certificate)")
        case (.some, nil):
            throw ConfigurationError(
                variable: "DRUID_SYNC_AMQP_CERT_FILE",
                problem: "needs DRUID_SYNC_AMQP_KEY_FILE too (a client certificate goes with its key)")
        default:
            break
        }

        // Processing
        configuration.concurrency = try env.integer(
            "DRUID_SYNC_CONCURRENCY", default: configuration.concurrency, range: 1...65535)
        let delays = try env.retryDelays("DRUID_SYNC_RETRY_DELAYS", default: RetryPolicy.defaultDelays)
        let maxAttempts = try env.integer(
            "DRUID_SYNC_MAX_ATTEMPTS", default: RetryPolicy.defaultMaxAttempts, range: 1...1000)
        configuration.retryPolicy = RetryPolicy(delays: delays, maxAttempts: maxAttempts)
        configuration.events.maxMessageBytes = try env.byteSize(
            "DRUID_SYNC_MAX_MESSAGE_BYTES", default: configuration.events.maxMessageBytes)

        // DRUID
        configuration.druid.authURL = try env.httpBase("DRUID_SYNC_AUTH_URL", default: configuration.druid.authURL)
        configuration.druid.graphURL = try env.httpBase("DRUID_SYNC_GRAPH_URL", default: configuration.druid.graphURL)
        configuration.druid.clientId = try env.token("DRUID_SYNC_CLIENT_ID", default: configuration.druid.clientId)
        (configuration.druid.clientSecret, configuration.druid.clientSecretSource) =
            try env.clientSecret(readFile: readFile)
            ?? (configuration.druid.clientSecret, configuration.druid.clientSecretSource)
        configuration.druid.entryPoint = try env.token(
            "DRUID_SYNC_ENTRY_POINT", default: configuration.druid.entryPoint)
        configuration.events.verb = try env.token("DRUID_SYNC_VERB", default: configuration.events.verb)
        if let locale = env.value("DRUID_SYNC_DEFAULT_LOCALE") {
            guard FieldSyntax.isLanguageTag(locale) else {
                throw env.error("DRUID_SYNC_DEFAULT_LOCALE", locale, "is not a BCP 47 language tag such as es-ES")
            }
            configuration.events.defaultLocale = locale
        }
        configuration.events.assertionTypology = try env.token(
            "DRUID_SYNC_ASSERTION_TYPOLOGY", default: configuration.events.assertionTypology)
        configuration.druid.timeout = try env.duration(
            "DRUID_SYNC_HTTP_TIMEOUT", default: configuration.druid.timeout, allowsZero: false, wholeSeconds: false,
            maximum: .seconds(3600), accepts: "a duration from 1ms to 1h")
        configuration.druid.caFile = env.value("DRUID_SYNC_CA_FILE")

        // Logging and operations
        configuration.logging.level = try env.choice(
            "DRUID_SYNC_LOG_LEVEL", default: configuration.logging.level, among: LogLevel.allCases, named: \.description
        )
        configuration.logging.format = try env.choice(
            "DRUID_SYNC_LOG_FORMAT", default: configuration.logging.format, among: [.logfmt, .json], named: \.rawValue)
        configuration.shutdownGrace = try env.duration(
            "DRUID_SYNC_SHUTDOWN_GRACE", default: configuration.shutdownGrace, allowsZero: true,
            wholeSeconds: false, maximum: .seconds(3600), accepts: "a duration from 0s to 1h")
        configuration.statsInterval = try env.duration(
            "DRUID_SYNC_STATS_INTERVAL", default: configuration.statsInterval, allowsZero: true,
            wholeSeconds: false, maximum: .seconds(86400), accepts: "a duration from 0s (off) to 24h")
        configuration.metricsFile = env.value("DRUID_SYNC_METRICS_FILE")
        return configuration
    }
}

extension Configuration {
    /// Reads a whole UTF-8 text file: the `readFile` to pass to `fromEnvironment` outside tests.
    /// - Throws: Foundation's error when the file cannot be read; its description names the
    ///   file and the cause, never the content.
    public static func readTextFile(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }
}

/// Typed reads of environment variables, each failing with a `ConfigurationError` that
/// quotes the value (never for secrets) and says what the variable accepts.
private struct EnvironmentReader {
    let environment: [String: String]

    /// The trimmed value, or nil when the variable is unset or empty.
    func value(_ name: String) -> String? {
        guard let raw = environment[name] else { return nil }
        let trimmed = raw.trimmingWhitespace()
        return trimmed.isEmpty ? nil : trimmed
    }

    func error(_ name: String, _ value: String, _ problem: String) -> ConfigurationError {
        ConfigurationError(variable: name, problem: Self.quoted(value) + " " + problem)
    }

    /// `value` in double quotes, control characters escaped, at most 100 bytes.
    static func quoted(_ value: String) -> String {
        var writer = JSONWriter()
        writer.writeString(ReasonText.truncated(value, maximumBytes: 100))
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    func integer(_ name: String, default defaultValue: Int, range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
        guard let text = value(name) else { return defaultValue }
        guard text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), let number = Int(text),
            range.contains(number)
        else {
            throw error(name, text, "is not a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    func boolean(_ name: String, default defaultValue: Bool) throws(ConfigurationError) -> Bool {
        guard let text = value(name) else { return defaultValue }
        switch text.lowercased() {
        case "true", "yes", "1": return true
        case "false", "no", "0": return false
        default: throw error(name, text, "is not one of true, false, yes, no, 1, 0")
        }
    }

    func choice<Choice: RawRepresentable & CaseIterable>(
        _ name: String, default defaultValue: Choice
    )
        throws(ConfigurationError) -> Choice where Choice.RawValue == String
    {
        try choice(name, default: defaultValue, among: Array(Choice.allCases), named: \.rawValue)
    }

    /// One of `choices`, matched by `name` without regard to case.
    func choice<Choice>(
        _ name: String, default defaultValue: Choice, among choices: [Choice], named: (Choice) -> String
    )
        throws(ConfigurationError) -> Choice
    {
        guard let text = value(name) else { return defaultValue }
        let lowercased = text.lowercased()
        if let choice = choices.first(where: { named($0) == lowercased }) { return choice }
        throw error(name, text, "is not one of " + choices.map(named).joined(separator: ", "))
    }

    func duration(
        _ name: String, default defaultValue: Duration, allowsZero: Bool, wholeSeconds: Bool, maximum: Duration,
        accepts: String
    ) throws(ConfigurationError) -> Duration {
        guard let text = value(name) else { return defaultValue }
        guard let duration = DurationText.parse(text), duration <= maximum, allowsZero || duration > .zero,
            !wholeSeconds || duration.components.attoseconds == 0
        else {
            throw error(name, text, "is not \(accepts) (written like 500ms, 10s, 2m, 1h)")
        }
        return duration
    }

    /// A list such as `5s,30s,2m`: 1 to 32 delays, each from 1ms to 49 days (the largest
    /// `x-message-ttl`, 2^32 − 1 ms).
    func retryDelays(_ name: String, default defaultValue: [Duration]) throws(ConfigurationError) -> [Duration] {
        guard let text = value(name) else { return defaultValue }
        let longest = Duration.milliseconds(4_294_967_295)
        var delays: [Duration] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            guard let delay = DurationText.parse(String(item).trimmingWhitespace(), maximumSeconds: 4_294_967),
                delay > .zero, delay <= longest
            else {
                throw error(
                    name, text, "is not a comma-separated list of delays from 1ms to 49 days, such as 5s,30s,2m,10m,30m"
                )
            }
            delays.append(delay)
        }
        guard delays.count <= 32 else { throw error(name, text, "has more than 32 delays") }
        return delays
    }

    /// A byte count, bare or with `KiB` / `MiB`, from 1 byte to 128 MiB (RabbitMQ's own
    /// limit on a message).
    func byteSize(_ name: String, default defaultValue: Int) throws(ConfigurationError) -> Int {
        guard let text = value(name) else { return defaultValue }
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        let multiplier: Int? =
            switch text.dropFirst(digits.count) {
            case "", "B": 1
            case "KiB": 1024
            case "MiB": 1_048_576
            default: nil
            }
        guard let multiplier, digits.count <= 9, let amount = Int(digits),
            (1...134_217_728).contains(amount * multiplier)
        else {
            throw error(name, text, "is not a size from 1 to 128MiB (bytes, or a number followed by KiB or MiB)")
        }
        return amount * multiplier
    }

    /// A name or id without white space or control characters (client id, entry point,
    /// verb, typology).
    func token(_ name: String, default defaultValue: String) throws(ConfigurationError) -> String {
        guard let text = value(name) else { return defaultValue }
        guard
            !text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F })
        else { throw error(name, text, "contains white space or control characters") }
        return text
    }

    /// An AMQP short string (exchange name, routing key): at most 255 bytes.
    func optionalShortString(_ name: String) throws(ConfigurationError) -> String? {
        guard let text = value(name) else { return nil }
        guard text.utf8.count <= 255 else { throw error(name, text, "is longer than 255 bytes") }
        return text
    }

    /// The work queue's name: short enough that `<name>.dead-letter` fits in 255 bytes, and
    /// not in the broker's reserved `amq.` namespace.
    func queueName(_ name: String, default defaultValue: String) throws(ConfigurationError) -> String {
        guard let text = value(name) else { return defaultValue }
        guard text.utf8.count <= 240 else { throw error(name, text, "is longer than 240 bytes") }
        guard !text.hasPrefix("amq.") else { throw error(name, text, "starts with amq., which RabbitMQ reserves") }
        return text
    }

    func httpBase(_ name: String, default defaultValue: String) throws(ConfigurationError) -> String {
        guard let text = value(name) else { return defaultValue }
        switch ConfigurationURL.httpBase(text) {
        case .success(let base): return base
        case .failure(let problem):
            // Quoted like an AMQP URL: whoever put a password in it must not see it logged.
            throw ConfigurationError(
                variable: name, problem: Self.quoted(ConfigurationURL.redacted(Substring(text))) + " " + problem.text)
        }
    }

    /// One or more comma-separated AMQP URLs. Errors quote the faulty URL with its user
    /// information replaced by `***`.
    func amqpEndpoints(
        _ name: String, default defaultValue: [Configuration.AMQPEndpoint]
    ) throws(ConfigurationError)
        -> [Configuration.AMQPEndpoint]
    {
        guard let text = value(name) else { return defaultValue }
        let items = text.split(separator: ",", omittingEmptySubsequences: false)
        var endpoints: [Configuration.AMQPEndpoint] = []
        for (position, item) in items.enumerated() {
            let url = Substring(String(item).trimmingWhitespace())
            let which = items.count > 1 ? " (URL \(position + 1) of \(items.count))" : ""
            if url.isEmpty {
                throw ConfigurationError(
                    variable: name, problem: "has an empty URL\(which) in its comma-separated list")
            }
            switch ConfigurationURL.amqpEndpoint(url) {
            case .success(let endpoint):
                endpoints.append(endpoint)
            case .failure(let problem):
                let shown = Self.quoted(ConfigurationURL.redacted(url))
                throw ConfigurationError(variable: name, problem: shown + which + " " + problem.text)
            }
        }
        return endpoints
    }

    /// The client secret and where it came from, or nil for the emulator's default.
    /// Order: the variable, the file it names, the systemd credential. Never quotes a value.
    func clientSecret(
        readFile: (String) throws -> String
    ) throws(ConfigurationError) -> (
        Secret, Configuration.SecretSource
    )? {
        if let secret = environment["DRUID_SYNC_CLIENT_SECRET"], !secret.isEmpty {
            return (Secret(secret), .environment)
        }
        if let path = value("DRUID_SYNC_CLIENT_SECRET_FILE") {
            let content: String
            do {
                content = try readFile(path)
            } catch {
                throw ConfigurationError(
                    variable: "DRUID_SYNC_CLIENT_SECRET_FILE",
                    problem:
                        "cannot read \(Self.quoted(path)): \(ReasonText.truncated(String(describing: error), maximumBytes: 200))"
                )
            }
            let secret = content.droppingTrailingNewlines()
            guard !secret.isEmpty else {
                throw ConfigurationError(
                    variable: "DRUID_SYNC_CLIENT_SECRET_FILE", problem: "\(Self.quoted(path)) is empty")
            }
            return (Secret(secret), .file(path: path))
        }
        if let directory = value("CREDENTIALS_DIRECTORY") {
            // systemd sets this for every LoadCredential= of the unit: a missing file only
            // means this credential was not given, so the default applies.
            let path = (directory.hasSuffix("/") ? directory : directory + "/") + "druid-client-secret"
            if let content = try? readFile(path) {
                let secret = content.droppingTrailingNewlines()
                guard !secret.isEmpty else {
                    throw ConfigurationError(
                        variable: "CREDENTIALS_DIRECTORY", problem: "\(Self.quoted(path)) is empty")
                }
                return (Secret(secret), .credentialsDirectory(path: path))
            }
        }
        return nil
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(scalars[first...last])
    }

    /// The text without the line ends an editor or `echo` leaves at the end of a file.
    fileprivate func droppingTrailingNewlines() -> String {
        var scalars = Substring(self).unicodeScalars
        while let last = scalars.last, last == "\n" || last == "\r" { scalars.removeLast() }
        return String(scalars)
    }
}
