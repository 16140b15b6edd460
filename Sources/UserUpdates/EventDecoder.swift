/// Why a message is a bad message (event-schema.md section 2): it is dead-lettered at once
/// and never retried.
public struct InvalidEvent: Error, Sendable, Equatable, CustomStringConvertible {
    /// The dead-letter reason, e.g. `invalid-event: user.ids.email.value is not an email`.
    /// Names the field by its path, never quotes a value, at most 1 KiB.
    public let reason: String
    /// The event's id for logs and the dead-letter headers: the body's `eventId` when it
    /// could be read, else the AMQP `message_id`, else the hex SHA-256 of the body.
    public let eventId: String
    public let eventIdOrigin: EventIdOrigin

    public init(reason: String, eventId: String, eventIdOrigin: EventIdOrigin) {
        self.reason = reason
        self.eventId = eventId
        self.eventIdOrigin = eventIdOrigin
    }

    public var description: String { reason }
}

/// Turns a message (body and AMQP properties) into a checked `UserUpdateEvent`, applying
/// every rule of event-schema.md sections 1 and 2.
///
/// Pure and `Sendable`: one decoder serves every consumer task. The assertion typology is
/// not needed here: assertions given in object form keep `typology == nil` and the
/// translator fills in the configured one.
public struct EventDecoder: Sendable {
    /// The largest body accepted, in bytes (`DRUID_SYNC_MAX_MESSAGE_BYTES`).
    public let maxMessageBytes: Int
    private let digest: @Sendable ([UInt8]) -> String

    /// - Parameters:
    ///   - maxMessageBytes: bodies longer than this are bad messages.
    ///   - digest: the lowercase hex SHA-256 of a body; called only for an event that has
    ///     neither a usable `eventId` nor a `message_id`.
    public init(maxMessageBytes: Int = 1_048_576, digest: @escaping @Sendable ([UInt8]) -> String) {
        self.maxMessageBytes = maxMessageBytes
        self.digest = digest
    }

    /// Decodes and checks one message.
    /// - Parameters:
    ///   - contentType: the AMQP `content_type` property (nil or empty when absent).
    ///   - messageId: the AMQP `message_id` property (nil or empty when absent).
    /// - Returns: the event, or why it is a bad message together with its best id.
    public func decode(body: [UInt8], contentType: String?, messageId: String?) -> Result<UserUpdateEvent, InvalidEvent>
    {
        body.withUnsafeBytes { decode(body: $0, contentType: contentType, messageId: messageId) }
    }

    /// Decodes and checks one message whose body is only borrowed for the call (for example
    /// rabbitmq-c's frame buffer): nothing of `body` is kept after the call returns.
    public func decode(
        body: UnsafeRawBufferPointer, contentType: String?, messageId: String?
    ) -> Result<
        UserUpdateEvent, InvalidEvent
    > {
        let messageId = messageId.flatMap { $0.isEmpty ? nil : $0 }
        func invalid(_ problem: String) -> Result<UserUpdateEvent, InvalidEvent> {
            let (eventId, origin) = fallbackId(bodyEventId: nil, messageId: messageId, body: body)
            let reason = ReasonText.truncated("invalid-event: " + problem)
            return .failure(InvalidEvent(reason: reason, eventId: eventId, eventIdOrigin: origin))
        }

        if body.count > maxMessageBytes {
            return invalid("body is larger than \(maxMessageBytes) bytes")
        }
        if let problem = Self.contentTypeProblem(contentType) {
            return invalid(problem)
        }
        let document: JSONValue
        do throws(JSONParseError) {
            document = try JSONParser.parse(body)
        } catch {
            return invalid("body is \(error)")
        }
        guard let members = document.objectMembers else {
            return invalid("body is not a JSON object")
        }

        var reader = TopLevelFields()
        if let problem = reader.collect(members) { return invalid(problem.text) }
        let bodyEventId: String?
        switch reader.eventId {
        case nil:
            bodyEventId = nil
        case .string(let text)? where !text.isEmpty && isAtMost128Characters(text):
            bodyEventId = text
        case .string?:
            return invalid("eventId is not 1 to 128 characters long")
        case let other?:
            return invalid("eventId is not a string (it is \(other.kindDescription))")
        }

        let (eventId, origin) = fallbackId(bodyEventId: bodyEventId, messageId: messageId, body: body)
        do throws(FieldProblem) {
            return .success(try reader.event(eventId: eventId, origin: origin))
        } catch {
            return .failure(
                InvalidEvent(
                    reason: ReasonText.truncated("invalid-event: " + error.text), eventId: eventId,
                    eventIdOrigin: origin))
        }
    }

