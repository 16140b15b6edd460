internal import CRabbitMQ

#if canImport(Glibc)
    import Glibc
#endif

/// C memory for the tables and strings of one library call; freed when the arena dies.
///
/// rabbitmq-c reads tables and byte strings only during the call that receives them,
/// so an arena scoped to that call is enough.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit {
        for pointer in allocations { free(pointer) }
    }

    func bytes(_ text: String) -> amqp_bytes_t {
        var copy = text
        return copy.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    func bytes(_ buffer: UnsafeRawBufferPointer) -> amqp_bytes_t {
        guard buffer.count > 0, let memory = malloc(buffer.count) else { return amqp_empty_bytes }
        allocations.append(memory)
        memory.copyMemory(from: buffer.baseAddress!, byteCount: buffer.count)
        return amqp_bytes_t(len: buffer.count, bytes: memory)
    }

    func table(_ table: AMQPTable) -> amqp_table_t {
        guard !table.isEmpty else { return amqp_empty_table }
        let entries = allocate(amqp_table_entry_t.self, count: table.entries.count)
        for (index, entry) in table.entries.enumerated() {
            entries[index] = amqp_table_entry_t(key: bytes(entry.key), value: fieldValue(entry.value))
        }
        return amqp_table_t(num_entries: Int32(table.entries.count), entries: entries)
    }

    /// A `amqp_table_t` that lives as long as the arena, for APIs that take a pointer.
    func tablePointer(_ value: AMQPTable) -> UnsafeMutablePointer<amqp_table_t> {
        let pointer = allocate(amqp_table_t.self, count: 1)
        pointer.pointee = table(value)
        return pointer
    }

    private func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let raw = calloc(count, MemoryLayout<T>.stride)!
        allocations.append(raw)
        return raw.bindMemory(to: T.self, capacity: count)
    }

    private func fieldValue(_ value: AMQPValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        func kind(_ k: amqp_field_value_kind_t) { field.kind = UInt8(k.rawValue) }
        switch value {
        case .bool(let v): kind(AMQP_FIELD_KIND_BOOLEAN); field.value.boolean = v ? 1 : 0
        case .int8(let v): kind(AMQP_FIELD_KIND_I8); field.value.i8 = v
        case .uint8(let v): kind(AMQP_FIELD_KIND_U8); field.value.u8 = v
        case .int16(let v): kind(AMQP_FIELD_KIND_I16); field.value.i16 = v
        case .uint16(let v): kind(AMQP_FIELD_KIND_U16); field.value.u16 = v
        case .int32(let v): kind(AMQP_FIELD_KIND_I32); field.value.i32 = v
        case .uint32(let v): kind(AMQP_FIELD_KIND_U32); field.value.u32 = v
        case .int64(let v): kind(AMQP_FIELD_KIND_I64); field.value.i64 = v
        case .uint64(let v): kind(AMQP_FIELD_KIND_U64); field.value.u64 = v
        case .float(let v): kind(AMQP_FIELD_KIND_F32); field.value.f32 = v
        case .double(let v): kind(AMQP_FIELD_KIND_F64); field.value.f64 = v
        case .decimal(let decimals, let v):
            kind(AMQP_FIELD_KIND_DECIMAL)
            field.value.decimal = amqp_decimal_t(decimals: decimals, value: v)
        case .string(let v): kind(AMQP_FIELD_KIND_UTF8); field.value.bytes = bytes(v)
        case .bytes(let v):
            kind(AMQP_FIELD_KIND_BYTES)
            field.value.bytes = v.withUnsafeBytes { bytes($0) }
        case .array(let values):
            kind(AMQP_FIELD_KIND_ARRAY)
            let entries = allocate(amqp_field_value_t.self, count: max(values.count, 1))
            for (index, element) in values.enumerated() { entries[index] = fieldValue(element) }
            field.value.array = amqp_array_t(num_entries: Int32(values.count), entries: entries)
        case .timestamp(let v): kind(AMQP_FIELD_KIND_TIMESTAMP); field.value.u64 = v
        case .table(let nested): kind(AMQP_FIELD_KIND_TABLE); field.value.table = table(nested)
        case .void: kind(AMQP_FIELD_KIND_VOID)
        }
        return field
    }
}

/// Conversions from the library's structures into Swift values (copies, never views).
enum CValues {
    static func string(_ bytes: amqp_bytes_t) -> String {
        guard bytes.len > 0, let base = bytes.bytes else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }

    static func byteArray(_ bytes: amqp_bytes_t) -> [UInt8] {
        guard bytes.len > 0, let base = bytes.bytes else { return [] }
        return [UInt8](UnsafeRawBufferPointer(start: base, count: bytes.len))
    }

    static func table(_ table: amqp_table_t) -> AMQPTable {
        var result = AMQPTable()
        guard table.num_entries > 0, let entries = table.entries else { return result }
        result.entries.reserveCapacity(Int(table.num_entries))
        for index in 0..<Int(table.num_entries) {
            let entry = entries[index]
            result.entries.append((key: string(entry.key), value: value(entry.value)))
        }
        return result
    }

