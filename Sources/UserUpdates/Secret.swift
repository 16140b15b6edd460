/// A value that must never reach a log line, a dead-letter header or an error message:
/// the client secret, tokens, code verifiers, user passwords.
///
/// Its `description` is always `***`; read the value only where it is sent on the wire.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The secret itself. Use only to build the bytes that go to DRUID.
    public let revealed: String

    public init(_ value: String) { self.revealed = value }

    public var description: String { "***" }
    public var debugDescription: String { "***" }
}
