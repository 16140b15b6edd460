import DruidSync
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// A tiny entry point: everything else lives in DruidSync so tests run the same code.
CommandLineInterface.prepareProcess()
let status = await CommandLineInterface.main(
    arguments: Array(CommandLine.arguments.dropFirst()),
    environment: ProcessInfo.processInfo.environment)
exit(status)
