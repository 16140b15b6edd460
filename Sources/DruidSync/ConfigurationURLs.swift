import UserUpdates

/// RFC 3986 percent-encoding of URL parts (user names, passwords, virtual hosts).
enum PercentEncoding {
    /// `text` with every byte outside the unreserved set (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
    static func encode(_ text: String) -> String {
        let hexDigits = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                out.append(byte)
            default:
                out.append(contentsOf: [UInt8(ascii: "%"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `text` with `%XX` sequences decoded, or nil when one is malformed or the result is
    /// not UTF-8.
    static func decode(_ text: Substring) -> String? {
        var out: [UInt8] = []
        var bytes = text.utf8.makeIterator()
        while let byte = bytes.next() {
            guard byte == UInt8(ascii: "%") else {
                out.append(byte)
                continue
            }
            guard let high = bytes.next().flatMap(hexValue), let low = bytes.next().flatMap(hexValue) else {
                return nil
            }
            out.append(high << 4 | low)
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Reading the URLs of the configuration. Problems are phrased to follow a quoted,
/// redacted URL: `"amqp://guest:***@host:0/" has a port that is not …`.
enum ConfigurationURL {
    /// Parses one RabbitMQ URL: `amqp[s]://[user[:password]@]host[:port][/vhost]`.
    ///
    /// User, password and virtual host are percent-decoded; a missing user or password is
    /// `guest`; an empty path, `/` or `/%2F` is the virtual host `/`. Query parameters are
    /// refused (their settings have variables of their own).
    static func amqpEndpoint(_ text: Substring) -> Result<Configuration.AMQPEndpoint, URLProblem> {
        guard let schemeEnd = text.firstRange(of: "://") else {
            return .failure(.init("does not start with amqp:// or amqps://"))
        }
        var endpoint = Configuration.AMQPEndpoint()
        switch text[..<schemeEnd.lowerBound].lowercased() {
        case "amqp": endpoint.usesTLS = false
        case "amqps": endpoint.usesTLS = true
        default: return .failure(.init("does not start with amqp:// or amqps://"))
        }
        let rest = text[schemeEnd.upperBound...]
        if rest.contains("?") || rest.contains("#") {
            return .failure(.init("has a query or fragment; use the DRUID_SYNC_* variables for connection options"))
        }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        let path = rest[authorityEnd...]

        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            authority = authority[authority.index(after: at)...]
            let colon = userInfo.firstIndex(of: ":")
            let userText = userInfo[..<(colon ?? userInfo.endIndex)]
            guard let user = PercentEncoding.decode(userText) else {
                return .failure(.init("has a user name with a malformed %-escape"))
            }
            if !user.isEmpty { endpoint.user = user }
            if let colon {
                guard let password = PercentEncoding.decode(userInfo[userInfo.index(after: colon)...]) else {
                    return .failure(.init("has a password with a malformed %-escape"))
                }
                if !password.isEmpty { endpoint.password = Secret(password) }
            }
        }

        switch hostAndPort(authority) {
        case .failure(let problem): return .failure(problem)
        case .success(let (host, port)):
            endpoint.host = host
            endpoint.port = port ?? (endpoint.usesTLS ? 5671 : 5672)
        }

        let vhostText = path.dropFirst()  // the "/" that ends the authority
        if vhostText.contains("/") {
            return .failure(.init("has a virtual host with an unescaped '/'; write it as %2F"))
        }
        guard let vhost = PercentEncoding.decode(vhostText) else {
            return .failure(.init("has a virtual host with a malformed %-escape"))
        }
        endpoint.virtualHost = vhost.isEmpty ? "/" : vhost
        return .success(endpoint)
    }

    /// Checks a DRUID base URL, `http[s]://host[:port][/path]`, and returns it without
    /// trailing slashes (paths are appended to it with a leading `/`).
    static func httpBase(_ text: String) -> Result<String, URLProblem> {
        guard let schemeEnd = text.firstRange(of: "://") else {
            return .failure(.init("does not start with http:// or https://"))
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else {
            return .failure(.init("does not start with http:// or https://"))
        }
        var rest = text[schemeEnd.upperBound...]
        if rest.contains("?") || rest.contains("#") { return .failure(.init("has a query or fragment")) }
        let authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        if authority.contains("@") {
            return .failure(.init("has user information; DRUID credentials have their own variables"))
        }
        if case .failure(let problem) = hostAndPort(authority) { return .failure(problem) }
        if rest.contains(where: { $0 == " " || $0.isNewline }) { return .failure(.init("contains white space")) }
        while rest.hasSuffix("/") { rest.removeLast() }
        return .success(scheme + "://" + rest)
    }

    /// `host`, `host:port`, `[IPv6]` or `[IPv6]:port`.
    private static func hostAndPort(_ authority: Substring) -> Result<(String, Int?), URLProblem> {
        var host = authority
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else {
                return .failure(.init("has an unclosed '[' in its host"))
            }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return .failure(.init("has characters after its IPv6 address")) }
                portText = after.dropFirst()
            }
            guard !host.isEmpty, host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                return .failure(.init("has a malformed IPv6 address"))
            }
        } else {
            if let colon = authority.lastIndex(of: ":") {
                host = authority[..<colon]
                portText = authority[authority.index(after: colon)...]
            }
            guard !host.isEmpty else { return .failure(.init("has no host")) }
            let isHostCharacter: (Character) -> Bool = {
                $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_")
            }
            guard host.allSatisfy(isHostCharacter) else {
                return .failure(.init("has a host with characters a host name cannot have"))
            }
        }
        var port: Int?
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number), portText.allSatisfy(\.isASCII) else {
                return .failure(.init("has a port that is not a number from 1 to 65535"))
            }
            port = number
        }
        return .success((String(host), port))
    }

    /// `text` safe to quote in an error about an AMQP URL, even when it failed to parse:
    /// everything between the scheme and the last `@` (user and password) becomes `***`;
    /// without an `@`, a non-numeric "port" (a password whose host was forgotten) and all
    /// that follows it do.
    static func redacted(_ text: Substring) -> String {
        let afterScheme = text.firstRange(of: "://")?.upperBound ?? text.startIndex
        if let at = text[afterScheme...].lastIndex(of: "@") {
            return String(text[..<afterScheme]) + "***" + String(text[at...])
        }
        let authorityEnd = text[afterScheme...].firstIndex(of: "/") ?? text.endIndex
        guard let colon = text[afterScheme..<authorityEnd].lastIndex(of: ":") else { return String(text) }
        let port = text[text.index(after: colon)..<authorityEnd]
        if port.allSatisfy({ $0.isASCII && $0.isNumber }) { return String(text) }
        return String(text[...colon]) + "***"
    }
}

/// What is wrong with a URL, phrased to follow the quoted URL.
struct URLProblem: Error {
    let text: String
    init(_ text: String) { self.text = text }
}
