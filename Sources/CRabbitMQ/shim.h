#ifndef DRUID_SYNC_CRABBITMQ_SHIM_H
#define DRUID_SYNC_CRABBITMQ_SHIM_H

// rabbitmq-c 0.11 (Debian bookworm) installs its headers at the top level;
// 0.12 and later moved them under rabbitmq-c/. Accept both.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#include <rabbitmq-c/ssl_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#endif
#include <amqp_framing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <sys/prctl.h>

/// amqp_login_with_properties is variadic; Swift cannot call it. PLAIN takes user and password.
static inline amqp_rpc_reply_t druid_amqp_login_plain(amqp_connection_state_t state,
    char const *vhost, int channel_max, int frame_max, int heartbeat,
    const amqp_table_t *properties, char const *user, char const *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
        properties, AMQP_SASL_METHOD_PLAIN, user, password);
}

/// amqp_login with EXTERNAL (client-certificate) authentication.
static inline amqp_rpc_reply_t druid_amqp_login_external(amqp_connection_state_t state,
    char const *vhost, int channel_max, int frame_max, int heartbeat,
    const amqp_table_t *properties, char const *identity) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat,
        properties, AMQP_SASL_METHOD_EXTERNAL, identity);
}

static inline int druid_amqp_set_socket_int_option(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof(value));
}

/// Names the calling thread (shown by top -H, gdb, /proc); at most 15 bytes are kept.
static inline void druid_set_thread_name(const char *name) {
    prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

#endif
