import Testing

@testable import Druid

@Suite("PKCE and hashing")
struct PKCETests {
    @Test("RFC 7636 appendix B: the verifier's S256 challenge")
    func rfc7636Vector() throws {
        let verifier = try #require(CodeVerifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"))
        #expect(verifier.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
    }

    @Test(
        "SHA-256 known answers (FIPS 180-2 examples)",
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
        ])
    func sha256KnownAnswers(_ input: String, _ expected: String) {
        #expect(Digest.sha256Hex(Array(input.utf8)) == expected)
    }

    @Test("SHA-256 of a million 'a's")
    func sha256Long() {
        #expect(
            Digest.sha256Hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test("new verifiers are 43 base64url characters, all different, and never printed")
    func verifiersAreWellFormedAndUnique() throws {
        var seen = Set<String>()
        for _ in 0..<2_000 {
            let verifier = try CodeVerifier()
            #expect(verifier.revealed.utf8.count == 43)
            #expect(
                verifier.revealed.utf8.allSatisfy { byte in
                    (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                        || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                        || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "-")
                        || byte == UInt8(ascii: "_")
                })
            #expect(verifier.challenge.utf8.count == 43)
            seen.insert(verifier.revealed)
        }
        #expect(seen.count == 2_000)
        let verifier = try CodeVerifier()
        #expect("\(verifier)" == "***")
        #expect(String(reflecting: verifier) == "***")
    }

    @Test("the random pool hands out each byte once, across refills, from many threads")
    func randomPoolNeverRepeats() async throws {
        // 8 tasks × 200 draws of 32 bytes: 50 refills of the 1 KiB pool, taken concurrently.
        let draws = try await withThrowingTaskGroup(of: [[UInt8]].self) { group in
            for _ in 0..<8 {
                group.addTask { try (0..<200).map { _ in try randomBytes(count: 32) } }
            }
            var all: [[UInt8]] = []
            for try await batch in group { all += batch }
            return all
        }
        #expect(draws.count == 1_600)
        #expect(Set(draws).count == 1_600)
        // A size that does not divide the pool, and a request too large for it (drawn directly).
        let odd = try (0..<100).map { _ in try randomBytes(count: 37) }
        #expect(odd.allSatisfy { $0.count == 37 })
        #expect(Set(odd).count == 100)
        let large = try randomBytes(count: 4 * RandomPool.blockSize)
        #expect(large.count == 4 * RandomPool.blockSize)
        #expect(Set(large).count > 200)  // 4 KiB of zeros would have one value
    }

    @Test("a given verifier must be 43 to 128 unreserved characters")
    func verifierValidation() {
        #expect(CodeVerifier(String(repeating: "a", count: 42)) == nil)
        #expect(CodeVerifier(String(repeating: "a", count: 43)) != nil)
        #expect(CodeVerifier(String(repeating: "~._-", count: 32)) != nil)
        #expect(CodeVerifier(String(repeating: "a", count: 129)) == nil)
        #expect(CodeVerifier(String(repeating: "a", count: 42) + "+") == nil)
        #expect(CodeVerifier(String(repeating: "a", count: 42) + "é") == nil)
    }

    @Test(
        "base64url without padding (RFC 4648 test vectors, URL alphabet)",
        arguments: [
            ("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ])
    func base64URL(_ input: String, _ expected: String) {
        #expect(Base64URL.encode(Array(input.utf8)) == expected)
    }

    @Test("base64url uses - and _ where base64 uses + and /")
    func base64URLAlphabet() {
        #expect(Base64URL.encode([0xFB, 0xFF]) == "-_8")
        #expect(Base64URL.encode([0xFF, 0xFF, 0xFF]) == "____")
    }

    @Test("the OpenSSL version is reported")
    func version() {
        #expect(DruidClient.openSSLVersion.hasPrefix("OpenSSL 3"))
    }
}
