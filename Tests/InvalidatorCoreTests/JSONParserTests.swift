import InvalidatorCore
import PropertyBased
import Testing

@Suite struct JSONParserTests {
    func parse(_ text: String) throws -> JSONValue {
        try JSONParser.parse(bytes: Array(text.utf8))
    }

    @Test func parsesScalarsArraysAndObjectsInOrder() throws {
        let value = try parse(#" {"b": [1, -2.5e3, true, false, null], "a": {"x": "y"}} "#)
        let object = try #require(value.objectValue)
        #expect(object.fields.map(\.key) == ["b", "a"])
        #expect(object["b"] == .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null]))
        #expect(object["a"] == .object(["x": .string("y")]))
    }

    @Test func decodesEscapesAndSurrogatePairs() throws {
        let value = try parse(#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00""#)
        #expect(value == .string("a\"b\\c/d\n\té😀"))
    }

    @Test func keepsNumberTextExactly() throws {
        #expect(try parse("12345678901234567890") == .number("12345678901234567890"))
        #expect(try parse("0.10") == .number("0.10"))
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":}", "{\"a\" 1}", "tru", "01", "1.", "-", "\"abc", "\"a\u{01}b\"",
        "\"\\x\"", "\"\\ud800\"", "{} {}", "[1 2]", "{1:2}",
    ])
    func rejectsMalformedInput(_ text: String) {
        #expect(throws: JSONParser.SyntaxError.self) { try parse(text) }
    }

    @Test func refusesNestingBeyondTheLimit() {
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONParser.SyntaxError.self) { try parse(deep) }
        let fine = String(repeating: "[", count: 60) + String(repeating: "]", count: 60)
        #expect((try? parse(fine)) != nil)
    }

    @Test func serializesWhatItParses() throws {
        let text = #"{"a":[1,"x\"y",null,{"b":true}],"c":"\u0001"}"#
        #expect(try parse(text).serialized() == text)
    }
}

/// The parser's own UTF-8 check (decode, then compare) against the standard library's.
@Suite struct JSONStringUTF8PropertyTests {
    /// ASCII, continuation bytes, every kind of lead byte, and bytes never valid in UTF-8.
    static let strings = Gen<UInt8?>.element(of: [
        0x61, 0x7A, 0x7F, 0x80, 0x8F, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
    ]).map { $0! }.array(of: 0...8)

    @Test func aStringIsAcceptedExactlyWhenItIsValidUTF8AndKeepsItsBytes() async {
        await propertyCheck(count: 2_000, input: Self.strings) { bytes in
            let document = [UInt8(ascii: "\"")] + bytes + [UInt8(ascii: "\"")]
            let expected = String(validating: bytes, as: UTF8.self)
            let parsed = try? JSONParser.parse(bytes: document)
            #expect(parsed == expected.map { JSONValue.string($0) }, "\(bytes)")
        }
    }
}
