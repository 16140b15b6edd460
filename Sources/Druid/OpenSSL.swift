internal import COpenSSL

/// A failed OpenSSL call, with the library's own reason from its error queue.
public struct OpenSSLError: Error, Sendable, CustomStringConvertible {
    /// The OpenSSL function that failed, e.g. `RAND_bytes`.
    public let function: String
    /// OpenSSL's text for the first queued error, or "unknown error".
    public let reason: String

    public var description: String { "\(function) failed: \(reason)" }

    /// Reads and clears this thread's OpenSSL error queue (`ERR_get_error`, `ERR_error_string_n`).
    static func takeFromQueue(function: String) -> OpenSSLError {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return OpenSSLError(function: function, reason: "unknown error") }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return OpenSSLError(function: function, reason: text)
    }
}

/// Hashes with OpenSSL.
public enum Digest {
    /// The SHA-256 of `bytes`, 32 bytes.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { sha256($0) }
    }

    /// The SHA-256 of `bytes` as 64 lower-case hexadecimal digits.
    public static func sha256Hex(_ bytes: [UInt8]) -> String {
        let digest = sha256(bytes)
        let digits = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: digest.count * 2) { target in
            for (index, byte) in digest.enumerated() {
                target[2 * index] = digits[Int(byte >> 4)]
                target[2 * index + 1] = digits[Int(byte & 0x0F)]
            }
            return digest.count * 2
        }
    }

    /// The SHA-256 of the bytes at `data` (`EVP_Digest` with an algorithm fetched once).
    static func sha256(_ data: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 32) { digest, initialized in
            var length: UInt32 = 0
            let ok = EVP_Digest(
                data.baseAddress ?? UnsafeRawPointer(digest.baseAddress!), data.count,
                digest.baseAddress, &length, SHA256Algorithm.shared.pointer, nil)
            // EVP_Digest cannot fail for SHA-256 with the default provider short of memory
            // exhaustion; a wrong digest would be worse than stopping.
            precondition(ok == 1 && length == 32, "EVP_Digest(SHA-256) failed")
            initialized = 32
        }
    }
}

/// The SHA-256 implementation, fetched from OpenSSL's default provider once per process
/// rather than on every hash (`EVP_MD_fetch`), as OpenSSL 3 recommends.
final class SHA256Algorithm: @unchecked Sendable {  // an EVP_MD is immutable and thread-safe once fetched
    static let shared = SHA256Algorithm()
    let pointer: OpaquePointer

    private init() {
        guard let fetched = EVP_MD_fetch(nil, "SHA256", nil) else {
            preconditionFailure("OpenSSL has no SHA-256: \(OpenSSLError.takeFromQueue(function: "EVP_MD_fetch"))")
        }
        pointer = fetched
    }

    deinit { EVP_MD_free(pointer) }
}

/// Fills `count` bytes from OpenSSL's CSPRNG (`RAND_bytes`).
func randomBytes(count: Int) throws(OpenSSLError) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    let result = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
    guard result == 1 else { throw OpenSSLError.takeFromQueue(function: "RAND_bytes") }
    return bytes
}

/// The linked OpenSSL, e.g. `OpenSSL 3.0.17 1 Jul 2025` (`OpenSSL_version`).
func linkedOpenSSLVersion() -> String {
    String(cString: OpenSSL_version(OPENSSL_VERSION))
}
