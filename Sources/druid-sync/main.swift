import DruidSync
import FoundationEssentials

#if canImport(Glibc)
    import Glibc
#endif

// A tiny entry point: everything else lives in DruidSync so tests run the same code.
CommandLineInterface.prepareProcess()
let status = await CommandLineInterface.main(
    arguments: Array(CommandLine.arguments.dropFirst()),
    environment: ProcessInfo.processInfo.environment)
// `_exit`, not `exit`: the I/O threads (broker, libcurl) may still be inside OpenSSL, and
// `exit` would run OpenSSL's clean-up under them. Everything that matters is already
// settled or back in the queue; only stdout needs flushing.
fflush(nil)  // every output stream
_exit(status)
