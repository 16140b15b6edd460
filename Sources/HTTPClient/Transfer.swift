internal import CCurl
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// One request from its submission to its completion, with the memory libcurl reads from
/// (body, header list) and the buffers it writes into (response header block and body).
///
/// The caller builds it and hands it to the I/O thread through the engine's mutex (or
/// starts it directly when it is on that thread); after that only the I/O thread touches
/// its mutable state. The C memory is freed in
/// `deinit`, which cannot run before the I/O thread has detached it from its easy handle,
/// because the engine keeps every running transfer alive.
// @unchecked: mutable state is I/O-thread-confined after a mutex hand-over; the cancel flag is atomic.
final class Transfer: @unchecked Sendable {
    enum State {
        case submitted
        case running
        case finished
    }

    let url: String
    let method: HTTPMethod
    let timeoutMilliseconds: Int
    /// One allocation holding the body, then the `curl_slist` nodes and their strings, so
    /// a request costs one `malloc` however many headers it has. libcurl only reads a
    /// header list, so building its nodes ourselves is fine; we free the block, not libcurl.
    private let block: UnsafeMutableRawPointer
    /// The body for `CURLOPT_POSTFIELDS` (inside `block`), or nil when the method sends none.
    let body: UnsafeRawBufferPointer?
    /// The header list for `CURLOPT_HTTPHEADER` (inside `block`); never empty, as it ends
    /// with an empty `Expect:` so libcurl never waits for a `100 Continue`.
    let headerList: UnsafeMutablePointer<curl_slist>
    /// Set by the cancellation handler on any thread; read by the I/O thread.
    let isCancellationRequested = Atomic<Bool>(false)
    /// Called exactly once, on the I/O thread, by ``TransferEngine``; then released.
    var completion: (@Sendable (Result<HTTPResponse, HTTPClientError>) -> Void)?

    // Touched by the I/O thread only.
    var state = State.submitted
    var easy: EasyHandle?
    var runningIndex = 0
    var responseHeaderBlock: [UInt8] = []
    var responseBody: [UInt8] = []
    let maximumBodySize: Int
    var isBodyTooLarge = false

    private static let expectLine: StaticString = "Expect:"
    private static let typicalHeaderBlockSize = 512

    /// Validates the request and copies what libcurl needs into C memory.
    ///
    /// Runs on the calling task, so this work is not done by the single I/O thread.
    init(request: HTTPRequest, maximumBodySize: Int) throws(HTTPClientError) {
        url = request.url
        method = request.method
        timeoutMilliseconds = request.timeout.roundedUpMilliseconds
        self.maximumBodySize = maximumBodySize
        if Transfer.containsNUL(request.url) {
            throw HTTPClientError(code: .invalidURL, detail: "the URL contains a NUL byte")
        }
        let sendsBody = !(request.method == .get && request.body.isEmpty || request.method == .head)
        let bodyCount = sendsBody ? request.body.count : 0
        let nodeStride = MemoryLayout<curl_slist>.stride
        let nodesOffset = (bodyCount + 15) & ~15
        let nodeCount = request.headers.count + 1
        var textCount = Transfer.expectLine.utf8CodeUnitCount + 1
        for (name, value) in request.headers { textCount += name.utf8.count + value.utf8.count + 3 }
        let textOffset = nodesOffset + nodeCount * nodeStride

        block = .allocate(byteCount: textOffset + textCount, alignment: 16)
        if sendsBody {
            let destination = block
            request.body.withUnsafeBytes { source in
                if let base = source.baseAddress { destination.copyMemory(from: base, byteCount: source.count) }
            }
            body = UnsafeRawBufferPointer(start: block, count: bodyCount)
        } else {
            body = nil
        }
        let nodes = (block + nodesOffset).bindMemory(to: curl_slist.self, capacity: nodeCount)
        let text = (block + textOffset).bindMemory(to: UInt8.self, capacity: textCount)
        var written = 0
        var isValid = true
        for (index, header) in request.headers.enumerated() {
            let line = text + written
            isValid =
                Transfer.writeHeaderLine(name: header.name, value: header.value, to: text, at: &written) && isValid
            nodes[index] = curl_slist(
                data: UnsafeMutableRawPointer(line).assumingMemoryBound(to: CChar.self), next: nodes + index + 1)
        }
        let expect = text + written
        expect.update(from: Transfer.expectLine.utf8Start, count: Transfer.expectLine.utf8CodeUnitCount)
        expect[Transfer.expectLine.utf8CodeUnitCount] = 0
        nodes[nodeCount - 1] = curl_slist(
            data: UnsafeMutableRawPointer(expect).assumingMemoryBound(to: CChar.self), next: nil)
        headerList = nodes
        guard isValid else {
            // Fully initialised by now, so `deinit` runs and frees `block`.
            throw HTTPClientError(
                code: .invalidRequest, detail: "a header name or value contains a forbidden character")
        }
    }

