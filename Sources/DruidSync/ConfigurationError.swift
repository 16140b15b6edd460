/// A setting the daemon cannot start with: names the environment variable and what it
/// accepts, e.g. `DRUID_SYNC_CONCURRENCY: "abc" is not a whole number from 1 to 65535`.
///
/// The description never contains a secret: the client secret is never quoted, and an AMQP
/// URL is quoted with its password replaced by `***`.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The environment variable at fault, e.g. `DRUID_SYNC_CONCURRENCY`.
    public let variable: String
    /// What is wrong with it and what it accepts.
    public let problem: String

    public init(variable: String, problem: String) {
        self.variable = variable
        self.problem = problem
    }

    public var description: String { variable + ": " + problem }
}
