internal import CCurl
func curlVersion() -> String { String(cString: curl_version()) }
