import InvalidatorRuntime
import Testing

@Suite struct HTTPMessagesTests {
    private func parse(_ text: String, maxBytes: Int = 8_192, peerClosed: Bool = false) -> HTTPRequestHead {
        HTTPRequestHead.parse(Array(text.utf8), maxBytes: maxBytes, peerClosed: peerClosed)
    }

    @Test func completeHeads() {
        #expect(parse("GET /healthz HTTP/1.1\r\nHost: a\r\nUser-Agent: kube-probe/1.31\r\n\r\n") == .request(method: "GET", target: "/healthz"))
        #expect(parse("HEAD /metrics?x=1 HTTP/1.0\r\n\r\n") == .request(method: "HEAD", target: "/metrics?x=1"))
        #expect(parse("GET /readyz HTTP/1.1\n\n") == .request(method: "GET", target: "/readyz"), "bare LF line ends")
        #expect(parse("GET / HTTP/1.9\r\n\r\n") == .request(method: "GET", target: "/"), "any HTTP/1.x")
        #expect(parse("BREW /pot HTTP/1.1\r\n\r\n") == .request(method: "BREW", target: "/pot"), "methods are routed, not parsed")
        #expect(parse("GET /healthz HTTP/1.1\r\n\r\nbody or a second request") == .request(method: "GET", target: "/healthz"))
    }

    @Test func incompleteHeadsWaitForMore() {
        for text in ["", "G", "GET /heal", "GET /healthz HTTP/1.1\r", "GET /healthz HTTP/1.1\r\n", "GET /healthz HTTP/1.1\r\nHost: a\r\n", "GET /x HTTP/1.1\r\n\r"] {
            #expect(parse(text) == .incomplete, "\(text.debugDescription)")
            #expect(parse(text, peerClosed: true) == .invalid(.badRequest), "\(text.debugDescription) then closed")
        }
    }

    @Test func noiseIsRejectedWithoutWaitingForTheLineEnd() {
        let tlsClientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00]
        #expect(HTTPRequestHead.parse(tlsClientHello, maxBytes: 8_192, peerClosed: false) == .invalid(.badRequest))
        #expect(HTTPRequestHead.parse([0x47, 0x45, 0x54, 0x00], maxBytes: 8_192, peerClosed: false) == .invalid(.badRequest))
        #expect(parse("GET /caf\u{E9}") == .invalid(.badRequest), "non-ASCII")
        #expect(parse("GET /a\tb HTTP/1.1") == .invalid(.badRequest), "a control character")
    }

    @Test func malformedRequestLines() {
        for line in [
            "GARBAGE", "GET /healthz", "GET  /healthz HTTP/1.1", "GET /healthz  HTTP/1.1", " GET /healthz HTTP/1.1",
            "GET /healthz HTTP/1.1 extra", "GET healthz HTTP/1.1", "GET http://host/healthz HTTP/1.1", "G(T /healthz HTTP/1.1",
            "GET /healthz HTTZ/1.1", "GET /healthz HTTP/1.10", "GET /healthz HTTP/x.1", "GET /healthz HTTP/1-1", "GET /healthz http/1.1",
            "", "\r",
        ] {
            #expect(parse(line + "\r\n\r\n") == .invalid(.badRequest), "\(line.debugDescription)")
        }
    }

    @Test func otherHTTPVersionsAreNotSupported() {
        #expect(parse("GET /healthz HTTP/2.0\r\n\r\n") == .invalid(.httpVersionNotSupported))
        #expect(parse("PRI * HTTP/2.0\r\n\r\n") == .invalid(.badRequest), "HTTP/2 prior knowledge: no origin-form target")
        #expect(parse("GET /healthz HTTP/0.9\r\n\r\n") == .invalid(.httpVersionNotSupported))
    }

    @Test func oversizedHeads() {
        let longTarget = "GET /" + String(repeating: "a", count: 100)
        #expect(parse(longTarget, maxBytes: 64) == .invalid(.uriTooLong))
        #expect(parse(longTarget + " HTTP/1.1\r\n\r\n", maxBytes: 64) == .invalid(.requestHeaderFieldsTooLarge))
        let longHeader = "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 100)
        #expect(parse(longHeader, maxBytes: 64) == .invalid(.requestHeaderFieldsTooLarge))
        #expect(parse(longHeader + "\r\n\r\n", maxBytes: 64) == .invalid(.requestHeaderFieldsTooLarge), "complete but past the limit")
        let exactlyAtLimit = "GET / HTTP/1.1\r\n\r\n"
        #expect(parse(exactlyAtLimit, maxBytes: exactlyAtLimit.utf8.count) == .request(method: "GET", target: "/"))
        #expect(parse(exactlyAtLimit, maxBytes: exactlyAtLimit.utf8.count - 1) == .invalid(.requestHeaderFieldsTooLarge))
    }

    @Test func headAnswersCarryTheBodyLengthWithoutTheBody() {
        let response = HTTPResponse(status: .ok, body: "ready\n")
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"
        #expect(response.serialized(includingBody: true) == Array((head + "ready\n").utf8))
        #expect(response.serialized(includingBody: false) == Array(head.utf8))
        let multibyte = HTTPResponse(status: .ok, body: "\u{E9}\n")
        #expect(String(decoding: multibyte.serialized(includingBody: false), as: UTF8.self).contains("Content-Length: 3\r\n"))
    }

    @Test func errorAnswers() {
        let notAllowed = String(decoding: HTTPResponse(error: .methodNotAllowed, allowedMethods: "GET, HEAD").serialized(includingBody: true), as: UTF8.self)
        #expect(notAllowed.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        #expect(notAllowed.contains("\r\nAllow: GET, HEAD\r\n"))
        #expect(notAllowed.hasSuffix("\r\n\r\nmethod not allowed\n"))
        let tooLarge = String(decoding: HTTPResponse(error: .requestHeaderFieldsTooLarge).serialized(includingBody: true), as: UTF8.self)
        #expect(tooLarge.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(!tooLarge.contains("Allow:"))
    }
}