    private func fallbackId(
        bodyEventId: String?, messageId: String?, body: UnsafeRawBufferPointer
    ) -> (
        String, EventIdOrigin
    ) {
        if let bodyEventId { return (bodyEventId, .body) }
        if let messageId { return (messageId, .messageId) }
        return (digest(Array(body)), .bodyDigest)
    }

    /// Nil when `contentType` is absent or `application/json` (any case, parameters
    /// allowed, but a `charset` must be UTF-8); else the problem.
    static func contentTypeProblem(_ contentType: String?) -> String? {
        guard let contentType, !contentType.isEmpty, contentType != "application/json" else { return nil }
        let parts = contentType.split(separator: ";", omittingEmptySubsequences: false)
        let mediaType = parts[0].trimmingASCIISpaces().lowercased()
        var isAcceptable = mediaType == "application/json"
        for parameter in parts.dropFirst() where isAcceptable && !parameter.trimmingASCIISpaces().isEmpty {
            let pair = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard pair.count == 2 else {
                isAcceptable = false
                break
            }
            if pair[0].trimmingASCIISpaces().lowercased() == "charset" {
                var charset = pair[1].trimmingASCIISpaces().lowercased()
                if charset.count >= 2, charset.hasPrefix("\""), charset.hasSuffix("\"") {
                    charset = String(charset.dropFirst().dropLast())
                }
                isAcceptable = charset == "utf-8" || charset == "utf8"
            }
        }
        if isAcceptable { return nil }
        let shown = String(contentType.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F })
        return "content type \"\(ReasonText.truncated(shown, maximumBytes: 100))\" is not application/json"
    }
}

/// Whether `text` has at most 128 characters, counted as Unicode scalars like JSON
/// Schema's `maxLength`; the byte count answers without counting in nearly every case.
func isAtMost128Characters(_ text: String) -> Bool {
    text.utf8.count <= 128 || text.unicodeScalars.count <= 128
}

/// One field that breaks a rule: the reason is `<path> <problem>`.
struct FieldProblem: Error {
    let text: String

    init(_ path: String, _ problem: String) {
        text = path + " " + problem
    }
}

extension Substring {
    fileprivate func trimmingASCIISpaces() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}

// MARK: - Reading the fields

/// The top-level fields druid-sync knows; any other is ignored (forward compatibility).
private struct TopLevelFields {
    var eventId: JSONValue?
    var occurredAt: JSONValue?
    var user: JSONValue?
    var source: JSONValue?
    var locale: JSONValue?

    /// Picks the known fields out of the top-level members. A known field given twice is a
    /// problem: JSON readers disagree on which copy wins.
    mutating func collect(_ members: [(key: String, value: JSONValue)]) -> FieldProblem? {
        for (key, value) in members {
            let isRepeated: Bool
            switch key {
            case "eventId": (isRepeated, eventId) = (eventId != nil, value)
            case "occurredAt": (isRepeated, occurredAt) = (occurredAt != nil, value)
            case "user": (isRepeated, user) = (user != nil, value)
            case "source": (isRepeated, source) = (source != nil, value)
            case "locale": (isRepeated, locale) = (locale != nil, value)
            default: continue
            }
            if isRepeated { return FieldProblem(key, "appears more than once") }
        }
        return nil
    }

    func event(eventId: String, origin: EventIdOrigin) throws(FieldProblem) -> UserUpdateEvent {
        var occurredAtText: String?
        if let occurredAt {
            guard let text = occurredAt.stringValue, FieldSyntax.isRFC3339Timestamp(text) else {
                throw FieldProblem("occurredAt", "is not an RFC 3339 timestamp")
            }
            occurredAtText = text
        }
        guard let user else { throw FieldProblem("user", "is missing") }
        let state = try UserFields.read(user)
        var device = DeviceSource.unknown
        if let source {
            guard let name = source.stringValue, let known = DeviceSource(rawValue: name) else {
                let names = DeviceSource.allCases.map(\.rawValue).joined(separator: ", ")
                throw FieldProblem("source", "is not one of \(names)")
            }
            device = known
        }
        var localeText: String?
        if let locale {
            guard let text = locale.stringValue, FieldSyntax.isLanguageTag(text) else {
                throw FieldProblem("locale", "is not a BCP 47 language tag")
            }
            localeText = text
        }
        return UserUpdateEvent(
            eventId: eventId, eventIdOrigin: origin, occurredAt: occurredAtText, user: state, source: device,
            locale: localeText)
    }
}

