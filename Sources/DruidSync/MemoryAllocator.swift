internal import CMimalloc

/// Which allocator serves `malloc` in this process, for `--version` and the start-up log.
///
/// druid-sync links mimalloc so that it replaces glibc's malloc process-wide; this says
/// whether it did (it does not under a sanitizer, which brings its own allocator).
public enum MemoryAllocator {
    /// True when `malloc` hands out mimalloc's memory.
    public static var isMimallocInUse: Bool { druid_malloc_is_mimalloc() }

    /// The linked mimalloc's version, e.g. `2.0.9`.
    public static var mimallocVersion: String {
        let packed = Int(mi_version())  // major, then one digit each for minor and patch
        return "\(packed / 100).\(packed / 10 % 10).\(packed % 10)"
    }

    /// E.g. `mimalloc 2.0.9`, or what serves `malloc` instead.
    public static var description: String {
        isMimallocInUse
            ? "mimalloc \(mimallocVersion)" : "the C library's malloc (mimalloc \(mimallocVersion) linked, not in use)"
    }
}