    static func value(_ field: amqp_field_value_t) -> AMQPValue {
        switch UInt32(field.kind) {
        case AMQP_FIELD_KIND_BOOLEAN.rawValue: return .bool(field.value.boolean != 0)
        case AMQP_FIELD_KIND_I8.rawValue: return .int8(field.value.i8)
        case AMQP_FIELD_KIND_U8.rawValue: return .uint8(field.value.u8)
        case AMQP_FIELD_KIND_I16.rawValue: return .int16(field.value.i16)
        case AMQP_FIELD_KIND_U16.rawValue: return .uint16(field.value.u16)
        case AMQP_FIELD_KIND_I32.rawValue: return .int32(field.value.i32)
        case AMQP_FIELD_KIND_U32.rawValue: return .uint32(field.value.u32)
        case AMQP_FIELD_KIND_I64.rawValue: return .int64(field.value.i64)
        case AMQP_FIELD_KIND_U64.rawValue: return .uint64(field.value.u64)
        case AMQP_FIELD_KIND_F32.rawValue: return .float(field.value.f32)
        case AMQP_FIELD_KIND_F64.rawValue: return .double(field.value.f64)
        case AMQP_FIELD_KIND_DECIMAL.rawValue:
            return .decimal(decimals: field.value.decimal.decimals, value: field.value.decimal.value)
        case AMQP_FIELD_KIND_UTF8.rawValue:
            let raw = byteArray(field.value.bytes)
            if let text = String(validating: raw, as: UTF8.self) { return .string(text) }
            return .bytes(raw)
        case AMQP_FIELD_KIND_BYTES.rawValue: return .bytes(byteArray(field.value.bytes))
        case AMQP_FIELD_KIND_ARRAY.rawValue:
            let array = field.value.array
            guard array.num_entries > 0, let entries = array.entries else { return .array([]) }
            return .array((0..<Int(array.num_entries)).map { value(entries[$0]) })
        case AMQP_FIELD_KIND_TIMESTAMP.rawValue: return .timestamp(field.value.u64)
        case AMQP_FIELD_KIND_TABLE.rawValue: return .table(table(field.value.table))
        default: return .void
        }
    }

    static func properties(_ p: amqp_basic_properties_t) -> MessageProperties {
        var result = MessageProperties()
        let flags = p._flags
        func has(_ flag: Int32) -> Bool { flags & amqp_flags_t(flag) != 0 }
        if has(AMQP_BASIC_CONTENT_TYPE_FLAG) { result.contentType = string(p.content_type) }
        if has(AMQP_BASIC_CONTENT_ENCODING_FLAG) { result.contentEncoding = string(p.content_encoding) }
        if has(AMQP_BASIC_HEADERS_FLAG) { result.headers = table(p.headers) }
        if has(AMQP_BASIC_DELIVERY_MODE_FLAG) { result.deliveryMode = p.delivery_mode }
        if has(AMQP_BASIC_PRIORITY_FLAG) { result.priority = p.priority }
        if has(AMQP_BASIC_CORRELATION_ID_FLAG) { result.correlationId = string(p.correlation_id) }
        if has(AMQP_BASIC_REPLY_TO_FLAG) { result.replyTo = string(p.reply_to) }
        if has(AMQP_BASIC_EXPIRATION_FLAG) { result.expiration = string(p.expiration) }
        if has(AMQP_BASIC_MESSAGE_ID_FLAG) { result.messageId = string(p.message_id) }
        if has(AMQP_BASIC_TIMESTAMP_FLAG) { result.timestamp = p.timestamp }
        if has(AMQP_BASIC_TYPE_FLAG) { result.type = string(p.type) }
        if has(AMQP_BASIC_USER_ID_FLAG) { result.userId = string(p.user_id) }
        if has(AMQP_BASIC_APP_ID_FLAG) { result.appId = string(p.app_id) }
        if has(AMQP_BASIC_CLUSTER_ID_FLAG) { result.clusterId = string(p.cluster_id) }
        return result
    }
}

extension CArena {
    func properties(_ value: MessageProperties) -> amqp_basic_properties_t {
        var p = amqp_basic_properties_t()
        var flags: Int32 = 0
        if let v = value.contentType { p.content_type = bytes(v); flags |= AMQP_BASIC_CONTENT_TYPE_FLAG }
        if let v = value.contentEncoding {
            p.content_encoding = bytes(v)
            flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG
        }
        if let v = value.headers { p.headers = table(v); flags |= AMQP_BASIC_HEADERS_FLAG }
        if let v = value.deliveryMode { p.delivery_mode = v; flags |= AMQP_BASIC_DELIVERY_MODE_FLAG }
        if let v = value.priority { p.priority = v; flags |= AMQP_BASIC_PRIORITY_FLAG }
        if let v = value.correlationId { p.correlation_id = bytes(v); flags |= AMQP_BASIC_CORRELATION_ID_FLAG }
        if let v = value.replyTo { p.reply_to = bytes(v); flags |= AMQP_BASIC_REPLY_TO_FLAG }
        if let v = value.expiration { p.expiration = bytes(v); flags |= AMQP_BASIC_EXPIRATION_FLAG }
        if let v = value.messageId { p.message_id = bytes(v); flags |= AMQP_BASIC_MESSAGE_ID_FLAG }
        if let v = value.timestamp { p.timestamp = v; flags |= AMQP_BASIC_TIMESTAMP_FLAG }
        if let v = value.type { p.type = bytes(v); flags |= AMQP_BASIC_TYPE_FLAG }
        if let v = value.userId { p.user_id = bytes(v); flags |= AMQP_BASIC_USER_ID_FLAG }
        if let v = value.appId { p.app_id = bytes(v); flags |= AMQP_BASIC_APP_ID_FLAG }
        if let v = value.clusterId { p.cluster_id = bytes(v); flags |= AMQP_BASIC_CLUSTER_ID_FLAG }
        p._flags = amqp_flags_t(flags)
        return p
    }
}
