import Testing
import UserUpdates

@Suite struct JSONParserTests {
    func parse(_ bytes: [UInt8]) -> Result<JSONValue, JSONParseError> {
        do throws(JSONParseError) {
            return .success(try JSONParser.parse(bytes))
        } catch {
            return .failure(error)
        }
    }

    func parse(_ text: String) -> Result<JSONValue, JSONParseError> { parse(Array(text.utf8)) }

    func error(_ text: String) -> JSONParseError? {
        if case .failure(let error) = parse(text) { return error }
        return nil
    }

    @Test func scalars() throws {
        #expect(try parsedJSON("null") == .null)
        #expect(try parsedJSON("true") == .bool(true))
        #expect(try parsedJSON("false") == .bool(false))
        #expect(try parsedJSON(#""hi""#) == .string("hi"))
        #expect(try parsedJSON(" \t\r\n 1 \n") == .number("1"))
    }

    @Test func objectsKeepMemberOrderAndDuplicates() throws {
        let value = try parsedJSON(#"{"z":1,"a":2,"m":{"y":true,"b":null},"a":3}"#)
        let members = try #require(value.objectMembers)
        #expect(members.map(\.key) == ["z", "a", "m", "a"])
        #expect(value["a"] == .number("2"))
        #expect(value["m"]?["y"] == .bool(true))
        #expect(value["missing"] == nil)
        #expect(try parsedJSON("{}") == .object([]))
        #expect(try parsedJSON(" [ ] ") == .array([]))
        #expect(
            try parsedJSON("[1,[2,[3]],{}]")
                == .array([.number("1"), .array([.number("2"), .array([.number("3")])]), .object([])]))
    }

    @Test func equalityComparesOrder() throws {
        #expect(try parsedJSON(#"{"a":1,"b":2}"#) != parsedJSON(#"{"b":2,"a":1}"#))
        #expect(try parsedJSON("1.0") != parsedJSON("1"))
    }

    @Test(arguments: [
        "0", "-0", "12", "-12", "0.5", "1.25e10", "1E+2", "1e-2", "-0.0e0", "123456789012345678901234567890",
    ])
    func numbersKeepTheirText(text: String) throws {
        #expect(try parsedJSON(text) == .number(text))
        #expect(try parsedJSON("[\(text)]") == .array([.number(text)]))
    }

    @Test(arguments: [
        "01", "-", "+1", "1.", ".5", "1e", "1e+", "--1", "0x10", "1.e3", "NaN", "Infinity", "-Infinity", "1 2",
    ])
    func malformedNumbersAreRefused(text: String) {
        #expect(error(text)?.kind == .invalidSyntax)
    }

    @Test func escapes() throws {
        #expect(try parsedJSON(#""\" \\ \/ \b \f \n \r \t""#) == .string("\" \\ / \u{8} \u{C} \n \r \t"))
        #expect(try parsedJSON(#""\u0041\u00e9\u20AC""#) == .string("Aé€"))
        #expect(try parsedJSON(#""a\u0000b""#) == .string("a\u{0}b"))
        #expect(try parsedJSON(#""plain then \n escaped""#) == .string("plain then \n escaped"))
    }

    @Test func surrogatePairsBecomeOneScalar() throws {
        #expect(try parsedJSON(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try parsedJSON(#""\uD834\uDD1E x""#) == .string("𝄞 x"))
    }

