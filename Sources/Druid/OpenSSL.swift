internal import COpenSSL
import Locking

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

/// Fills `count` bytes from OpenSSL's CSPRNG (`RAND_bytes`), through ``RandomPool``.
func randomBytes(count: Int) throws(OpenSSLError) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var failure: OpenSSLError?
    bytes.withUnsafeMutableBytes { target in
        do throws(OpenSSLError) {
            try RandomPool.shared.fill(target)
        } catch {
            failure = error
        }
    }
    if let failure { throw failure }
    return bytes
}

/// OpenSSL's CSPRNG output, drawn a kilobyte at a time and handed out once each.
///
/// A `RAND_bytes` call has a fixed cost (the thread's generator, its fork and reseed
/// checks) far above that of the 32 bytes a code verifier needs: it was a fifth of the
/// work of preparing a delivery. One call now serves 32 verifiers. Bytes leave the pool
/// exactly once and are zeroed as they leave, so the pool holds only bytes not yet used.
/// OpenSSL checks for a fork on every call so that a child never repeats its parent's
/// output; the pool cannot, so nothing may fork while it holds bytes (druid-sync never forks).
final class RandomPool: Sendable {
    static let shared = RandomPool()
    static let blockSize = 1024

    private struct State {
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: RandomPool.blockSize, alignment: 16)
        /// Where the unused bytes start; `blockSize` when the pool is empty.
        var next = RandomPool.blockSize
    }

    private let state = Locked(State())

    deinit {
        state.withLock { state in
            state.bytes.initializeMemory(as: UInt8.self, repeating: 0)
            state.bytes.deallocate()
        }
    }

    /// Fills `target` with bytes no one else gets.
    func fill(_ target: UnsafeMutableRawBufferPointer) throws(OpenSSLError) {
        guard target.count <= RandomPool.blockSize / 4 else {
            // Large requests bypass the pool.
            guard RAND_bytes(target.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(target.count)) == 1
            else { throw OpenSSLError.takeFromQueue(function: "RAND_bytes") }
            return
        }
        try state.withLock { (state) throws(OpenSSLError) in
            if RandomPool.blockSize - state.next < target.count {
                let block = state.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
                guard RAND_bytes(block, Int32(RandomPool.blockSize)) == 1 else {
                    throw OpenSSLError.takeFromQueue(function: "RAND_bytes")
                }
                state.next = 0
            }
            let source = UnsafeMutableRawBufferPointer(rebasing: state.bytes[state.next..<(state.next + target.count)])
            target.copyMemory(from: UnsafeRawBufferPointer(source))
            source.initializeMemory(as: UInt8.self, repeating: 0)
            state.next += target.count
        }
    }
}

/// The linked OpenSSL, e.g. `OpenSSL 3.0.17 1 Jul 2025` (`OpenSSL_version`).
func linkedOpenSSLVersion() -> String {
    String(cString: OpenSSL_version(OPENSSL_VERSION))
}
