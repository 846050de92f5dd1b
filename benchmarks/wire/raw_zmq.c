/* Raw libzmq + protobuf-c baseline for benchmarks/wire (compiled by run.sh with cc -O2).
 * Measures exactly what the Swift benchmark (swift/main.swift) measures, without Swift:
 *   1. size + pack + unpack + free of the same messages through the protoc-c generated code;
 *   2. a DEALER -> ROUTER -> DEALER echo round trip over tcp://127.0.0.1, an echo thread
 *      owning the ROUTER, both sides zmq_poll then receive, as the Swift layer does.
 * Output lines: "<name> <median> <p99> <unit>", parsed by run.sh. */
#include <zmq.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include "mambaformer.pb-c.h"

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

/* CPU time of the whole process (all threads, libzmq's I/O thread included), in ns:
 * on a loaded host this is steadier than wall-clock latency. */
static double cpu_ns(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e9 + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int quiet;

static void report(const char *name, double *samples, int n, const char *unit, double scale) {
    if (quiet) return;
    qsort(samples, n, sizeof(double), cmp_double);
    printf("%s %.3f %.3f %s\n", name, samples[n / 2] / scale, samples[(int)(n * 0.99)] / scale, unit);
    fflush(stdout);
}

/* ---- codec ---- */

static char prompt[1025];

static void codec_bench(const char *name, ProtobufCMessage *msg) {
    enum { BATCH = 1000, ROUNDS = 200 };
    if (quiet) return;
    double samples[ROUNDS];
    uint8_t *buf = malloc(protobuf_c_message_get_packed_size(msg));
    for (int r = 0; r < ROUNDS; r++) {
        double t0 = now_ns();
        for (int i = 0; i < BATCH; i++) {
            size_t n = protobuf_c_message_get_packed_size(msg);   /* a sender needs the size too */
            n = protobuf_c_message_pack(msg, buf);
            Mambaformer__Wire__Envelope *e = mambaformer__wire__envelope__unpack(NULL, n, buf);
            if (!e) { fprintf(stderr, "unpack failed\n"); exit(1); }
            mambaformer__wire__envelope__free_unpacked(e, NULL);
        }
        samples[r] = (now_ns() - t0) / BATCH;
    }
    free(buf);
    report(name, samples, ROUNDS, "ns", 1);
}

static Mambaformer__Wire__Envelope span_result_env;   /* set up by codec_benches */

static void codec_benches(void) {
    memset(prompt, 'p', 1024);
    Mambaformer__Wire__Sampling sampling;
    mambaformer__wire__sampling__init(&sampling);
    sampling.temperature = 0.7f; sampling.top_p = 0.9f; sampling.top_k = 40; sampling.seed = 42;

    Mambaformer__Wire__Heartbeat hb;
    mambaformer__wire__heartbeat__init(&hb);
    hb.load = 3;
    Mambaformer__Wire__Envelope env;
    mambaformer__wire__envelope__init(&env);
    env.version = 1000;
    env.body_case = MAMBAFORMER__WIRE__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    codec_bench("codec_heartbeat", &env.base);

    Mambaformer__Wire__SpanRequest req;
    mambaformer__wire__span_request__init(&req);
    req.request_id = "req-0000000042"; req.span_index = 3; req.prompt = prompt;
    req.answer_so_far = "Aspirin irreversibly inhibits cyclooxygenase, which"; req.max_new_tokens = 16;
    req.sampling = &sampling; req.deadline_unix_ms = 1800000000000ULL; req.session_hint = "req-0000000042";
    req.answer_tokens_before = 48;
    env.body_case = MAMBAFORMER__WIRE__ENVELOPE__BODY_SPAN_REQUEST;
    env.span_request = &req;
    codec_bench("codec_span_request_1k", &env.base);

    Mambaformer__Wire__Piece pieces[16], *ptrs[16];
    static char texts[16][16];
    for (int i = 0; i < 16; i++) {
        mambaformer__wire__piece__init(&pieces[i]);
        snprintf(texts[i], sizeof texts[i], " token%d", i);
        pieces[i].text = texts[i]; pieces[i].token_id = 1000 + i; pieces[i].logprob = -0.5f; pieces[i].entropy = 1.25f;
        ptrs[i] = &pieces[i];
    }
    Mambaformer__Wire__SpanResult res;
    mambaformer__wire__span_result__init(&res);
    res.request_id = "req-0000000042"; res.span_index = 3; res.n_pieces = 16; res.pieces = ptrs;
    res.text = " token0 token1 token2 token3 token4 token5 token6 token7 token8 token9 token10 token11 token12 token13 token14 token15";
    res.finish = MAMBAFORMER__WIRE__FINISH_REASON__FINISH_NONE; res.compute_us = 12345; res.cached_prefix_tokens = 200;
    res.prompt_tokens = 230; res.replica_id = "emamba-1"; res.pool = MAMBAFORMER__WIRE__POOL_KIND__POOL_EMAMBA;
    res.gate_score = 0.25f; res.queue_us = 17;
    env.body_case = MAMBAFORMER__WIRE__ENVELOPE__BODY_SPAN_RESULT;
    env.span_result = &res;
    codec_bench("codec_span_result_16", &env.base);
    /* Keep it for the envelope round trip (the pieces live in static storage). */
    static Mambaformer__Wire__Piece keep_pieces[16];
    static Mambaformer__Wire__Piece *keep_ptrs[16];
    static Mambaformer__Wire__SpanResult keep_res;
    memcpy(keep_pieces, pieces, sizeof pieces);
    for (int i = 0; i < 16; i++) keep_ptrs[i] = &keep_pieces[i];
    keep_res = res;
    keep_res.pieces = keep_ptrs;
    span_result_env = env;
    span_result_env.span_result = &keep_res;
}

/* Pack an envelope straight into a zmq message (what the Swift layer does too). */
static void send_envelope(void *socket, const ProtobufCMessage *m, int flags) {
    zmq_msg_t msg;
    size_t size = protobuf_c_message_get_packed_size(m);
    zmq_msg_init_size(&msg, size);
    protobuf_c_message_pack(m, zmq_msg_data(&msg));
    zmq_msg_send(&msg, socket, flags);
}

/* Full stack echo: decode the envelope, re-encode it, send it back. */
static void *echo_envelope(void *router) {
    zmq_pollitem_t item = { router, 0, ZMQ_POLLIN, 0 };
    for (;;) {
        if (zmq_poll(&item, 1, -1) < 0) return NULL;
        zmq_msg_t id, payload;
        zmq_msg_init(&id); zmq_msg_init(&payload);
        if (zmq_msg_recv(&id, router, ZMQ_DONTWAIT) < 0) return NULL;
        zmq_msg_recv(&payload, router, 0);
        Mambaformer__Wire__Envelope *e = mambaformer__wire__envelope__unpack(
            NULL, zmq_msg_size(&payload), zmq_msg_data(&payload));
        zmq_msg_close(&payload);
        if (!e || e->body_case == MAMBAFORMER__WIRE__ENVELOPE__BODY__NOT_SET) {   /* stop: an empty frame */
            if (e) mambaformer__wire__envelope__free_unpacked(e, NULL);
            zmq_msg_close(&id);
            return NULL;
        }
        zmq_msg_send(&id, router, ZMQ_SNDMORE);
        send_envelope(router, &e->base, 0);
        mambaformer__wire__envelope__free_unpacked(e, NULL);
    }
}

/* ---- round trip ---- */

static void *echo(void *router) {
    zmq_pollitem_t item = { router, 0, ZMQ_POLLIN, 0 };
    for (;;) {
        if (zmq_poll(&item, 1, -1) < 0) return NULL;
        zmq_msg_t parts[4];
        int n = 0, more = 1;
        while (more && n < 4) {
            zmq_msg_init(&parts[n]);
            if (zmq_msg_recv(&parts[n], router, ZMQ_DONTWAIT) < 0) return NULL;
            more = zmq_msg_more(&parts[n]);
            n++;
        }
        /* An empty payload is the stop signal. */
        int stop = n == 2 && zmq_msg_size(&parts[1]) == 0;
        for (int i = 0; i < n; i++) zmq_msg_send(&parts[i], router, i < n - 1 ? ZMQ_SNDMORE : 0);
        if (stop) return NULL;
    }
}

static void rtt_bench(void *ctx, size_t size, int rounds, int envelope) {
    void *router = zmq_socket(ctx, ZMQ_ROUTER), *dealer = zmq_socket(ctx, ZMQ_DEALER);
    int mandatory = 1, linger = 200;
    zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory);
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_bind(router, "tcp://127.0.0.1:*");
    char endpoint[256]; size_t len = sizeof endpoint;
    zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &len);
    zmq_connect(dealer, endpoint);
    pthread_t thread;
    pthread_create(&thread, NULL, envelope ? echo_envelope : echo, router);

    char *payload = malloc(size), *back = malloc(size);
    memset(payload, 'x', size);
    double *samples = malloc(sizeof(double) * rounds);
    zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
    double cpu0 = 0;
    for (int i = -rounds / 10; i < rounds; i++) {   /* first 10% warm up */
        if (i == 0) cpu0 = cpu_ns();
        double t0 = now_ns();
        if (envelope) send_envelope(dealer, &span_result_env.base, 0);
        else zmq_send(dealer, payload, size, 0);
        zmq_poll(&item, 1, -1);
        zmq_msg_t m; zmq_msg_init(&m);
        zmq_msg_recv(&m, dealer, ZMQ_DONTWAIT);
        if (envelope) {
            Mambaformer__Wire__Envelope *e = mambaformer__wire__envelope__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
            if (!e) { fprintf(stderr, "bad echo\n"); exit(1); }
            mambaformer__wire__envelope__free_unpacked(e, NULL);
        } else {
            memcpy(back, zmq_msg_data(&m), zmq_msg_size(&m));   /* the Swift layer copies out too */
        }
        zmq_msg_close(&m);
        if (i >= 0) samples[i] = now_ns() - t0;
    }
    double cpu = (cpu_ns() - cpu0) / rounds / 1000;
    zmq_send(dealer, "", 0, 0);
    pthread_join(thread, NULL);
    char name[64];
    if (envelope) snprintf(name, sizeof name, "rtt_envelope_span_result_16");
    else snprintf(name, sizeof name, "rtt_%zu", size);
    report(name, samples, rounds, "us", 1000);
    printf("cpu_per_%s %.3f %.3f us\n", name, cpu, cpu);
    zmq_close(dealer); zmq_close(router);
    free(payload); free(back); free(samples);
}

int main(int argc, char **argv) {
    /* Arguments: [rounds per round-trip size (20000)] [all|codec|rtt|rtt64] */
    int rounds = argc > 1 ? atoi(argv[1]) : 20000;
    const char *mode = argc > 2 ? argv[2] : "all";
    quiet = strncmp(mode, "rtt", 3) == 0;   /* then codec_benches only sets up the messages */
    codec_benches();
    quiet = 0;
    if (strcmp(mode, "codec") == 0) return 0;
    void *ctx = zmq_ctx_new();
    rtt_bench(ctx, 64, rounds, 0);
    if (strcmp(mode, "rtt64") == 0) { zmq_ctx_term(ctx); return 0; }
    rtt_bench(ctx, 1024, rounds, 0);
    rtt_bench(ctx, 4096, rounds, 0);
    rtt_bench(ctx, 262144, rounds / 10, 0);
    rtt_bench(ctx, 0, rounds, 1);
    zmq_ctx_term(ctx);
    return 0;
}
