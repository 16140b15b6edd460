/*
 * The benchmark's ack-only consumer: the broker's limit.
 *
 * It consumes with the same prefetch as the consumer under test and acks every delivery
 * at once, without reading it: no JSON, no HTTP. It uses rabbitmq-c, the library that
 * druid-sync uses, from C, so its own cost is as small as a consumer's can be and the
 * rate it reaches is what the broker (and the loopback) can deliver and take acks for.
 *
 * Build: cc -O2 -o ack-only ack_only_consumer.c -lrabbitmq
 * Run:   ack-only HOST PORT USER PASSWORD VHOST QUEUE PREFETCH [coalesce]
 *
 * With `coalesce` (an experiment, not the benchmark's row) it acks once per batch of
 * deliveries already read, with `multiple` set, instead of once per delivery.
 * Stops on SIGTERM or SIGINT (within 200 ms) and prints how many it acked.
 */
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static volatile sig_atomic_t stopping = 0;

static void on_signal(int number) {
    (void)number;
    stopping = 1;
}

/* Exits with a message when a synchronous AMQP call failed. */
static void check_reply(amqp_rpc_reply_t reply, const char *what) {
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
        fprintf(stderr, "ack-only: %s failed (reply type %d)\n", what, (int)reply.reply_type);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 8 && !(argc == 9 && strcmp(argv[8], "coalesce") == 0)) {
        fprintf(stderr, "usage: %s HOST PORT USER PASSWORD VHOST QUEUE PREFETCH [coalesce]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1], *user = argv[3], *password = argv[4], *vhost = argv[5], *queue = argv[6];
    int port = atoi(argv[2]);
    int prefetch = atoi(argv[7]);
    int coalesce = argc == 9;

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    amqp_connection_state_t connection = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(connection);
    if (socket == NULL || amqp_socket_open(socket, host, port) != AMQP_STATUS_OK) {
        fprintf(stderr, "ack-only: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    check_reply(amqp_login(connection, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, user, password), "login");
    amqp_channel_open(connection, 1);
    check_reply(amqp_get_rpc_reply(connection), "channel.open");
    amqp_basic_qos(connection, 1, 0, (uint16_t)prefetch, 0);
    check_reply(amqp_get_rpc_reply(connection), "basic.qos");
    amqp_basic_consume(connection, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    check_reply(amqp_get_rpc_reply(connection), "basic.consume");
    fprintf(stderr, "ack-only: consuming %s with prefetch %d\n", queue, prefetch);

    long acked = 0;
    struct timeval wait = {0, 200000};
    while (!stopping) {
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(connection);
        amqp_rpc_reply_t reply = amqp_consume_message(connection, &envelope, &wait, 0);
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT) {
            continue;
        }
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
            fprintf(stderr, "ack-only: consume failed (reply type %d, error %d)\n", (int)reply.reply_type,
                    reply.library_error);
            break;
        }
        acked++;
        /* Coalescing: ack (multiple) only when nothing more is already read or buffered. */
        if (coalesce && (amqp_data_in_buffer(connection) || amqp_frames_enqueued(connection))) {
            amqp_destroy_envelope(&envelope);
            continue;
        }
        if (amqp_basic_ack(connection, 1, envelope.delivery_tag, coalesce) != AMQP_STATUS_OK) {
            fprintf(stderr, "ack-only: basic.ack failed\n");
            amqp_destroy_envelope(&envelope);
            break;
        }
        amqp_destroy_envelope(&envelope);
    }
    amqp_channel_close(connection, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(connection, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(connection);
    fprintf(stderr, "ack-only: acked %ld\n", acked);
    return 0;
}
