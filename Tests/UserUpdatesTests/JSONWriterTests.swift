import Testing
import UserUpdates

@Suite struct JSONWriterTests {
    func text(_ value: JSONValue) -> String {
        String(decoding: JSONWriter.encode(value), as: UTF8.self)
    }

    @Test func escapesWhatRFC8259Requires() {
        #expect(text(.string("a\"b\\c/d")) == #""a\"b\\c/d""#)
        #expect(text(.string("\n\r\t\u{8}\u{C}")) == #""\n\r\t\b\f""#)
        #expect(text(.string("\u{0}\u{1}\u{1F}\u{7F}")) == "\"\\u0000\\u0001\\u001f\u{7F}\"")
        #expect(text(.string("José 😀 \u{2028}")) == "\"José 😀 \u{2028}\"")
        #expect(text(.string("")) == #""""#)
    }

    @Test func writesCompactStructureInOrder() {
        let value = JSONValue.object([
            (key: "z", value: .number("1.50")),
            (key: "a", value: .array([.null, .bool(true), .bool(false), .object([])])),
            (key: "", value: .string("x")),
        ])
        #expect(text(value) == #"{"z":1.50,"a":[null,true,false,{}],"":"x"}"#)
    }

    @Test(arguments: [
        #"{"a":[1,-2.5e3,"\u0000\"\\",{"b":{}}],"c":null,"d":"😀é\n"}"#,
        #"[]"#,
        #""plain""#,
    ])
    func parsingWhatWasWrittenGivesTheSameValue(json: String) throws {
        let value = try parsedJSON(json)
        #expect(try parsedJSON(JSONWriter.encode(value)) == value)
    }

    @Test func everyControlCharacterRoundTrips() throws {
        let all = String(String.UnicodeScalarView((0..<0x20).map { Unicode.Scalar(UInt8($0)) }))
        let bytes = JSONWriter.encode(.string(all))
        #expect(bytes.allSatisfy { $0 >= 0x20 })
        #expect(try parsedJSON(bytes) == .string(all))
    }

    @Test func integersAndNames() {
        var writer = JSONWriter()
        writer.writeByte(UInt8(ascii: "{"))
        writer.writeName("n")
        writer.writeInteger(-42)
        writer.writeByte(UInt8(ascii: "}"))
        #expect(String(decoding: writer.bytes, as: UTF8.self) == #"{"n":-42}"#)
    }
}
