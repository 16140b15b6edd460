#ifndef DRUID_SYNC_CCURL_SHIM_H
#define DRUID_SYNC_CCURL_SHIM_H

#include <curl/curl.h>

// curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt are variadic; Swift cannot
// call them. One non-variadic wrapper per argument type.
static inline CURLcode druid_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode druid_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode druid_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode druid_curl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
typedef size_t (*druid_curl_data_callback)(char *, size_t, size_t, void *);
static inline CURLcode druid_curl_easy_setopt_data_callback(CURL *handle, CURLoption option, druid_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode druid_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode druid_curl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode druid_curl_easy_getinfo_double(CURL *handle, CURLINFO info, double *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLMcode druid_curl_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}

// CURL_GLOBAL_DEFAULT is a macro expression Swift does not import.
static inline CURLcode druid_curl_global_init_default(void) {
    return curl_global_init(CURL_GLOBAL_DEFAULT);
}

// --- Driving libcurl with epoll (the multi_socket API) ---------------------------------
//
// libcurl says which sockets to watch through the socket callback and when to call it
// back through the timer callback. Both are plain C here, so no Swift closure runs inside
// libcurl: they only update the epoll set and the deadline that the I/O loop reads.

#include <errno.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <time.h>

typedef struct {
    int epoll_fd;
    /// CLOCK_MONOTONIC nanoseconds at which libcurl wants `druid_curl_socket_timeout`; -1: none.
    long long deadline_ns;
    /// Per descriptor below `state_capacity`: 0 not in the epoll set, 1 watched, 2 parked
    /// (still in the set, no events asked). A kept-alive connection goes idle and back to
    /// work once per request; parking it saves an EPOLL_CTL_DEL and an EPOLL_CTL_ADD each time.
    unsigned char *states;
    int state_capacity;
} druid_curl_loop;

enum { DRUID_FD_UNWATCHED = 0, DRUID_FD_WATCHED = 1, DRUID_FD_PARKED = 2 };

static inline long long druid_monotonic_ns(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

static inline int druid_curl_socket_callback(CURL *easy, curl_socket_t socket, int what, void *userp, void *socketp) {
    (void)easy;
    (void)socketp;
    druid_curl_loop *loop = (druid_curl_loop *)userp;
    int tracked = socket >= 0 && socket < loop->state_capacity;
    struct epoll_event event;
    event.data.u64 = 0;
    event.data.fd = socket;
    if (what == CURL_POLL_REMOVE) {
        if (tracked && loop->states[socket] == DRUID_FD_WATCHED) {
            // Park: keep the registration, ask for nothing. If libcurl closes the socket,
            // the kernel drops it from the set by itself.
            event.events = 0;
            loop->states[socket] = epoll_ctl(loop->epoll_fd, EPOLL_CTL_MOD, socket, &event) == 0
                ? DRUID_FD_PARKED : DRUID_FD_UNWATCHED;
        } else if (!tracked) {
            // Fails harmlessly when libcurl already closed the socket.
            epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, socket, NULL);
        }
        return 0;
    }
    event.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    // A parked entry may be stale (its socket closed, the number reused): MOD then fails
    // with ENOENT and the socket is added afresh.
    int first = (tracked && loop->states[socket] == DRUID_FD_UNWATCHED) ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(loop->epoll_fd, first, socket, &event) != 0) {
        int second = first == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if ((errno != EEXIST && errno != ENOENT) || epoll_ctl(loop->epoll_fd, second, socket, &event) != 0) {
            if (tracked) loop->states[socket] = DRUID_FD_UNWATCHED;
            return -1;
        }
    }
    if (tracked) loop->states[socket] = DRUID_FD_WATCHED;
    return 0;
}

static inline int druid_curl_timer_callback(CURLM *multi, long timeout_ms, void *userp) {
    (void)multi;
    druid_curl_loop *loop = (druid_curl_loop *)userp;
    loop->deadline_ns = timeout_ms < 0 ? -1 : druid_monotonic_ns() + (long long)timeout_ms * 1000000LL;
    return 0;
}

/// Hands the multi handle's socket and timer callbacks to `loop`.
static inline CURLMcode druid_curl_multi_use_loop(CURLM *multi, druid_curl_loop *loop) {
    CURLMcode code = curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, druid_curl_socket_callback);
    if (code == CURLM_OK) code = curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, (void *)loop);
    if (code == CURLM_OK) code = curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, druid_curl_timer_callback);
    if (code == CURLM_OK) code = curl_multi_setopt(multi, CURLMOPT_TIMERDATA, (void *)loop);
    return code;
}

/// Registers a descriptor of our own (the wake-up eventfd) for reading.
static inline int druid_epoll_add_readable(int epoll_fd, int fd) {
    struct epoll_event event;
    event.events = EPOLLIN;
    event.data.u64 = 0;
    event.data.fd = fd;
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

/// `epoll_wait` into two plain arrays (the kernel's struct is packed, which Swift does not
/// import well): the descriptor and libcurl's `CURL_CSELECT_*` mask for each ready one.
static inline int druid_epoll_wait(druid_curl_loop *loop, int *fds, int *masks, int capacity, int timeout_ms) {
    struct epoll_event events[128];
    if (capacity > 128) capacity = 128;
    int count = epoll_wait(loop->epoll_fd, events, capacity, timeout_ms);
    int kept = 0;
    for (int index = 0; index < count; index++) {
        unsigned int ready = events[index].events;
        int fd = events[index].data.fd;
        if (fd >= 0 && fd < loop->state_capacity && loop->states[fd] == DRUID_FD_PARKED) {
            // An error or hang-up on a parked socket (reported whatever was asked): not
            // libcurl's business until it uses the connection again; stop watching it.
            epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
            loop->states[fd] = DRUID_FD_UNWATCHED;
            continue;
        }
        fds[kept] = fd;
        masks[kept] = ((ready & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) ? CURL_CSELECT_IN : 0)
            | ((ready & EPOLLOUT) ? CURL_CSELECT_OUT : 0) | ((ready & EPOLLERR) ? CURL_CSELECT_ERR : 0);
        kept++;
    }
    return count < 0 ? count : kept;
}

/// A non-blocking eventfd for waking the I/O loop; -1 on failure.
static inline int druid_wakeup_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

static inline void druid_eventfd_signal(int fd) {
    unsigned long long one = 1;
    ssize_t written = write(fd, &one, sizeof one);
    (void)written;  // EAGAIN only when the counter is full, and then a wake-up is pending anyway
}

static inline void druid_eventfd_drain(int fd) {
    unsigned long long value;
    ssize_t got = read(fd, &value, sizeof value);
    (void)got;
}

/// `curl_multi_socket_action` for the timer (`CURL_SOCKET_TIMEOUT` is a macro).
static inline CURLMcode druid_curl_multi_timeout_action(CURLM *multi, int *running) {
    return curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, running);
}

/// Names the calling thread (shown by top -H, gdb, /proc); at most 15 bytes are kept.
static inline void druid_curl_name_thread(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

#endif