    deinit {
        block.deallocate()
    }

    /// Whether `text` holds a NUL byte, with `memchr` over the string's contiguous UTF-8.
    private static func containsNUL(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            guard let base = bytes.baseAddress else { return false }
            return memchr(base, 0, bytes.count) != nil
        }
    }

    /// Writes `name: value` (or libcurl's `name;`, which sends an empty field) and a NUL at
    /// `text + offset`, checking as it copies: false if the name is empty or holds a space,
    /// a control character or `:`, or the value holds CR, LF or NUL.
    private static func writeHeaderLine(
        name: String, value: String, to text: UnsafeMutablePointer<UInt8>, at offset: inout Int
    ) -> Bool {
        let nameStart = offset
        copy(name, to: text, at: &offset)
        var isValid = offset > nameStart
        for index in nameStart..<offset {
            let byte = text[index]
            if byte <= 0x20 || byte == UInt8(ascii: ":") || byte == 0x7F { isValid = false }
        }
        if value.isEmpty {
            text[offset] = UInt8(ascii: ";")
            offset += 1
        } else {
            text[offset] = UInt8(ascii: ":")
            text[offset + 1] = UInt8(ascii: " ")
            offset += 2
            let valueStart = offset
            copy(value, to: text, at: &offset)
            for index in valueStart..<offset {
                let byte = text[index]
                if byte == 0 || byte == 0x0A || byte == 0x0D { isValid = false }
            }
        }
        text[offset] = 0
        offset += 1
        return isValid
    }

    /// Copies the UTF-8 of `string` (in one `memcpy` when it is stored contiguously, as
    /// native strings are).
    @inline(__always)
    private static func copy(_ string: String, to text: UnsafeMutablePointer<UInt8>, at offset: inout Int) {
        let copied: Int? = string.utf8.withContiguousStorageIfAvailable { source in
            (text + offset).update(from: source.baseAddress!, count: source.count)
            return source.count
        }
        if let copied {
            offset += copied
        } else {
            for byte in string.utf8 {
                text[offset] = byte
                offset += 1
            }
        }
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

    /// Keeps one header line as received; ``HTTPResponse`` parses the block on demand, so
    /// the I/O thread does no string work. A status line starts a new block, so only the
    /// final response's fields are kept (not those of a `100 Continue`).
    func receiveHeaderLine(_ line: UnsafeRawBufferPointer) {
        if line.count >= 5, line[0] == UInt8(ascii: "H"), line[1] == UInt8(ascii: "T"),
            line[2] == UInt8(ascii: "T"), line[3] == UInt8(ascii: "P"), line[4] == UInt8(ascii: "/")
        {
            responseHeaderBlock.removeAll(keepingCapacity: true)
            // One allocation for a typical header block instead of a growth step per line
            // (the block's growth was a tenth of the daemon's mallocs).
            responseHeaderBlock.reserveCapacity(Transfer.typicalHeaderBlockSize)
            return
        }
        if line.count <= 2 { return }  // the blank line ending the block
        if let length = Transfer.contentLength(line), length > 0, length <= maximumBodySize {
            responseBody.reserveCapacity(length)
        }
        responseHeaderBlock.append(contentsOf: line)
    }

    /// `content-length:` as bytes: indexing an array is cheap, walking a `String`'s UTF-8
    /// view element by element is not (it was most of the cost of each header line).
    private static let contentLengthName: [UInt8] = Array("content-length:".utf8)

    /// The value of a `Content-Length` line, or nil for any other line.
    private static func contentLength(_ line: UnsafeRawBufferPointer) -> Int? {
        let name = contentLengthName
        guard line.count > name.count, HeaderName.lowercased(line[0]) == name[0] else { return nil }
        for index in 1..<name.count where HeaderName.lowercased(line[index]) != name[index] {
            return nil
        }
        var value = 0
        var sawDigit = false
        for byte in line[name.count...] {
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                guard value < Int.max / 10 - 10 else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                sawDigit = true
            } else if byte != 0x20 && byte != 0x09 && byte != 0x0D && byte != 0x0A {
                return nil
            }
        }
        return sawDigit ? value : nil
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
