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
/// Used only on the I/O thread.
final class EasyHandle {
    let raw: UnsafeMutableRawPointer
    /// `CURLOPT_ERRORBUFFER`: libcurl's own message for the last failure.
    private let errorBuffer: UnsafeMutablePointer<CChar>

    init?() {
        guard let raw = curl_easy_init() else { return nil }
        self.raw = raw
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    deinit {
        curl_easy_cleanup(raw)
        errorBuffer.deallocate()
    }

    /// Sets every option of `transfer` on this freshly reset handle; returns the first
    /// failing `CURLcode`, or `CURLE_OK`.
    func configure(for transfer: Transfer, settings: TransferSettings) -> CURLcode {
        var firstFailure = CURLE_OK
        func check(_ code: CURLcode) {
            if firstFailure == CURLE_OK && code != CURLE_OK { firstFailure = code }
        }
        func set(_ option: CURLoption, _ value: Int) {
            check(druid_curl_easy_setopt_long(raw, option, value))
        }
        func set(_ option: CURLoption, _ value: String) {
            check(value.withCString { druid_curl_easy_setopt_string(raw, option, $0) })
        }
        func set(_ option: CURLoption, _ value: UnsafeMutableRawPointer?) {
            check(druid_curl_easy_setopt_pointer(raw, option, value))
        }

        errorBuffer[0] = 0
        let context = Unmanaged.passUnretained(transfer).toOpaque()
        set(CURLOPT_PRIVATE, context)
        set(CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(errorBuffer))
        check(druid_curl_easy_setopt_data_callback(raw, CURLOPT_WRITEFUNCTION, curlWriteCallback))
        set(CURLOPT_WRITEDATA, context)
        check(druid_curl_easy_setopt_data_callback(raw, CURLOPT_HEADERFUNCTION, curlHeaderCallback))
        set(CURLOPT_HEADERDATA, context)

        set(CURLOPT_URL, transfer.url)
        set(CURLOPT_PROTOCOLS_STR, "http,https")
        set(CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
        set(CURLOPT_NOSIGNAL, 1)
        set(CURLOPT_TCP_NODELAY, 1)
        set(CURLOPT_TCP_KEEPALIVE, 1)
        set(CURLOPT_TCP_KEEPIDLE, settings.tcpKeepAliveIdleSeconds)
        set(CURLOPT_TCP_KEEPINTVL, max(1, settings.tcpKeepAliveIdleSeconds / 2))
        set(CURLOPT_CONNECTTIMEOUT_MS, settings.connectTimeoutMilliseconds)
        set(CURLOPT_TIMEOUT_MS, max(1, transfer.timeoutMilliseconds))

        set(CURLOPT_SSL_VERIFYPEER, 1)
        set(CURLOPT_SSL_VERIFYHOST, 2)
        set(CURLOPT_SSLVERSION, Int(CURL_SSLVERSION_TLSv1_2))
        if let file = settings.certificateAuthorityFile { set(CURLOPT_CAINFO, file) }
        if let agent = settings.userAgent { set(CURLOPT_USERAGENT, agent) }

        // An explicit proxy, or none: never one picked up from the environment (which would
        // also cost a getenv per request).
        set(CURLOPT_PROXY, settings.proxyURL ?? "")
        set(CURLOPT_HTTPHEADER, UnsafeMutableRawPointer(transfer.headerList))
        if transfer.method == .head {
            set(CURLOPT_NOBODY, 1)
        } else if let body = transfer.body {
            check(druid_curl_easy_setopt_off_t(raw, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
            set(CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: body.baseAddress))
            if transfer.method != .post { set(CURLOPT_CUSTOMREQUEST, transfer.method.rawValue) }
        } else if transfer.method != .get {
            set(CURLOPT_CUSTOMREQUEST, transfer.method.rawValue)
        }
        return firstFailure
    }

    /// Forgets every option, so no pointer into a finished transfer survives; keeps the
    /// connection cache, DNS cache and TLS session ids (`curl_easy_reset`).
    func reset() {
        curl_easy_reset(raw)
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
