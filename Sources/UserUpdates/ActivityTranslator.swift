/// The configuration the translation needs (event-schema.md section 3).
public struct TranslationSettings: Sendable, Equatable {
    /// `actor.id`: the application's DRUID client id (`DRUID_SYNC_CLIENT_ID`).
    public var clientId: String
    /// `verb` (`DRUID_SYNC_VERB`, default `update`).
    public var verb: String
    /// The `Accept-Language` sent when the event has no `locale` (`DRUID_SYNC_DEFAULT_LOCALE`).
    public var defaultLocale: String?
    /// The typology of assertions given in object form (`DRUID_SYNC_ASSERTION_TYPOLOGY`, default `user`).
    public var assertionTypology: String

    public init(
        clientId: String, verb: String = "update", defaultLocale: String? = nil, assertionTypology: String = "user"
    ) {
        self.clientId = clientId
        self.verb = verb
        self.defaultLocale = defaultLocale
        self.assertionTypology = assertionTypology
    }
}

/// Turns a checked event into the DRUID update activity (event-schema.md section 3).
///
/// Members are written in the order of the section's example: `actor`, `verb`, `object`
/// (`objectType`, `objectId`, `password`, `ids`, `datas`, `assertions`), `source`; ids,
/// datas and assertions keep the event's order. `datas` is always sent (DRUID replaces the
/// user's datas, so `{}` states "none"); `assertions` is left out when the event has none.
public struct ActivityTranslator: Sendable {
    public let settings: TranslationSettings

    public init(settings: TranslationSettings) {
        self.settings = settings
    }

    /// The activity for `event`: the request body, its redacted twin and the `Accept-Language`.
    public func activity(for event: UserUpdateEvent) -> UpdateActivity {
        let (body, passwordRange) = json(for: event)
        return UpdateActivity(
            body: body, acceptLanguage: event.locale ?? settings.defaultLocale, objectId: event.user.objectId,
            passwordRange: passwordRange)
    }

    /// The activity's JSON, and where the password's string literal (quotes included) sits in it.
    private func json(for event: UserUpdateEvent) -> (body: [UInt8], passwordRange: Range<Int>?) {
        let user = event.user
        var out = JSONWriter(reservingCapacity: 256 + 64 * (user.ids.count + user.datas.count + user.assertions.count))
        out.writeRaw(#"{"actor":{"id":"#)
        out.writeString(settings.clientId)
        out.writeRaw(#","objectType":"application"},"verb":"#)
        out.writeString(settings.verb)
        out.writeRaw(#","object":{"objectType":"user","objectId":"#)
        out.writeString(user.objectId)
        var passwordRange: Range<Int>?
        if let password = user.password {
            out.writeRaw(#","password":"#)
            let start = out.bytes.count
            out.writeString(password.revealed)
            passwordRange = start..<out.bytes.count
        }

        out.writeRaw(#","ids":{"#)
        for (position, id) in user.ids.enumerated() {
            if position > 0 { out.writeByte(UInt8(ascii: ",")) }
            out.writeName(id.name)
            out.writeRaw(#"{"objectType":"user_id","value":"#)
            out.writeString(id.value)
            if let confirmed = id.confirmed {
                out.writeRaw(#","confirmed":"#)
                out.writeBool(confirmed)
            }
            out.writeByte(UInt8(ascii: "}"))
        }

        out.writeRaw(#"},"datas":{"#)
        for (position, datum) in user.datas.enumerated() {
            if position > 0 { out.writeByte(UInt8(ascii: ",")) }
            out.writeName(datum.name)
            out.writeRaw(#"{"objectType":"user_data","value":"#)
            out.writeString(datum.value.druidText)
            out.writeByte(UInt8(ascii: "}"))
        }
        out.writeByte(UInt8(ascii: "}"))

        if !user.assertions.isEmpty {
            out.writeRaw(#","assertions":{"objectType":"assertions","items":["#)
            for (position, assertion) in user.assertions.enumerated() {
                if position > 0 { out.writeByte(UInt8(ascii: ",")) }
                out.writeRaw(#"{"objectType":"assertion","type":"#)
                out.writeString(assertion.type)
                out.writeRaw(#","typology":"#)
                out.writeString(assertion.typology ?? settings.assertionTypology)
                out.writeRaw(#","value":"#)
                out.writeBool(assertion.value)
                out.writeByte(UInt8(ascii: "}"))
            }
            out.writeRaw(#"],"totalItems":"#)
            out.writeInteger(user.assertions.count)
            out.writeByte(UInt8(ascii: "}"))
        }

        out.writeRaw(#"},"source":{"id":"#)
        out.writeString(event.source.rawValue)
        out.writeRaw(#","objectType":"device"}}"#)
        return (out.bytes, passwordRange)
    }
}
