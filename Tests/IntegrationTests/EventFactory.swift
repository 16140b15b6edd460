import Foundation

/// Makes varied valid events, and the user state DRUID should hold once each is applied.
struct EventFactory {
    struct Made {
        let body: [UInt8]
        let objectId: String
        let email: String
        let name: String
        let password: String?
    }

    let runId = UInt32.random(in: 0...UInt32.max)

    func objectId(_ index: Int) -> String { "it-user-\(runId)-\(index)" }

    /// The seed users: same objectIds, old e-mail addresses.
    func seedUsers(count: Int) -> [[String: Any]] {
        (0..<count).map { index in
            ["objectId": objectId(index), "ids": ["email": "old-\(runId)-\(index)@example.com"]]
        }
    }

    func event(_ index: Int) -> Made {
        let id = objectId(index)
        let email = "user.\(runId).\(index)@example.com"
        let name = ["Jane", "Jürgen", "Zoë", "Ana María", "O'Brien \"Ob\""][index % 5]
        let password: String? = index % 4 == 0 ? "pw-\(runId)-\(index)-Secr3t" : nil
        var fields: [String] = []
        if index % 3 != 0 { fields.append("\"eventId\":\"evt-\(runId)-\(index)\"") }
        fields.append("\"occurredAt\":\"2026-12-02T10:15:00Z\"")
        var ids: [String] = []
        ids.append(
            index % 2 == 0
                ? "\"email\":{\"value\":\"\(email)\",\"confirmed\":\(index % 4 == 0)}" : "\"email\":\"\(email)\"")
        if index % 5 == 1 { ids.append("\"phone_number\":\"+3460\(String(format: "%07d", index))\"") }
        if index % 7 == 2 { ids.append("\"screen_name\":\"sn\(runId)x\(index)\"") }
        var datas = ["\"name\":\(jsonString(name))"]
        if index % 2 == 1 {
            datas.append("\"birthday\":\"1974-10-\(String(format: "%02d", index % 28 + 1))\"")
        } else if index % 6 == 4 {
            datas.append("\"birthday\":{\"value\":\"0\(index % 9 + 1)/02/1990\"}")
        }
        if index % 3 == 2 { datas.append("\"points\":\(index)") }
        if index % 8 == 5 { datas.append("\"vip\":true") }
        var user = [
            "\"objectId\":\"\(id)\"", "\"ids\":{\(ids.joined(separator: ","))}",
            "\"datas\":{\(datas.joined(separator: ","))}",
        ]
        switch index % 3 {
        case 0: user.append("\"assertions\":{\"terms\":true,\"optin\":\(index % 2 == 0)}")
        case 1: user.append("\"assertions\":[{\"type\":\"terms\",\"typology\":\"user\",\"value\":\"true\"}]")
        default: break
        }
        if let password { user.append("\"password\":\(jsonString(password))") }
        fields.append("\"user\":{\(user.joined(separator: ","))}")
        fields.append("\"source\":\"\(["pc", "mobile", "tablet", "unknown", "itv", "game_console"][index % 6])\"")
        if index % 4 == 1 { fields.append("\"locale\":\"es-ES\"") }
        if index % 10 == 9 { fields.append("\"producerExtra\":{\"ignored\":true}") }
        let text = "{" + fields.joined(separator: ",") + "}"
        return Made(body: Array(text.utf8), objectId: id, email: email, name: name, password: password)
    }

    private func jsonString(_ text: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [text], options: [])
        let array = String(decoding: data, as: UTF8.self)
        return String(array.dropFirst().dropLast())
    }
}
