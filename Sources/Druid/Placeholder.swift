internal import COpenSSL
func sslVersion() -> String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }
