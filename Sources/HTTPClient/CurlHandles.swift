internal import CCurl

/// Settings applied to every request, derived once from ``HTTPClientConfiguration``.
struct TransferSettings: Sendable {
    let connectTimeoutMilliseconds: Int
    let tcpKeepAliveIdleSeconds: Int
    let certificateAuthorityFile: String?
    let userAgent: String?
    let proxyURL: String?
    let maximumResponseBodySize: Int

    init(_ configuration: HTTPClientConfiguration) {
        connectTimeoutMilliseconds = max(1, configuration.connectTimeout.roundedUpMilliseconds)
        tcpKeepAliveIdleSeconds = max(1, configuration.tcpKeepAliveIdle.roundedUpMilliseconds / 1000)
        certificateAuthorityFile = configuration.certificateAuthorityFile
        userAgent = configuration.userAgent
        proxyURL = configuration.proxyURL
        maximumResponseBodySize = max(0, configuration.maximumResponseBodySize)
    }
}

/// Initialises libcurl once per process, before the first handle (`curl_global_init`).
enum CurlLibrary {
    /// The `CURLcode` of `curl_global_init`; Swift runs this initialiser exactly once.
    static let initialization: CURLcode = druid_curl_global_init_default()
}

/// Owns one libcurl easy handle, which the engine reuses request after request
/// (`curl_easy_init`, `curl_easy_cleanup`).
///
/// The options every request shares are set once, when the handle is made; a request
/// sets only its own (URL, headers, body, method, timeout, callbacks' context), each of
/// them every time, so nothing of the previous request carries over.
///
/// Used only on the I/O thread.
final class EasyHandle {
    let raw: UnsafeMutableRawPointer
    /// `CURLOPT_ERRORBUFFER`: libcurl's own message for the last failure.
    private let errorBuffer: UnsafeMutablePointer<CChar>
    /// The first option that failed when the shared ones were set (`CURLE_OK`: none).
    private var sharedOptionsResult = CURLE_OK
    /// The request's URL, parsed by us and handed over with `CURLOPT_CURLU` (nil if
    /// `curl_url` failed). libcurl 7.88 otherwise parses `CURLOPT_URL` and then rebuilds
    /// the whole URL through its printf engine one character at a time, on every
    /// transfer: a tenth of its instructions per request. Given a parsed handle it uses
    /// (a copy of) that instead; `CURLOPT_URL` is still set to the same text, for the
    /// URL libcurl reports and in case a libcurl ignores the handle.
    private let parsedURL: OpaquePointer?

