/// A PKCE code verifier (RFC 7636): 32 random bytes as 43 base64url characters.
///
/// DRUID lets one verifier obtain one token, so every update uses a new one. Its
/// `description` is `***`: it is a credential until its token has been used.
public struct CodeVerifier: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The verifier itself. Use only to put it on the wire.
    public let revealed: String

    /// A new verifier from OpenSSL's CSPRNG.
    ///
    /// - Throws: ``OpenSSLError`` if the random generator fails (it should not).
    public init() throws(OpenSSLError) {
        revealed = Base64URL.encode(try randomBytes(count: 32))
    }

    /// A given verifier, or nil unless it has 43 to 128 characters of `A–Z a–z 0–9 - . _ ~`.
    public init?(_ text: String) {
        let count = text.utf8.count
        guard count >= 43, count <= 128, text.utf8.allSatisfy(PercentEncoding.isUnreserved) else { return nil }
        revealed = text
    }

    /// The S256 challenge: base64url, without padding, of the SHA-256 of the verifier's ASCII.
    public var challenge: String {
        var text = revealed
        let digest = text.withUTF8 { Digest.sha256(UnsafeRawBufferPointer($0)) }
        return Base64URL.encode(digest)
    }

    public var description: String { "***" }
    public var debugDescription: String { "***" }
}

/// Base64 with the URL-safe alphabet (`-` and `_`) and no `=` padding (RFC 4648 §5).
enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        let fullGroups = bytes.count / 3
        let rest = bytes.count % 3
        let length = fullGroups * 4 + (rest == 0 ? 0 : rest + 1)
        return String(unsafeUninitializedCapacity: length) { target in
            var output = 0
            var input = 0
            func emit(_ sextet: UInt32) {
                target[output] = alphabet[Int(sextet & 0x3F)]
                output += 1
            }
            for _ in 0..<fullGroups {
                let group = UInt32(bytes[input]) << 16 | UInt32(bytes[input + 1]) << 8 | UInt32(bytes[input + 2])
                emit(group >> 18)
                emit(group >> 12)
                emit(group >> 6)
                emit(group)
                input += 3
            }
            if rest == 1 {
                let group = UInt32(bytes[input]) << 16
                emit(group >> 18)
                emit(group >> 12)
            } else if rest == 2 {
                let group = UInt32(bytes[input]) << 16 | UInt32(bytes[input + 1]) << 8
                emit(group >> 18)
                emit(group >> 12)
                emit(group >> 6)
            }
            return output
        }
    }
}