private enum UserFields {
    static func read(_ user: JSONValue) throws(FieldProblem) -> UserState {
        guard let members = user.objectMembers else { throw FieldProblem("user", "is not an object") }
        var objectId: String?
        var ids: [UserId]?
        var datas: [UserDatum]?
        var assertions: [UserAssertion]?
        var password: Secret?
        for (key, value) in members {
            let isRepeated: Bool
            switch key {
            case "objectId": isRepeated = objectId != nil
            case "ids": isRepeated = ids != nil
            case "datas": isRepeated = datas != nil
            case "assertions": isRepeated = assertions != nil
            case "password": isRepeated = password != nil
            default: isRepeated = false
            }
            if isRepeated { throw FieldProblem("user." + key, "appears more than once") }
            switch key {
            case "objectId": objectId = try readObjectId(value)
            case "ids": ids = try readIds(value)
            case "datas": datas = try readDatas(value)
            case "assertions": assertions = try readAssertions(value)
            case "password":
                guard let text = value.stringValue else { throw FieldProblem("user.password", "is not a string") }
                password = Secret(text)
            default:
                throw FieldProblem("user." + ReasonText.fieldName(key), "is not a known field")
            }
        }
        guard let objectId else { throw FieldProblem("user.objectId", "is missing") }
        guard let ids else { throw FieldProblem("user.ids", "is missing") }
        return UserState(
            objectId: objectId, ids: ids, datas: datas ?? [], assertions: assertions ?? [], password: password)
    }

    static func readObjectId(_ value: JSONValue) throws(FieldProblem) -> String {
        guard let text = value.stringValue else { throw FieldProblem("user.objectId", "is not a string") }
        if text.isEmpty { throw FieldProblem("user.objectId", "is empty") }
        if !isAtMost128Characters(text) { throw FieldProblem("user.objectId", "is longer than 128 characters") }
        return text
    }

    // MARK: ids

    // Paths in reasons are built only when a rule fails: local `path` functions keep the
    // valid-event path free of string building.

    static func readIds(_ value: JSONValue) throws(FieldProblem) -> [UserId] {
        guard let members = value.objectMembers else { throw FieldProblem("user.ids", "is not an object") }
        if members.isEmpty { throw FieldProblem("user.ids", "is empty") }
        try requireUniqueNames(members, in: "user.ids")
        var ids: [UserId] = []
        ids.reserveCapacity(members.count)
        for (name, entry) in members {
            func path(_ suffix: String = "") -> String { "user.ids." + ReasonText.fieldName(name) + suffix }
            let id: UserId
            switch entry {
            case .string(let text):
                id = UserId(name: name, value: text)
            case .object(let fields):
                var text: String?
                var confirmed: Bool?
                for (key, field) in fields {
                    switch key {
                    case "value":
                        guard text == nil else { throw FieldProblem(path(".value"), "appears more than once") }
                        guard let string = field.stringValue else {
                            throw FieldProblem(path(".value"), "is not a string")
                        }
                        text = string
                    case "confirmed":
                        guard confirmed == nil else { throw FieldProblem(path(".confirmed"), "appears more than once") }
                        guard let flag = field.boolValue else {
                            throw FieldProblem(path(".confirmed"), "is not a boolean")
                        }
                        confirmed = flag
                    default:
                        throw FieldProblem(path("." + ReasonText.fieldName(key)), "is not a known field")
                    }
                }
                guard let text else { throw FieldProblem(path(".value"), "is missing") }
                id = UserId(name: name, value: text, confirmed: confirmed)
            default:
                throw FieldProblem(path(), "is not a string or an object with a string value")
            }
            // The rule applies to the value however it was given; the reason names where it was.
            func valuePath() -> String { path(entry.objectMembers == nil ? "" : ".value") }
            if name == "email", !FieldSyntax.isEmail(id.value) {
                throw FieldProblem(valuePath(), "is not an email")
            }
            if name == "phone_number", !FieldSyntax.isE164PhoneNumber(id.value) {
                throw FieldProblem(valuePath(), "is not an E.164 phone number")
            }
            ids.append(id)
        }
        return ids
    }

    // MARK: datas

