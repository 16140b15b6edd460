import Testing
import UserUpdates

/// The example event of event-schema.md section 1, byte for byte.
let sectionOneExample = #"""
    {
      "eventId": "6f1c2d0e-8c1b-4a55-9a7e-3f0d2b8e1c44",
      "occurredAt": "2026-12-02T10:15:00Z",
      "user": {
        "objectId": "f385e71af90e7e644b4bead7ffe7380974457de9",
        "ids": {
          "email": { "value": "jane@example.com", "confirmed": true },
          "phone_number": "+34600111222",
          "screen_name": "janed"
        },
        "datas": { "name": "Jane", "surname": "Doe", "birthday": "1974-10-22", "country": "ES" },
        "assertions": { "terms": true, "optin": false },
        "password": "only-when-it-changes"
      },
      "source": "pc",
      "locale": "es-ES"
    }
    """#

/// The activity of event-schema.md section 3 for the example, with client id `druid-sync-demo`.
let sectionThreeExample = #"""
    {
      "actor":  { "id": "druid-sync-demo", "objectType": "application" },
      "verb":   "update",
      "object": {
        "objectType": "user",
        "objectId": "f385e71af90e7e644b4bead7ffe7380974457de9",
        "password": "only-when-it-changes",
        "ids": {
          "email":        { "objectType": "user_id", "value": "jane@example.com", "confirmed": true },
          "phone_number": { "objectType": "user_id", "value": "+34600111222" },
          "screen_name":  { "objectType": "user_id", "value": "janed" }
        },
        "datas": {
          "name":     { "objectType": "user_data", "value": "Jane" },
          "surname":  { "objectType": "user_data", "value": "Doe" },
          "birthday": { "objectType": "user_data", "value": "22/10/1974" },
          "country":  { "objectType": "user_data", "value": "ES" }
        },
        "assertions": {
          "objectType": "assertions",
          "items": [
            { "objectType": "assertion", "type": "terms", "typology": "user", "value": true },
            { "objectType": "assertion", "type": "optin", "typology": "user", "value": false }
          ],
          "totalItems": 2
        }
      },
      "source": { "id": "pc", "objectType": "device" }
    }
    """#

/// A digest stand-in that is easy to recognise in expectations.
let fakeDigest: @Sendable ([UInt8]) -> String = { body in "sha256-of-\(body.count)-bytes" }

let testDecoder = EventDecoder(digest: fakeDigest)

/// Decodes `json` as a body with no AMQP properties.
func decode(
    _ json: String, contentType: String? = nil, messageId: String? = nil
) -> Result<
    UserUpdateEvent, InvalidEvent
> {
    testDecoder.decode(body: Array(json.utf8), contentType: contentType, messageId: messageId)
}

/// The reason of a bad message, or nil when `json` is a valid event.
func reason(_ json: String) -> String? {
    if case .failure(let invalid) = decode(json) { return invalid.reason }
    return nil
}

/// An event body with the given `user` members (JSON text, without braces) and top-level extras.
func event(user: String, extra: String = "") -> String {
    #"{"eventId":"e-1","user":{"# + user + "}" + (extra.isEmpty ? "" : "," + extra) + "}"
}

/// A minimal valid `user` with `members` added.
func user(_ members: String = "") -> String {
    #""objectId":"u-1","ids":{"screen_name":"jd"}"# + (members.isEmpty ? "" : "," + members)
}

func parsedJSON(_ bytes: [UInt8]) throws -> JSONValue {
    try JSONParser.parse(bytes)
}

func parsedJSON(_ text: String) throws -> JSONValue {
    try JSONParser.parse(Array(text.utf8))
}

/// Every object's member names, depth first, so that tests compare key order.
func keyPaths(_ value: JSONValue, prefix: String = "") -> [String] {
    switch value {
    case .object(let members):
        return members.flatMap { [prefix + $0.key] + keyPaths($0.value, prefix: prefix + $0.key + ".") }
    case .array(let elements):
        return elements.enumerated().flatMap { keyPaths($1, prefix: prefix + "\($0).") }
    default:
        return []
    }
}