    init?(settings: TransferSettings) {
        guard let raw = curl_easy_init() else { return nil }
        self.raw = raw
        parsedURL = curl_url()
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
        var options = OptionSetter(raw: raw)
        options.set(CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(errorBuffer))
        options.check(druid_curl_easy_setopt_data_callback(raw, CURLOPT_WRITEFUNCTION, curlWriteCallback))
        options.check(druid_curl_easy_setopt_data_callback(raw, CURLOPT_HEADERFUNCTION, curlHeaderCallback))
        options.set(CURLOPT_PROTOCOLS_STR, "http,https")
        options.set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        options.set(CURLOPT_NOSIGNAL, 1)
        options.set(CURLOPT_TCP_NODELAY, 1)
        options.set(CURLOPT_TCP_KEEPALIVE, 1)
        options.set(CURLOPT_TCP_KEEPIDLE, settings.tcpKeepAliveIdleSeconds)
        options.set(CURLOPT_TCP_KEEPINTVL, max(1, settings.tcpKeepAliveIdleSeconds / 2))
        options.set(CURLOPT_CONNECTTIMEOUT_MS, settings.connectTimeoutMilliseconds)
        options.set(CURLOPT_SSL_VERIFYPEER, 1)
        options.set(CURLOPT_SSL_VERIFYHOST, 2)
        options.set(CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2))
        if let file = settings.certificateAuthorityFile { options.set(CURLOPT_CAINFO, file) }
        if let agent = settings.userAgent { options.set(CURLOPT_USERAGENT, agent) }
        // An explicit proxy, or none: never one picked up from the environment (which would
        // also cost a getenv per request).
        options.set(CURLOPT_PROXY, settings.proxyURL ?? "")
        sharedOptionsResult = options.firstFailure
    }

    deinit {
        curl_easy_cleanup(raw)
        if let parsedURL { curl_url_cleanup(parsedURL) }
        errorBuffer.deallocate()
    }

    /// Sets the options of `transfer`; returns the first failing `CURLcode` (of these or
    /// of the shared options), or `CURLE_OK`.
    func configure(for transfer: Transfer) -> CURLcode {
        var options = OptionSetter(raw: raw)
        options.check(sharedOptionsResult)
        errorBuffer[0] = 0
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        options.set(CURLOPT_PRIVATE, context)
        options.set(CURLOPT_WRITEDATA, context)
        options.set(CURLOPT_HEADERDATA, context)
        options.set(CURLOPT_URL, transfer.url)
        // A URL our parse refuses goes to libcurl alone, which reports the problem itself.
        // NON_SUPPORT_SCHEME: a scheme outside http and https is refused by
        // CURLOPT_PROTOCOLS_STR with libcurl's usual error, as without the handle.
        let isParsed =
            parsedURL.map { handle in
                transfer.url.withCString {
                    curl_url_set(handle, CURLUPART_URL, $0, UInt32(CURLU_NON_SUPPORT_SCHEME)) == CURLUE_OK
                }
            } ?? false
        options.set(CURLOPT_CURLU, isParsed ? UnsafeMutableRawPointer(parsedURL) : nil)
        options.set(CURLOPT_TIMEOUT_MS, max(1, transfer.timeoutMilliseconds))
        options.set(CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(transfer.headerList))
        // The method, from a known state: NOBODY off (it also turns a HEAD back into a GET).
        options.set(CURLOPT_NOBODY, 0)
        var customMethod: String? = nil
        if transfer.method == .head {
            options.set(CURLOPT_HTTPGET, 1)
            options.set(CURLOPT_NOBODY, 1)
        } else if let body = transfer.body {
            options.check(druid_curl_easy_setopt_off_t(raw, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
            options.set(CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: body.baseAddress))
            if transfer.method != .post { customMethod = transfer.method.rawValue }
        } else {
            options.set(CURLOPT_HTTPGET, 1)
            if transfer.method != .get { customMethod = transfer.method.rawValue }
        }
        if let customMethod {
            options.set(CURLOPT_CUSTOMREQUEST, customMethod)
        } else {
            options.check(druid_curl_easy_setopt_string(raw, CURLOPT_CUSTOMREQUEST, nil))
        }
        return options.firstFailure
    }

    /// Clears the options that point into the finished transfer's memory, so an idle
    /// handle holds no dangling pointer; keeps everything else, connections included.
    func detach() {
        for option in [CURLOPT_HTTPHEADER, CURLOPT_POSTFIELDS, CURLOPT_PRIVATE, CURLOPT_WRITEDATA, CURLOPT_HEADERDATA] {
            _ = druid_curl_easy_setopt_pointer(raw, option, nil)
        }
    }

    /// The status code of the response just received (`CURLINFO_RESPONSE_CODE`).
    var responseCode: Int {
        var code = 0
        _ = druid_curl_easy_getinfo_long(raw, CURLINFO_RESPONSE_CODE, &code)
        return code
    }

    /// libcurl's message for the last failure, or its generic text for `code`.
    func failureText(for code: CURLcode) -> String {
        if errorBuffer[0] != 0 { return String(cString: errorBuffer) }
        return String(cString: curl_easy_strerror(code))
    }
}

/// Sets options on one easy handle, remembering the first failure.
private struct OptionSetter {
    let raw: UnsafeMutableRawPointer
    var firstFailure = CURLE_OK

    mutating func check(_ code: CURLcode) {
        if firstFailure == CURLE_OK && code != CURLE_OK { firstFailure = code }
    }

    mutating func set(_ option: CURLoption, _ value: Int) {
        check(druid_curl_easy_setopt_long(raw, option, value))
    }

    mutating func set(_ option: CURLoption, _ value: String) {
        check(value.withCString { druid_curl_easy_setopt_string(raw, option, $0) })
    }

    mutating func set(_ option: CURLoption, _ value: UnsafeMutableRawPointer?) {
        check(druid_curl_easy_setopt_pointer(raw, option, value))
    }
}

/// Owns the libcurl multi handle that drives every transfer and keeps the connection
/// cache (`curl_multi_init`, `curl_multi_cleanup`).
///
/// `curl_multi_wakeup` may be called from any thread while the handle is open; every
/// other call happens on the I/O thread.
final class MultiHandle {
    let raw: UnsafeMutableRawPointer
    private var isClosed = false

    init(maximumIdleConnections: Int, maximumConnectionsPerHost: Int) throws(HTTPClientError) {
        guard CurlLibrary.initialization == CURLE_OK else {
            throw HTTPClientError(
                code: .other(Int(CurlLibrary.initialization.rawValue)), detail: "curl_global_init failed")
        }
        guard let raw = curl_multi_init() else {
            throw HTTPClientError(code: .other(Int(CURLE_OUT_OF_MEMORY.rawValue)), detail: "curl_multi_init failed")
        }
        self.raw = raw
        for (option, value) in [
            (CURLMOPT_MAXCONNECTS, max(1, maximumIdleConnections)),
            (CURLMOPT_MAX_HOST_CONNECTIONS, max(0, maximumConnectionsPerHost)),
        ] {
            let code = druid_curl_multi_setopt_long(raw, option, value)
            guard code == CURLM_OK else {
                curl_multi_cleanup(raw)
                isClosed = true
                throw HTTPClientError(
                    code: .other(Int(code.rawValue)),
                    detail: "curl_multi_setopt: \(String(cString: curl_multi_strerror(code)))")
            }
        }
    }

    /// Closes every cached connection. Call only after every easy handle was removed.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        curl_multi_cleanup(raw)
    }

    deinit { close() }
}
