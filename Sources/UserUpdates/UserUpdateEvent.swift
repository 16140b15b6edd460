/// One valid user-update event (event-schema.md section 1), as the decoder accepted it.
///
/// Holds the user's password when the event had one, wrapped in `Secret` so that printing
/// the event cannot reveal it.
public struct UserUpdateEvent: Sendable, Equatable {
    /// The event's id: the body's `eventId`, else the AMQP `message_id`, else the hex
    /// SHA-256 of the body. `eventIdOrigin` says which.
    public var eventId: String
    public var eventIdOrigin: EventIdOrigin
    /// `occurredAt` as the producer wrote it (a checked RFC 3339 timestamp), if present.
    public var occurredAt: String?
    /// The whole state of the user, which DRUID will replace.
    public var user: UserState
    /// The device the change came from; `unknown` when the event did not say.
    public var source: DeviceSource
    /// The event's BCP 47 `locale`, if present.
    public var locale: String?

    public init(
        eventId: String, eventIdOrigin: EventIdOrigin = .body, occurredAt: String? = nil, user: UserState,
        source: DeviceSource = .unknown, locale: String? = nil
    ) {
        self.eventId = eventId
        self.eventIdOrigin = eventIdOrigin
        self.occurredAt = occurredAt
        self.user = user
        self.source = source
        self.locale = locale
    }
}

/// Where an event's id came from.
public enum EventIdOrigin: String, Sendable, Equatable {
    /// The body's `eventId`.
    case body
    /// The AMQP `message_id` property.
    case messageId
    /// The hex SHA-256 of the body, when neither of the above was given.
    case bodyDigest
}

/// The user's whole state as the event gives it: every part is sent to DRUID, which
/// removes whatever is left out.
public struct UserState: Sendable, Equatable {
    /// The DRUID objectId of the user (1 to 128 characters).
    public var objectId: String
    /// The user's ids in the event's order; never empty.
    public var ids: [UserId]
    /// The user's datas in the event's order.
    public var datas: [UserDatum]
    /// The user's assertions in the event's order; empty when the event had none.
    public var assertions: [UserAssertion]
    /// The new password, only when it changes.
    public var password: Secret?

    public init(
        objectId: String, ids: [UserId], datas: [UserDatum] = [], assertions: [UserAssertion] = [],
        password: Secret? = nil
    ) {
        self.objectId = objectId
        self.ids = ids
        self.datas = datas
        self.assertions = assertions
        self.password = password
    }
}

/// One entry of `user.ids`: `email`, `phone_number`, `screen_name`, `national_id`, or any
/// other name, which passes through unchanged.
public struct UserId: Sendable, Equatable {
    public var name: String
    public var value: String
    /// Whether the id is confirmed, only when the event said so.
    public var confirmed: Bool?

    public init(name: String, value: String, confirmed: Bool? = nil) {
        self.name = name
        self.value = value
        self.confirmed = confirmed
    }
}

/// One entry of `user.datas`.
public struct UserDatum: Sendable, Equatable {
    public var name: String
    public var value: Value

    public init(name: String, value: Value) {
        self.name = name
        self.value = value
    }

    /// A datas value as the event typed it.
    public enum Value: Sendable, Equatable {
        case string(String)
        /// A number in its JSON text form, e.g. `42` or `1.5e3`.
        case number(String)
        case bool(Bool)
        /// A checked date: the `birthday` data.
        case date(CalendarDate)

        /// The text DRUID receives: strings as they are, numbers and booleans in their JSON
        /// text form, dates as `dd/MM/yyyy`.
        public var druidText: String {
            switch self {
            case .string(let text), .number(let text): text
            case .bool(let flag): flag ? "true" : "false"
            case .date(let date): date.druidText
            }
        }
    }
}

/// One assertion (a consent such as `terms` or `optin`).
public struct UserAssertion: Sendable, Equatable {
    public var type: String
    /// The typology the event named (array form only); nil means the configured one
    /// (`DRUID_SYNC_ASSERTION_TYPOLOGY`), which the translator fills in.
    public var typology: String?
    public var value: Bool

    public init(type: String, typology: String? = nil, value: Bool) {
        self.type = type
        self.typology = typology
        self.value = value
    }
}

/// The device a change came from, as DRUID names it in `source.id`.
public enum DeviceSource: String, Sendable, Equatable, CaseIterable {
    case unknown
    case pc
    case mobile
    case tablet
    case gameConsole = "game_console"
    case itv
}
