import AMQP
import Druid
import FoundationEssentials
import HTTPClient
import UserUpdates

#if canImport(Glibc)
    import Glibc
#endif

/// The `druid-sync` command line: parses arguments and runs a command.
///
/// Kept in the library so tests run the same code as the executable.
public enum CommandLineInterface {
    public static let version = "0.1.0"

    /// Prepares signal handling for the process; call first thing on the main thread.
    public static func prepareProcess() { ProcessSignals.prepare() }

    /// Runs the command named by `arguments` (without the program name) and returns the exit status.
    public static func main(arguments: [String], environment: [String: String]) async -> Int32 {
        ProcessSignals.prepare()
        var arguments = arguments
        let namedCommand = arguments.first.flatMap { $0.hasPrefix("-") ? nil : $0 }
        let command = namedCommand ?? "run"
        if !arguments.isEmpty && !arguments[0].hasPrefix("-") { arguments.removeFirst() }
        if arguments.contains("--help") || arguments.contains("-h") || command == "help" {
            // `druid-sync --help` is the general help; `druid-sync run --help` the command's.
            let topic = command == "help" ? (arguments.first ?? "") : (namedCommand ?? "")
            print(help(for: topic))
            return 0
        }
        if arguments.contains("--version") || command == "version" {
            print(versionText())
            return 0
        }
        switch command {
        case "run":
            guard arguments.isEmpty else {
                return usageError("run takes no arguments: \(arguments.joined(separator: " "))")
            }
            return await runService(environment: environment)
        case "translate":
            return translate(arguments: arguments, environment: environment)
        case "check":
            return await CheckCommand.run(arguments: arguments, environment: environment)
        case "dead-letters":
            return DeadLetterCommands.run(arguments: arguments, environment: environment)
        default:
            return usageError("unknown command \(command)")
        }
    }

    static func usageError(_ message: String) -> Int32 {
        OperatorConsole.problem("\(message)\n\n\(help(for: ""))")
        return 2
    }

    /// The program's own version and those of the C libraries it runs with.
    public static func versionText() -> String {
        """
        druid-sync \(version)
        rabbitmq-c \(AMQPConnection.libraryVersion)
        \(DruidClient.openSSLVersion)
        \(HTTPClient.curlVersion)
        allocator: \(MemoryAllocator.description)
        """
    }

    static func help(for topic: String) -> String {
        switch topic {
        case "run":
            return """
                usage: druid-sync [run]

                Consumes user-update events from RabbitMQ and applies each to DRUID as an
                "update user" activity, then acknowledges, retries or dead-letters it.
                Runs until SIGTERM or SIGINT; a second signal exits at once.
                Configured entirely through DRUID_SYNC_* environment variables (see README).
                """
        case "translate":
            return """
                usage: druid-sync translate [FILE|-]

                Reads one event (from FILE, or standard input when FILE is - or absent),
                validates it as the daemon would and prints the DRUID activity it becomes,
                with the password shown as ***. Exits 1 with the validation error otherwise.
                Uses DRUID_SYNC_CLIENT_ID, DRUID_SYNC_VERB, DRUID_SYNC_DEFAULT_LOCALE,
                DRUID_SYNC_ASSERTION_TYPOLOGY and DRUID_SYNC_MAX_MESSAGE_BYTES.
                """
        case "check":
            return """
                usage: druid-sync check

                Checks, with the same DRUID_SYNC_* settings as the daemon: the configuration,
                the connection to each broker in DRUID_SYNC_AMQP_URL, the topology (every queue
                exists; with DRUID_SYNC_DECLARE=true also that it matches the settings), and that
                DRUID grants the configured client a token. Prints one line per check, with what
                was wrong and how to fix it; never prints a secret.
                Exits 0 when all pass, 1 when one fails, 2 when a setting is unusable.
                """
        case "dead-letters":
            return """
                usage: druid-sync dead-letters list [--show-bodies] [--json]
                       druid-sync dead-letters replay [--reason TEXT] [--limit N] [--dry-run]

                list     counts the messages of the dead-letter queue by reason, with the oldest
                         and newest failure of each; leaves every message where it is.
                         --show-bodies also prints each body, passwords shown as ***.
                         --json prints one JSON document instead of the table.
                replay   moves dead letters back to the work queue with their attempt count
                         reset (druid-sync-* headers removed; the producer's headers, properties
                         and body kept). Each copy is confirmed by the broker before its dead
                         letter is removed, so an interruption loses nothing (at worst a message
                         is in both queues).
                         --reason TEXT  only messages whose reason contains TEXT (case-sensitive)
                         --limit N      move at most N messages
                         --dry-run      print what would move; move nothing
                Exits 0 when done, 1 when the broker failed, 2 on a usage or setting error.
                """
        default:
            return """
                usage: druid-sync [COMMAND] [OPTIONS]

                Commands:
                  run                 run the service (the default)
                  translate [FILE|-]  print the DRUID activity an event becomes
                  check               check the settings, the broker, the topology and DRUID
                  dead-letters list   count the dead letters by reason (--show-bodies, --json)
                  dead-letters replay move dead letters back to the work queue
                                      (--reason TEXT, --limit N, --dry-run)

                Options:
                  --version           print the version of druid-sync and its C libraries
                  --help              print help; `druid-sync COMMAND --help` for a command
                """
        }
    }

    static func translate(arguments: [String], environment: [String: String]) -> Int32 {
        guard arguments.count <= 1 else { return usageError("translate takes at most one file") }
        let configuration: Configuration
        do {
            configuration = try Configuration.fromEnvironment(environment, readFile: Configuration.readTextFile)
        } catch {
            OperatorConsole.problem("\(error)")
            return 2
        }
        let path = arguments.first ?? "-"
        let body: [UInt8]
        if path == "-" {
            body = OperatorConsole.readStandardInput()
        } else {
            guard let data = FileManager.default.contents(atPath: path) else {
                OperatorConsole.problem("cannot read \(path)")
                return 2
            }
            body = [UInt8](data)
        }
        let pipeline = EventPipeline(configuration: configuration)
        switch pipeline.decoder.decode(body: body, contentType: nil, messageId: nil) {
        case .success(let event):
            let activity = pipeline.translator.activity(for: event)
            print(activity.redactedJSON)
            if let language = activity.acceptLanguage { print("Accept-Language: \(language)") }
            return 0
        case .failure(let invalid):
            OperatorConsole.raw("\(invalid.reason)\n", toStandardError: true)
            return 1
        }
    }

    static func runService(environment: [String: String]) async -> Int32 {
        let configuration: Configuration
        do {
            configuration = try Configuration.fromEnvironment(environment, readFile: Configuration.readTextFile)
        } catch {
            OperatorConsole.problem("configuration error: \(error)")
            return 2
        }
        let logger = Logger(
            level: configuration.logging.level, format: configuration.logging.format,
            isJournal: !(environment["JOURNAL_STREAM"] ?? "").isEmpty)
        do {
            let service = try SyncService(configuration: configuration, logger: logger, environment: environment)
            return await service.run()
        } catch {
            logger.error("start-up failed", [("error", .string("\(error)"))])
            return 1
        }
    }
}

/// The decoder and translator built from the configuration, shared by `run` and `translate`.
struct EventPipeline: Sendable {
    let decoder: EventDecoder
    let translator: ActivityTranslator

    init(configuration: Configuration) {
        decoder = EventDecoder(
            maxMessageBytes: configuration.events.maxMessageBytes, digest: { Digest.sha256Hex($0) })
        translator = ActivityTranslator(settings: configuration.translationSettings)
    }
}