    @Test(arguments: [#""\ud83d""#, #""\ud83dx""#, #""\ude00""#, #""\ud83d\u0041""#, #""\ud83d\n""#])
    func loneSurrogatesAreRefused(text: String) {
        #expect(error(text)?.detail == "lone surrogate escape")
    }

    @Test(arguments: [#""\x""#, #""\u12""#, #""\u12g4""#, #""\'""#, #""\U0041""#])
    func invalidEscapesAreRefused(text: String) {
        #expect(error(text)?.kind == .invalidSyntax)
    }

    @Test func rawUTF8IsKept() throws {
        #expect(try parsedJSON(#"{"nombre":"José Ñandú 😀 中文"}"#)["nombre"] == .string("José Ñandú 😀 中文"))
    }

    @Test(
        arguments: [
            [0x22, 0xFF, 0x22],  // never valid
            [0x22, 0xC0, 0xAF, 0x22],  // overlong "/"
            [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong three bytes
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // UTF-16 surrogate encoded in UTF-8
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
            [0x22, 0xC3, 0x22],  // truncated sequence
            [0x22, 0x80, 0x22],  // lone continuation byte
            [0x22, 0x61, 0x5C, 0x6E, 0xE9, 0x22],  // Latin-1 é after an escape
            [0x7B, 0xE9, 0x7D],  // outside a string
            [0xFF, 0xFE, 0x7B, 0x00, 0x7D, 0x00],  // UTF-16 LE with BOM
        ] as [[UInt8]])
    func invalidUTF8IsReportedAsSuch(bytes: [UInt8]) {
        guard case .failure(let error) = parse(bytes) else {
            Issue.record("accepted invalid UTF-8")
            return
        }
        #expect(error.kind == .invalidUTF8)
        #expect(error.description.hasPrefix("not UTF-8"))
    }

    @Test func utf8ErrorsGiveTheOffset() {
        let error = parse([0x7B, 0x22, 0x61, 0x22, 0x3A, 0x22, 0x62, 0xE9, 0x22, 0x7D])
        #expect(error == .failure(JSONParseError(kind: .invalidUTF8, offset: 7, detail: "invalid byte")))
    }

    @Test func validMultiByteBoundaries() throws {
        // U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF
        let bytes: [UInt8] = [
            0x22, 0xC2, 0x80, 0xDF, 0xBF, 0xE0, 0xA0, 0x80, 0xEF, 0xBF, 0xBF, 0xF0, 0x90, 0x80, 0x80, 0xF4, 0x8F, 0xBF,
            0xBF, 0x22,
        ]
        #expect(try parsedJSON(bytes) == .string("\u{80}\u{7FF}\u{800}\u{FFFF}\u{10000}\u{10FFFF}"))
    }

    @Test(arguments: [
        ("", "unexpected end of input"),
        ("   ", "unexpected end of input"),
        ("{", "unterminated object"),
        ("[1,", "unexpected end of input"),
        ("[1", "unterminated array"),
        (#"{"a" 1}"#, "unexpected character '1' where ':' was expected"),
        (#"{"a":1,}"#, "unexpected character '}' where a member name was expected"),
        ("[1,]", "unexpected character ']' where a value was expected"),
        ("{a:1}", "unexpected character 'a' where a member name was expected"),
        ("{} x", "unexpected character 'x' after the JSON value"),
        ("{}{}", "unexpected character '{' after the JSON value"),
        (#""abc"#, "unterminated string"),
        ("tru", "unexpected end of input"),
        ("nul1", "unexpected character '1' in a literal"),
        ("'a'", "unexpected character ''' where a value was expected"),
        ("// c\n{}", "unexpected character '/' where a value was expected"),
        ("\u{0C}{}", "unexpected control character where a value was expected"),
        ("\"a\tb\"", "control character in a string"),
        ("\"a\nb\"", "control character in a string"),
    ])
    func syntaxErrorsSayWhat(text: String, detail: String) {
        let error = error(text)
        #expect(error?.kind == .invalidSyntax)
        #expect(error?.detail == detail)
    }

    @Test func syntaxErrorOffsets() {
        #expect(error(#"{"a":1,}"#)?.offset == 7)
        #expect(error(#"{"a":1} x"#)?.offset == 8)
        #expect(error(#"{"a": tru }"#)?.offset == 9)
    }

    @Test func byteOrderMarkIsRefused() {
        let error = parse([0xEF, 0xBB, 0xBF, 0x7B, 0x7D])
        #expect(error == .failure(JSONParseError(kind: .invalidSyntax, offset: 0, detail: "byte order mark")))
    }

    @Test func nestingIsLimited() throws {
        let deepest = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try JSONParser.parse(Array(deepest.utf8)) }
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(error(tooDeep)?.kind == .nestingTooDeep)
        let objects = String(repeating: #"{"a":"#, count: 65) + "1" + String(repeating: "}", count: 65)
        #expect(error(objects)?.kind == .nestingTooDeep)
        // A hostile body far deeper than the limit fails cleanly instead of exhausting the stack.
        let hostile = String(repeating: "[", count: 1_000_000)
        #expect(error(hostile)?.kind == .nestingTooDeep)
        #expect(throws: Never.self) { try JSONParser.parse(Array(tooDeep.utf8), maximumDepth: 65) }
    }

    @Test func descriptionNamesTheProblem() {
        #expect(
            error("{x")?.description == "not JSON (unexpected character 'x' where a member name was expected at byte 1)"
        )
    }

    @Test func rawBufferEntryPoint() throws {
        let bytes = Array(#"{"k":[true]}"#.utf8)
        let value = try bytes.withUnsafeBytes { buffer in try JSONParser.parse(buffer) }
        #expect(value == .object([(key: "k", value: .array([.bool(true)]))]))
    }
}
