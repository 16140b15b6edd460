internal import CCurl
import Synchronization

/// One request from its submission to its completion, with the memory libcurl reads from
/// (body, header list) and the buffers it writes into (response headers and body).
///
/// The calling task builds it and hands it to the I/O thread through the engine's mutex;
/// after that only the I/O thread touches its mutable state. The C memory is freed in
/// `deinit`, which cannot run before the I/O thread has detached it from its easy handle,
/// because the engine keeps every running transfer alive.
final class Transfer: @unchecked Sendable {  // mutable state is I/O-thread-confined after a mutex hand-over; the cancel flag is atomic
    enum State {
        case submitted
        case running
        case finished
    }

    let url: String
    let method: HTTPMethod
    let timeoutMilliseconds: Int
    /// The body in C memory for `CURLOPT_POSTFIELDS`, or nil when the method sends none.
    let body: UnsafeMutableRawBufferPointer?
    /// The request header fields for `CURLOPT_HTTPHEADER`.
    let headerList: UnsafeMutablePointer<curl_slist>?
    /// Set by the cancellation handler on any thread; read by the I/O thread.
    let isCancellationRequested = Atomic<Bool>(false)
    /// Resumed exactly once, on the I/O thread, by ``TransferEngine``.
    var continuation: UnsafeContinuation<Result<HTTPResponse, HTTPClientError>, Never>?

    // Touched by the I/O thread only.
    var state = State.submitted
    var easy: EasyHandle?
    var runningIndex = 0
    var responseHeaders: [(name: String, value: String)] = []
    var responseBody: [UInt8] = []
    let maximumBodySize: Int
    var isBodyTooLarge = false

    /// Validates the request and copies what libcurl needs into C memory.
    ///
    /// Runs on the calling task, so this work is not done by the single I/O thread.
    init(request: HTTPRequest, maximumBodySize: Int) throws(HTTPClientError) {
        self.url = request.url
        self.method = request.method
        self.timeoutMilliseconds = request.timeout.roundedUpMilliseconds
        self.maximumBodySize = maximumBodySize
        if request.url.utf8.contains(0) {
            throw HTTPClientError(code: .invalidURL, detail: "the URL contains a NUL byte")
        }
        self.headerList = try Transfer.makeHeaderList(request.headers)
        if request.method == .get && request.body.isEmpty || request.method == .head {
            self.body = nil
        } else {
            // At least one byte, so an empty body still has a valid address: a NULL
            // CURLOPT_POSTFIELDS would make libcurl read the body from a callback instead.
            let buffer = UnsafeMutableRawBufferPointer.allocate(
                byteCount: max(request.body.count, 1), alignment: 1)
            request.body.withUnsafeBytes { source in
                if let base = source.baseAddress { buffer.baseAddress!.copyMemory(from: base, byteCount: source.count) }
            }
            self.body = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<request.body.count])
        }
    }

    deinit {
        body?.deallocate()
        curl_slist_free_all(headerList)
    }

    /// Builds the `name: value` list, plus an empty `Expect:` so libcurl never waits for a
    /// `100 Continue`. Empty values use libcurl's `name;` form, which sends an empty field.
    private static func makeHeaderList(
        _ headers: [(name: String, value: String)]
    ) throws(HTTPClientError) -> UnsafeMutablePointer<curl_slist>? {
        var list: UnsafeMutablePointer<curl_slist>? = nil
        var line: [UInt8] = []
        line.reserveCapacity(128)
        for (name, value) in headers {
            guard isValidName(name), isValidValue(value) else {
                curl_slist_free_all(list)
                throw HTTPClientError(
                    code: .invalidRequest,
                    detail: "a header name or value contains a forbidden character")
            }
            line.removeAll(keepingCapacity: true)
            line.append(contentsOf: name.utf8)
            if value.isEmpty {
                line.append(UInt8(ascii: ";"))
            } else {
                line.append(UInt8(ascii: ":"))
                line.append(UInt8(ascii: " "))
                line.append(contentsOf: value.utf8)
            }
            line.append(0)
            list = try append(line, to: list)
        }
        return try append(Array("Expect:\0".utf8), to: list)
    }

    private static func append(
        _ nulTerminatedLine: [UInt8], to list: UnsafeMutablePointer<curl_slist>?
    ) throws(HTTPClientError) -> UnsafeMutablePointer<curl_slist>? {
        let extended = nulTerminatedLine.withUnsafeBufferPointer { bytes in
            bytes.withMemoryRebound(to: CChar.self) { curl_slist_append(list, $0.baseAddress) }
        }
        guard let extended else {
            curl_slist_free_all(list)
            throw HTTPClientError(code: .other(Int(CURLE_OUT_OF_MEMORY.rawValue)), detail: "out of memory")
        }
        return extended
    }

    private static func isValidName(_ name: String) -> Bool {
        if name.isEmpty { return false }
        for byte in name.utf8 where byte <= 0x20 || byte == UInt8(ascii: ":") || byte == 0x7F {
            return false
        }
        return true
    }

    private static func isValidValue(_ value: String) -> Bool {
        for byte in value.utf8 where byte == 0 || byte == 0x0A || byte == 0x0D {
            return false
        }
        return true
    }

    // MARK: - libcurl callbacks (I/O thread)

    /// Appends a piece of the response body; false aborts the transfer (body too large).
    func receiveBody(_ chunk: UnsafeRawBufferPointer) -> Bool {
        if responseBody.count + chunk.count > maximumBodySize {
            isBodyTooLarge = true
            return false
        }
        responseBody.append(contentsOf: chunk)
        return true
    }

    /// Records one header line. A status line starts a new block, so only the final
    /// response's fields are kept (not those of a `100 Continue`).
    func receiveHeaderLine(_ line: UnsafeRawBufferPointer) {
        if line.count >= 5, line[0] == UInt8(ascii: "H"), line[1] == UInt8(ascii: "T"),
            line[2] == UInt8(ascii: "T"), line[3] == UInt8(ascii: "P"), line[4] == UInt8(ascii: "/")
        {
            responseHeaders.removeAll(keepingCapacity: true)
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0 else { return }
        var valueStart = colon + 1
        var valueEnd = line.count
        while valueStart < valueEnd, Transfer.isWhitespace(line[valueStart]) { valueStart += 1 }
        while valueEnd > valueStart, Transfer.isWhitespace(line[valueEnd - 1]) { valueEnd -= 1 }
        let name = String(unsafeUninitializedCapacity: colon) { target in
            for index in 0..<colon { target[index] = HeaderName.lowercased(line[index]) }
            return colon
        }
        let value = String(decoding: UnsafeRawBufferPointer(rebasing: line[valueStart..<valueEnd]), as: UTF8.self)
        if name == "content-length", let length = Int(value), length > 0, length <= maximumBodySize {
            responseBody.reserveCapacity(length)
        }
        responseHeaders.append((name: name, value: value))
    }

    @inline(__always)
    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }
}

/// `CURLOPT_WRITEFUNCTION`: `userdata` is the unretained ``Transfer``.
func curlWriteCallback(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ userdata: UnsafeMutableRawPointer?
) -> Int {
    let byteCount = size * count
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.receiveBody(UnsafeRawBufferPointer(start: data, count: byteCount)) ? byteCount : 0
}

/// `CURLOPT_HEADERFUNCTION`: called once per header line; `userdata` is the unretained ``Transfer``.
func curlHeaderCallback(
    _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ userdata: UnsafeMutableRawPointer?
) -> Int {
    let byteCount = size * count
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: data, count: byteCount))
    return byteCount
}