    static func readDatas(_ value: JSONValue) throws(FieldProblem) -> [UserDatum] {
        guard let members = value.objectMembers else { throw FieldProblem("user.datas", "is not an object") }
        try requireUniqueNames(members, in: "user.datas")
        var datas: [UserDatum] = []
        datas.reserveCapacity(members.count)
        for (name, entry) in members {
            func path(_ suffix: String = "") -> String { "user.datas." + ReasonText.fieldName(name) + suffix }
            var scalar = entry
            let isWrapped = entry.objectMembers != nil
            func valuePath() -> String { path(isWrapped ? ".value" : "") }
            if case .object(let fields) = entry {
                var found: JSONValue?
                for (key, field) in fields {
                    guard key == "value" else {
                        throw FieldProblem(path("." + ReasonText.fieldName(key)), "is not a known field")
                    }
                    guard found == nil else { throw FieldProblem(valuePath(), "appears more than once") }
                    found = field
                }
                guard let found else { throw FieldProblem(valuePath(), "is missing") }
                scalar = found
            }
            let datum: UserDatum.Value
            switch scalar {
            case .string(let text) where name == "birthday":
                guard let date = FieldSyntax.calendarDate(text) else {
                    throw FieldProblem(valuePath(), "is not a real date as YYYY-MM-DD or dd/MM/yyyy")
                }
                datum = .date(date)
            case _ where name == "birthday":
                throw FieldProblem(valuePath(), "is not a real date as YYYY-MM-DD or dd/MM/yyyy")
            case .string(let text): datum = .string(text)
            case .number(let text): datum = .number(text)
            case .bool(let flag): datum = .bool(flag)
            default:
                throw FieldProblem(
                    valuePath(),
                    isWrapped
                        ? "is not a string, number or boolean"
                        : "is not a string, number, boolean or an object with a value")
            }
            datas.append(UserDatum(name: name, value: datum))
        }
        return datas
    }

    // MARK: assertions

    static func readAssertions(_ value: JSONValue) throws(FieldProblem) -> [UserAssertion] {
        switch value {
        case .object(let members):
            try requireUniqueNames(members, in: "user.assertions")
            var assertions: [UserAssertion] = []
            assertions.reserveCapacity(members.count)
            for (type, flag) in members {
                let value = try assertionValue(flag, path: "user.assertions." + ReasonText.fieldName(type))
                assertions.append(UserAssertion(type: type, value: value))
            }
            return assertions
        case .array(let elements):
            var assertions: [UserAssertion] = []
            assertions.reserveCapacity(elements.count)
            for (position, element) in elements.enumerated() {
                func path(_ suffix: String = "") -> String { "user.assertions[\(position)]" + suffix }
                guard let fields = element.objectMembers else { throw FieldProblem(path(), "is not an object") }
                var type: String?
                var typology: String?
                var flag: Bool?
                var seen: (type: Bool, typology: Bool, value: Bool) = (false, false, false)
                for (key, field) in fields {
                    switch key {
                    case "type":
                        guard !seen.type else { throw FieldProblem(path(".type"), "appears more than once") }
                        seen.type = true
                        type = try nonEmptyString(field, path: path(".type"))
                    case "typology":
                        guard !seen.typology else { throw FieldProblem(path(".typology"), "appears more than once") }
                        seen.typology = true
                        typology = try nonEmptyString(field, path: path(".typology"))
                    case "value":
                        guard !seen.value else { throw FieldProblem(path(".value"), "appears more than once") }
                        seen.value = true
                        flag = try assertionValue(field, path: path(".value"))
                    default:
                        throw FieldProblem(path("." + ReasonText.fieldName(key)), "is not a known field")
                    }
                }
                guard let type else { throw FieldProblem(path(".type"), "is missing") }
                guard let flag else { throw FieldProblem(path(".value"), "is missing") }
                assertions.append(UserAssertion(type: type, typology: typology, value: flag))
            }
            return assertions
        default:
            throw FieldProblem("user.assertions", "is not an object or an array")
        }
    }

    /// A boolean, or the strings `"true"` / `"false"` some DRUID clients send.
    static func assertionValue(_ value: JSONValue, path: @autoclosure () -> String) throws(FieldProblem) -> Bool {
        switch value {
        case .bool(let flag): return flag
        case .string("true"): return true
        case .string("false"): return false
        default: throw FieldProblem(path(), "is not a boolean")
        }
    }

    static func nonEmptyString(_ value: JSONValue, path: @autoclosure () -> String) throws(FieldProblem) -> String {
        guard let text = value.stringValue else { throw FieldProblem(path(), "is not a string") }
        if text.isEmpty { throw FieldProblem(path(), "is empty") }
        return text
    }

    /// Refuses an object that names the same entry twice: DRUID would receive both and keep
    /// one we cannot predict. Small objects are compared pairwise; large ones use a set.
    static func requireUniqueNames(_ members: [(key: String, value: JSONValue)], in path: String) throws(FieldProblem) {
        if members.count <= 16 {
            for later in members.indices.dropFirst() {
                for earlier in 0..<later where members[earlier].key == members[later].key {
                    throw FieldProblem(path + "." + ReasonText.fieldName(members[later].key), "appears more than once")
                }
            }
        } else {
            var seen = Set<String>(minimumCapacity: members.count)
            for member in members where !seen.insert(member.key).inserted {
                throw FieldProblem(path + "." + ReasonText.fieldName(member.key), "appears more than once")
            }
        }
    }
}
