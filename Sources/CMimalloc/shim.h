#ifndef DRUID_SYNC_CMIMALLOC_SHIM_H
#define DRUID_SYNC_CMIMALLOC_SHIM_H

// mimalloc (Debian's libmimalloc2.0) is the process's allocator when the executable lists
// it before libc among its libraries: the dynamic linker then binds every malloc and free,
// libcurl's and librabbitmq's included, to mimalloc's. This header only lets the program
// check that this is so.
#include <mimalloc.h>
#include <stdbool.h>
#include <stdlib.h>

/// True when `malloc` returns memory from mimalloc's heap, that is when mimalloc serves the
/// standard allocation functions (false under a sanitizer, which brings its own).
static inline bool druid_malloc_is_mimalloc(void) {
    void *probe = malloc(64);
    bool inHeap = probe != NULL && mi_is_in_heap_region(probe);
    free(probe);
    return inHeap;
}

#endif
