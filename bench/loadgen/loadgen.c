/*
 * loadgen: the WebSocket load generator of tidewire's benchmarks.
 *
 * One thread, epoll, non-blocking sockets; libc and zlib only. It speaks just
 * enough RFC 6455 as a client: the HTTP upgrade with a fixed key (it checks
 * the 101 and the accept value), masked frames out (one fixed mask key, so a
 * plain message is framed and masked once for the whole run), unmasked frames
 * in (7, 16 and 64-bit lengths) and, with --deflate, permessage-deflate
 * (RFC 7692) through zlib, context takeover agreed both ways. Its messages are
 * compressed ahead of time (see prepare_zframes), so a run only inflates.
 *
 * Modes; each prints one JSON object on stdout when it ends:
 *   echo     --conns connections, each keeps one message in flight; counts
 *            the echoes received between --warmup and --warmup + --duration
 *   connect  --conns slots; each loops: connect, upgrade, one echo, close
 *            handshake (the server closes TCP first); counts whole cycles
 *   idle     opens --conns connections (--inflight at a time), prints a
 *            "ready" line, holds them until stdin is readable or closed, or
 *            --hold seconds pass, then closes them
 *   fanout   opens --conns connections, then for each round sends the text
 *            trigger "M" on the first one and counts the binary messages each
 *            connection receives until it gets the server's text "end"
 *   hub      the hub's client protocol (docs/protocol.md) on --path /ws:
 *            --conns subscribers each send connect and subscribe to
 *            --channel; then one more connection, a backend (connect with
 *            --api-key), publishes data of --size bytes of JSON,
 *            {"t": <CLOCK_MONOTONIC ns>, "pad": "..."}, in two phases:
 *            "throughput", as fast as the hub delivers with --window
 *            publications outstanding (each until it is answered and every
 *            subscriber has it: a publish reply doesn't mean delivered when
 *            the backend's hub node isn't the subscribers'), and "latency",
 *            at --rate publications/s.
 *            Each phase has --warmup then --duration seconds, and waits until
 *            every subscriber has every publication. Subscribers check that
 *            offsets are consecutive and, in the latency window, take
 *            publish-to-delivery times from "t" (p50, p99). Pings get pongs.
 *            --backend-port sends the backend to another server than the
 *            subscribers (another hub node on the same broker); by default
 *            it connects to --port like them. --hold-subscribed prints a
 *            "subscribed" line once every subscriber is, and waits for stdin
 *            to close (as idle does) before the backend connects: the
 *            harness reads the server's memory then.
 *            --proto speaks another push server's protocol instead, with the
 *            same phases and the same counting; the data is then
 *            {"seq": N, "t": ..., "pad": "..."} and N, the publisher's own
 *            count, is checked as the hub's offsets are:
 *              socketio  Socket.IO (Engine.IO v4 straight over WebSocket,
 *                        --path "/socket.io/?EIO=4&transport=websocket"): the
 *                        open packet 0{...}, then 40 (connect), then
 *                        420["subscribe","<channel>"], acked 430[...]; pushes
 *                        are 42["pub",{data}]; pings 2 get pongs 3. The
 *                        backend is one more Socket.IO client that emits
 *                        42<id>["publish","<channel>",{data}], acked 43<id>.
 *              pusher    Pusher's protocol (soketi, --path /app/<key>?...):
 *                        pusher:connection_established, then pusher:subscribe,
 *                        answered by pusher_internal:subscription_succeeded;
 *                        pushes are channel events whose data is a JSON
 *                        string. The backend publishes through the Pusher
 *                        HTTP API, POST /apps/<--app-id>/events signed with
 *                        HMAC-SHA256 of --app-secret (auth_key is --api-key),
 *                        one request per connection, one at a time (soketi
 *                        closes the connection after each answer, so that
 *                        their order is the order soketi takes them in).
 *   http     HTTP/1.1 POSTs of --size bytes of JSON data to --path, as a
 *            backend publishes through an HTTP API ({"channel": --channel,
 *            "data": {"pad": "..."}}, with "Authorization: Bearer --api-key"
 *            when given), on --conns connections. With --keepalive, each
 *            connection is kept and carries --window requests in flight
 *            (pipelined); a connection the server closes (Connection: close,
 *            its request limit) is opened again and what it left unanswered
 *            is sent again. Without, every request says Connection: close
 *            and goes on a new connection, which the server closes after its
 *            answer. Counts 2xx answers between --warmup and --warmup +
 *            --duration; another status is an error.
 * --raw is for the raw TCP echo server: no upgrade and no close handshake;
 * an echo is complete when as many bytes came back as were sent (fanout still
 * parses the frames the raw server writes).
 *
 * Every loop is bounded: the event loop by --timeout (a hard deadline) and an
 * iteration cap, the inner loops by the bytes at hand or a fixed count.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define MAX_EVENTS 1024
#define READ_CHUNK (256 * 1024)
#define HS_MAX 4096
#define MAX_LOOPS 2000000000ULL
#define STDIN_TAG UINT64_MAX
#define STEP_TIMEOUT 5.0 /* seconds a connect cycle or an opening may take */
#define DRAIN_TIMEOUT 10.0 /* hub: seconds for every subscriber to catch up */
#define HUB_MSG_MAX (64 * 1024) /* hub: the longest text message kept */
#define LAT_MAX (1u << 24) /* hub: latencies kept (8 bytes each) */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const unsigned char MASK[4] = {0x37, 0xfa, 0x21, 0x3d};
static const unsigned char DEFLATE_TAIL[4] = {0x00, 0x00, 0xff, 0xff};

enum mode { ECHO, CONNECT, IDLE, FANOUT, HUB, HTTP };
/* hub: a subscriber's requests, and the run's phases */
enum hub_state { H_CONNECTING, H_CONNECTED, H_SUBSCRIBED, H_WELCOME };
enum proto { PR_HUB, PR_SOCKETIO, PR_PUSHER };
enum hub_phase { P_SUBSCRIBE, P_BACKEND, P_THROUGHPUT, P_DRAIN1, P_LATENCY, P_DRAIN2, P_DONE };
enum state { FREE, CONNECTING, HANDSHAKE, OPEN, CLOSING, CLOSED };

struct opts {
    enum mode mode;
    const char *host;
    int port;
    const char *path;
    int conns;
    size_t size;
    int text;
    int raw;
    int deflate;
    double warmup;
    double duration;
    double timeout;
    double hold;
    int count;
    int rounds;
    int inflight;
    const char *channel; /* hub */
    const char *api_key;
    int backend_port; /* 0: the backend connects to --port too */
    int window;
    double rate;
    int keepalive; /* http */
    enum proto proto;
    const char *app_id; /* pusher */
    const char *app_secret;
    int hold_subscribed;
};

struct conn {
    int fd;
    enum state st;
    int want_out;
    const unsigned char *out; /* bytes being written: shared frame or buf */
    size_t out_len, out_off;
    unsigned char *buf; /* this connection's frames (deflate, trigger) */
    size_t buf_cap;
    char hs[HS_MAX];
    size_t hs_len;
    unsigned char hdr[14]; /* frame parser */
    int hdr_have, hdr_need;
    uint64_t left;
    int op, fin;
    int msg_op, msg_z;
    uint64_t msg_len;
    uint64_t raw_got; /* --raw echo: bytes back so far */
    int ended;        /* fanout: saw "end" this round */
    int got_close;
    double t0; /* start of the current step, for STEP_TIMEOUT */
    int z; /* permessage-deflate agreed */
    int z_bits;
    z_stream zi;
    uint64_t z_msgs;
    unsigned char *in; /* hub: the text message being received */
    size_t in_len, in_cap;
    unsigned char ctl[125]; /* hub: a control frame's payload (ping, close) */
    size_t ctl_len;
    enum hub_state hub_st;
    uint64_t last_offset; /* hub: offset of the last publication received */
    uint64_t got;         /* hub: publications received */
    int requests;         /* http: requests sent and not answered yet */
    int status;           /* http: the status of the response being read */
    int last;             /* http: that response closes the connection */
    uint64_t req_seq;     /* pusher backend: the publication of this request */
    int http_status;      /* pusher backend: the answer's status, once its head is in */
    uint64_t http_left;   /* pusher backend: body bytes still to come */
};

struct stats {
    uint64_t msgs, bytes, cycles, errors, bad, opened, failed, dropped, deflate, deliveries;
    uint64_t published, lost, disorder; /* hub */
};

static struct opts O = {
    .mode = ECHO, .host = "127.0.0.1", .port = 0, .path = "/", .conns = 1, .size = 64,
    .text = 1, .warmup = 1.0, .duration = 3.0, .timeout = 0, .hold = 60.0,
    .count = 100, .rounds = 1, .inflight = 64,
    .channel = "ticker:bench", .api_key = "", .window = 16, .rate = 100.0,
    .proto = PR_HUB, .app_id = "", .app_secret = "",
};
static struct stats S;
static struct conn *C;
static int nconns; /* slots in C: --conns, and in hub mode the backend after them */
static int ep = -1;
static unsigned char *frame; /* the premasked message, shared by all connections */
static size_t frame_len;
static unsigned char close_frame[8];
static unsigned char *corpus; /* text-like payload source, compressible */
static size_t corpus_len;
static char request[1024];
static size_t request_len;
static char pub_request[1024]; /* hub: the backend's upgrade, Host: its own port */
static size_t pub_request_len;
static unsigned char rbuf[READ_CHUNK];
static unsigned char zbuf[READ_CHUNK];
static int stopping;
static int pending; /* connections still opening */
static int next_id; /* next connection to open (idle, fanout) */
static int live;    /* connections open (upgraded), kept up to date */
static int ended;   /* fanout: open connections that saw "end" this round */
static char last_error[160];
/* hub */
static struct conn *PUB; /* the backend connection, after the subscribers */
static enum hub_phase phase;
static int pub_ready;        /* the backend's connect was answered */
static uint64_t pub_id = 1;  /* the last request id of the backend (1: connect) */
static int outstanding;      /* publish requests not answered yet */
static uint64_t pub_sent;    /* publish requests sent */
static uint64_t pub_top;     /* the highest offset the hub gave a publication */
static uint64_t pub_seq;     /* socketio, pusher: the last publication's number */
static int pub_broken;       /* pusher: a publish request failed, the run ends */
static uint64_t recv_ns;     /* when the last recv() returned */
static uint64_t lat_t0, lat_t1 = 0; /* the latency window, in publish times (ns) */
static uint64_t lat_sent, lat_overflow, late;
static uint64_t *lat; /* publish-to-delivery times in the window, ns */
static size_t lat_n, lat_cap;
static char *pubtext; /* a publish request being made */
static size_t pubtext_cap;
static char extensions[256]; /* the first Sec-WebSocket-Extensions answer, for the report */
/* http */
static unsigned char *posts; /* --window copies of the request, back to back */
static size_t post_len;      /* the length of one */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void note_error(const char *what, int err) {
    S.errors++;
    if (last_error[0] == '\0')
        snprintf(last_error, sizeof last_error, "%s%s%s", what, err ? ": " : "",
                 err ? strerror(err) : "");
}

/* Frames: a client frame's header, then its payload masked with MASK. */

static size_t header_len(size_t len) { return len < 126 ? 6 : len < 65536 ? 8 : 14; }

static void write_header(unsigned char *h, int opcode, int rsv1, size_t len) {
    h[0] = (unsigned char)(0x80 | (rsv1 ? 0x40 : 0) | opcode);
    size_t i = 2;
    if (len < 126) {
        h[1] = (unsigned char)(0x80 | len);
    } else if (len < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        i = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int k = 0; k < 8; k++) h[2 + k] = (unsigned char)((uint64_t)len >> (56 - 8 * k));
        i = 10;
    }
    memcpy(h + i, MASK, 4);
}

static void mask(unsigned char *p, size_t len) {
    for (size_t i = 0; i < len; i++) p[i] ^= MASK[i & 3];
}

/* Builds a whole frame into dst (room for header_len(len) + len). */
static size_t build_frame(unsigned char *dst, int opcode, const unsigned char *payload,
                          size_t len) {
    size_t h = header_len(len);
    write_header(dst, opcode, 0, len);
    memcpy(dst + h, payload, len);
    mask(dst + h, len);
    return h + len;
}

/* Words from a small vocabulary, picked by a fixed xorshift: compresses like text. */
static void make_corpus(void) {
    static const char *words[] = {
        "tide", "wire", "socket", "frame", "message", "stream", "buffer", "event",
        "loop", "server", "client", "channel", "ticker", "price", "order", "update",
        "delta", "room", "user", "presence", "history", "offset", "payload", "text",
    };
    corpus_len = O.size + 256 * 1024;
    corpus = malloc(corpus_len);
    if (!corpus) exit(2);
    uint32_t x = 2463534242u;
    size_t i = 0;
    while (i < corpus_len) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        const char *w = words[x % (sizeof words / sizeof *words)];
        for (size_t k = 0; w[k] && i < corpus_len; k++) corpus[i++] = (unsigned char)w[k];
        if (i < corpus_len) corpus[i++] = (x & 0x100) ? ',' : ' ';
    }
}

/* Connections */

static void watch(struct conn *c, int out) {
    if (c->want_out == out) return;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0)};
    ev.data.u64 = (uint64_t)(c - C);
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->want_out = out;
}

static void conn_close(struct conn *c) {
    if (c->st == FREE || c->st == CLOSED) return;
    if (c->st == CONNECTING || c->st == HANDSHAKE) pending--;
    if (c->st == OPEN || c->st == CLOSING) live--;
    if (c->ended) ended--;
    c->ended = 0;
    close(c->fd);
    c->fd = -1;
    if (c->z) {
        inflateEnd(&c->zi);
        c->z = 0;
    }
    c->st = CLOSED;
}

static void conn_open(struct conn *c) {
    unsigned char *buf = c->buf, *in = c->in;
    size_t cap = c->buf_cap, in_cap = c->in_cap;
    memset(c, 0, sizeof *c);
    c->buf = buf;
    c->buf_cap = cap;
    c->in = in;
    c->in_cap = in_cap;
    c->hdr_need = 2;
    c->t0 = now();
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        note_error("socket", errno);
        S.failed++;
        c->st = CLOSED;
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int port = c == PUB && O.backend_port ? O.backend_port : O.port;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, O.host, &sa.sin_addr);
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        note_error("connect", errno);
        S.failed++;
        close(c->fd);
        c->st = CLOSED;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT};
    ev.data.u64 = (uint64_t)(c - C);
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->want_out = 1;
    c->st = CONNECTING;
    pending++;
}

/* Writes what is pending; returns -1 if the connection failed (and is closed). */
static int flush(struct conn *c) {
    for (int k = 0; k < 64 && c->out_off < c->out_len; k++) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            c->out_off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && errno == EAGAIN) {
            break;
        } else {
            note_error("send", errno);
            conn_close(c);
            return -1;
        }
    }
    watch(c, c->out_off < c->out_len);
    return 0;
}

static int queue(struct conn *c, const unsigned char *p, size_t len) {
    if (c->out_off < c->out_len) {
        note_error("queue: previous write not done", 0);
        return -1;
    }
    c->out = p;
    c->out_len = len;
    c->out_off = 0;
    return flush(c);
}

static int ensure_buf(struct conn *c, size_t cap) {
    if (c->buf_cap >= cap) return 0;
    unsigned char *b = realloc(c->buf, cap);
    if (!b) return -1;
    c->buf = b;
    c->buf_cap = cap;
    return 0;
}

/* Compressed messages are prepared once per window size, each deflated on its
 * own: a message that doesn't refer to earlier ones is valid with context
 * takeover too, and the client then spends nothing on compression. The
 * variants cover more than a 32 KiB window, so that the server's compressor
 * doesn't just find the previous copy of the same message. */
#define Z_VARIANTS_MAX 1024

struct zframes {
    int count;
    unsigned char *frame[Z_VARIANTS_MAX];
    size_t len[Z_VARIANTS_MAX];
};
static struct zframes ZF[16];

static int prepare_zframes(int bits) {
    struct zframes *zf = &ZF[bits];
    if (zf->count) return 0;
    size_t want = (64 * 1024 + O.size - 1) / O.size;
    int count = want < 4 ? 4 : want > Z_VARIANTS_MAX ? Z_VARIANTS_MAX : (int)want;
    for (int v = 0; v < count; v++) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (deflateInit2(&zs, 6, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -1;
        size_t room = deflateBound(&zs, O.size) + 64;
        unsigned char *buf = malloc(14 + room);
        if (!buf) return -1;
        zs.next_in = corpus + (size_t)v * 4099u % (corpus_len - O.size + 1);
        zs.avail_in = (uInt)O.size;
        zs.next_out = buf + 14;
        zs.avail_out = (uInt)room;
        int ret = deflate(&zs, Z_SYNC_FLUSH);
        size_t produced = room - zs.avail_out;
        deflateEnd(&zs);
        if (ret != Z_OK || zs.avail_in != 0 || zs.avail_out == 0 || produced < 4 ||
            memcmp(buf + 14 + produced - 4, DEFLATE_TAIL, 4) != 0)
            return -1;
        size_t len = produced - 4;
        size_t h = header_len(len);
        write_header(buf + 14 - h, O.text ? 1 : 2, 1, len);
        mask(buf + 14, len);
        zf->frame[v] = buf + 14 - h;
        zf->len[v] = h + len;
    }
    zf->count = count;
    return 0;
}

static int send_deflated(struct conn *c) {
    struct zframes *zf = &ZF[c->z_bits];
    int v = (int)(c->z_msgs++ % (uint64_t)zf->count);
    return queue(c, zf->frame[v], zf->len[v]);
}

static int send_message(struct conn *c) {
    c->raw_got = 0;
    if (c->z) return send_deflated(c);
    return queue(c, frame, frame_len);
}

static int send_text(struct conn *c, const char *text) {
    size_t len = strlen(text);
    if (ensure_buf(c, 14 + len) < 0) return -1;
    return queue(c, c->buf, build_frame(c->buf, 1, (const unsigned char *)text, len));
}

/* hub: frames are appended to the connection's own buffer and written in
 * order by the next flush(), so a request never waits for an earlier one. */
static int append_frame(struct conn *c, int opcode, const void *payload, size_t len) {
    if (c->out_off < c->out_len && c->out != c->buf) {
        note_error("append: a shared write is pending", 0);
        return -1;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
    } else if (c->out_off > 0) {
        memmove(c->buf, c->buf + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (ensure_buf(c, c->out_len + 14 + len) < 0) return -1;
    c->out_len += build_frame(c->buf + c->out_len, opcode, payload, len);
    c->out = c->buf;
    return 0;
}

static int append_text(struct conn *c, const char *text) {
    return append_frame(c, 1, text, strlen(text));
}

/* http: tops the connection up to --window requests in flight (1 without
 * --keepalive), in one write, once the previous write is done. */
static void send_posts(struct conn *c) {
    if (stopping || c->st != OPEN || c->out_off < c->out_len) return;
    /* got: requests sent on this connection; without --keepalive, one */
    int k = O.keepalive ? O.window - c->requests : c->got == 0;
    if (k <= 0) return;
    c->requests += k;
    c->got += (uint64_t)k;
    if (queue(c, posts, (size_t)k * post_len) < 0) conn_close(c);
}

/* The server accepted the upgrade, or the raw TCP connection is up. */
static void on_open(struct conn *c) {
    pending--;
    c->st = OPEN;
    live++;
    if (c != PUB) S.opened++;
    if (c->z) S.deflate++;
    if (O.mode == ECHO || O.mode == CONNECT) {
        if (send_message(c) < 0) conn_close(c);
    } else if (O.mode == HUB && O.proto != PR_HUB) {
        c->hub_st = H_WELCOME; /* the server speaks first */
    } else if (O.mode == HUB) {
        char text[512];
        int bad;
        if (c == PUB) {
            snprintf(text, sizeof text, "{\"id\":1,\"op\":\"connect\",\"api_key\":\"%s\"}",
                     O.api_key);
            bad = append_text(c, text) < 0;
        } else {
            snprintf(text, sizeof text,
                     "{\"id\":2,\"op\":\"subscribe\",\"channel\":\"%s\"}", O.channel);
            bad = append_text(c, "{\"id\":1,\"op\":\"connect\"}") < 0 || append_text(c, text) < 0;
        }
        if (bad || flush(c) < 0) conn_close(c);
    } else if (O.mode == HTTP) {
        send_posts(c);
    }
}

static void fail(struct conn *c, const char *what, int err) {
    if (c == PUB) pub_broken = 1;
    if (c->st == CONNECTING || c->st == HANDSHAKE) S.failed++;
    else if (O.mode == IDLE || O.mode == FANOUT || O.mode == HUB) S.dropped++;
    note_error(what, err);
    conn_close(c);
}

static void setup_deflate(struct conn *c, const char *ext) {
    int bits = 15;
    const char *b = strcasestr(ext, "client_max_window_bits=");
    if (b) bits = atoi(b + strlen("client_max_window_bits="));
    if (bits < 9) bits = 9; /* zlib's raw deflate has no 8-bit window */
    if (bits > 15) bits = 15;
    memset(&c->zi, 0, sizeof c->zi);
    if (prepare_zframes(bits) < 0 || inflateInit2(&c->zi, -15) != Z_OK) {
        note_error("zlib init", 0);
        return;
    }
    c->z = 1;
    c->z_bits = bits;
}

/* Returns how many bytes after the response head belong to frames, or -1. */
static long on_handshake_bytes(struct conn *c, const unsigned char *p, size_t n) {
    size_t take = n < HS_MAX - 1 - c->hs_len ? n : HS_MAX - 1 - c->hs_len;
    memcpy(c->hs + c->hs_len, p, take);
    size_t before = c->hs_len;
    c->hs_len += take;
    c->hs[c->hs_len] = '\0';
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end) {
        if (c->hs_len >= HS_MAX - 1) return -1;
        return 0;
    }
    size_t head = (size_t)(end - c->hs) + 4;
    *end = '\0';
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0 || !strstr(c->hs, WS_ACCEPT)) return -1;
    const char *ext = strcasestr(c->hs, "\nsec-websocket-extensions:");
    if (ext && O.deflate && strcasestr(ext, "permessage-deflate")) {
        char line[512];
        const char *eol = strstr(ext + 1, "\r\n");
        size_t len = eol ? (size_t)(eol - ext) : strlen(ext);
        if (len >= sizeof line) len = sizeof line - 1;
        memcpy(line, ext, len);
        line[len] = '\0';
        setup_deflate(c, line);
        if (extensions[0] == '\0') {
            const char *value = line + strlen("\nsec-websocket-extensions:");
            value += strspn(value, " ");
            snprintf(extensions, sizeof extensions, "%s", value);
            for (char *q = extensions; *q; q++)
                if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20) *q = '\''; /* JSON-safe */
        }
    }
    on_open(c);
    return (long)(n - (head - before));
}

/* The hub's protocol: JSON text read with plain scans, no JSON library. */

static const unsigned char *find(const unsigned char *p, const unsigned char *end,
                                 const char *needle) {
    if (p >= end) return NULL;
    return memmem(p, (size_t)(end - p), needle, strlen(needle));
}

/* The unsigned integer right after the first `key` in [p, end); *after
 * (when given) points past it. Returns -1 if there is none. */
static int field_u64(const unsigned char *p, const unsigned char *end, const char *key,
                     uint64_t *out, const unsigned char **after) {
    const unsigned char *q = find(p, end, key);
    if (!q) return -1;
    q += strlen(key);
    if (q >= end || *q < '0' || *q > '9') return -1;
    uint64_t v = 0;
    for (int k = 0; k < 20 && q < end && *q >= '0' && *q <= '9'; k++, q++) v = v * 10 + (*q - '0');
    *out = v;
    if (after) *after = q;
    return 0;
}

/* "what: <the start of the message>", JSON-safe, as the run's error. */
static void fail_with_message(struct conn *c, const char *what) {
    char text[sizeof last_error];
    int n = c->in_len < 100 ? (int)c->in_len : 100;
    snprintf(text, sizeof text, "%s: %.*s", what, n, (const char *)c->in);
    for (char *q = text; *q; q++)
        if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20) *q = '\'';
    fail(c, text, 0);
}

static void keep_bytes(struct conn *c, const unsigned char *p, size_t n) {
    if (c->in_len + n > HUB_MSG_MAX) return; /* on_message sees in_len != msg_len */
    if (c->in_cap < c->in_len + n) {
        size_t cap = c->in_cap ? c->in_cap : 512;
        while (cap < c->in_len + n) cap *= 2;
        unsigned char *b = realloc(c->in, cap);
        if (!b) return;
        c->in = b;
        c->in_cap = cap;
    }
    memcpy(c->in + c->in_len, p, n);
    c->in_len += n;
}

static void lat_add(uint64_t ns) {
    if (lat_n == lat_cap) {
        size_t cap = lat_cap ? lat_cap * 2 : 1u << 16;
        uint64_t *b = cap <= LAT_MAX ? realloc(lat, cap * sizeof *lat) : NULL;
        if (!b) {
            lat_overflow++;
            return;
        }
        lat = b;
        lat_cap = cap;
    }
    lat[lat_n++] = ns;
}

/* A publication reached a subscriber: `off` is its place in the channel (the
 * hub's offset, or the publisher's count), `t` the publisher's clock. The same
 * for every protocol. */
static void on_delivery(struct conn *c, uint64_t off, uint64_t t) {
    S.deliveries++;
    c->got++;
    if (off > c->last_offset + 1) S.lost += off - c->last_offset - 1;
    else if (off <= c->last_offset) S.disorder++;
    if (off > c->last_offset) c->last_offset = off;
    if (t >= lat_t0 && t < lat_t1 && recv_ns >= t) lat_add(recv_ns - t);
}

/* The number after `seq_key`, then the one after `t_key`, in a push. */
static int push_fields(const unsigned char *m, const unsigned char *end, const char *seq_key,
                       const char *t_key, uint64_t *seq, uint64_t *t) {
    const unsigned char *after;
    return field_u64(m, end, seq_key, seq, &after) < 0 || field_u64(after, end, t_key, t, NULL) < 0
               ? -1
               : 0;
}

static int starts(const unsigned char *m, size_t len, const char *prefix) {
    size_t n = strlen(prefix);
    return len >= n && memcmp(m, prefix, n) == 0;
}

static void send_now(struct conn *c, const char *text) {
    if (append_text(c, text) < 0 || flush(c) < 0) conn_close(c);
}

/* Socket.IO, subscribers and backend: the open packet, the connect, then the
 * subscribe ack and pushes (subscribers) or publish acks (the backend). */
static void on_socketio_message(struct conn *c) {
    const unsigned char *m = c->in, *end = c->in + c->in_len;
    size_t len = c->in_len;
    uint64_t seq, t;
    char text[512];
    if (len == 1 && m[0] == '2') { /* Engine.IO ping */
        send_now(c, "3");
        return;
    }
    switch (c->hub_st) {
    case H_SUBSCRIBED:
        if (starts(m, len, "42[\"pub\",") && push_fields(m, end, "\"seq\":", "\"t\":", &seq, &t) == 0)
            on_delivery(c, seq, t);
        else
            S.bad++;
        return;
    case H_WELCOME:
        if (!starts(m, len, "0{")) break;
        c->hub_st = H_CONNECTING;
        send_now(c, "40");
        return;
    case H_CONNECTING:
        if (!starts(m, len, "40")) break;
        c->hub_st = H_CONNECTED;
        if (c == PUB) {
            pub_ready = 1;
            return;
        }
        snprintf(text, sizeof text, "420[\"subscribe\",\"%s\"]", O.channel);
        send_now(c, text);
        return;
    case H_CONNECTED:
        if (c == PUB && starts(m, len, "43") && field_u64(m, end, "43", &seq, NULL) == 0) {
            if (outstanding > 0) outstanding--;
            S.published++;
            if (seq > pub_top) pub_top = seq;
            return;
        }
        if (c != PUB && starts(m, len, "430")) {
            c->last_offset = 0;
            c->hub_st = H_SUBSCRIBED;
            return;
        }
        break;
    }
    fail_with_message(c, c == PUB ? "backend: unexpected message" : "unexpected message");
}

/* Pusher (soketi), subscribers: connection_established, the subscription, pushes. */
static void on_pusher_message(struct conn *c) {
    const unsigned char *m = c->in, *end = c->in + c->in_len;
    size_t len = c->in_len;
    uint64_t seq, t;
    char text[512];
    if (starts(m, len, "{\"event\":\"pusher:ping\"")) {
        send_now(c, "{\"event\":\"pusher:pong\",\"data\":{}}");
        return;
    }
    if (c->hub_st == H_SUBSCRIBED) {
        /* the data is a JSON string: its quotes come escaped */
        if (starts(m, len, "{\"event\":\"pub\"") &&
            push_fields(m, end, "\\\"seq\\\":", "\\\"t\\\":", &seq, &t) == 0)
            on_delivery(c, seq, t);
        else
            S.bad++;
        return;
    }
    if (c->hub_st == H_WELCOME && find(m, end, "\"pusher:connection_established\"")) {
        c->hub_st = H_CONNECTED;
        snprintf(text, sizeof text,
                 "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":\"%s\"}}", O.channel);
        send_now(c, text);
        return;
    }
    if (c->hub_st == H_CONNECTED && find(m, end, "\"pusher_internal:subscription_succeeded\"")) {
        c->last_offset = 0;
        c->hub_st = H_SUBSCRIBED;
        return;
    }
    fail_with_message(c, "unexpected message");
}

/* A subscriber's replies (connect, subscribe), then its pushes. */
static void on_subscriber_message(struct conn *c) {
    const unsigned char *m = c->in, *end = c->in + c->in_len, *data;
    uint64_t id, off, t;
    if (c->msg_op != 1 || c->in_len != c->msg_len) {
        S.bad++;
        return;
    }
    if (O.proto == PR_SOCKETIO) {
        on_socketio_message(c);
        return;
    }
    if (O.proto == PR_PUSHER) {
        on_pusher_message(c);
        return;
    }
    if (c->hub_st == H_SUBSCRIBED) {
        if (c->in_len < 13 || memcmp(m, "{\"push\":\"pub\"", 13) != 0 ||
            field_u64(m, end, "\"offset\":", &off, &data) < 0 ||
            field_u64(data, end, "\"t\":", &t, NULL) < 0) {
            S.bad++;
            return;
        }
        on_delivery(c, off, t);
        return;
    }
    if (c->in_len < 6 || memcmp(m, "{\"id\":", 6) != 0 || field_u64(m, end, "{\"id\":", &id, NULL) < 0) {
        S.bad++;
        return;
    }
    if (!find(m, end, "\"result\":")) {
        fail_with_message(c, "subscriber refused");
        return;
    }
    if (id == 1 && c->hub_st == H_CONNECTING) {
        c->hub_st = H_CONNECTED;
    } else if (id == 2 && c->hub_st == H_CONNECTED) {
        if (field_u64(m, end, "\"offset\":", &c->last_offset, NULL) < 0) S.bad++;
        c->hub_st = H_SUBSCRIBED;
    } else {
        S.bad++;
    }
}

/* The backend's replies: its connect, then one for each publish request. */
static void on_backend_message(struct conn *c) {
    const unsigned char *m = c->in, *end = c->in + c->in_len;
    uint64_t id, off;
    if (O.proto == PR_SOCKETIO) {
        if (c->msg_op != 1 || c->in_len != c->msg_len) S.bad++;
        else on_socketio_message(c);
        return;
    }
    if (c->msg_op != 1 || c->in_len != c->msg_len || c->in_len < 6 ||
        memcmp(m, "{\"id\":", 6) != 0 || field_u64(m, end, "{\"id\":", &id, NULL) < 0) {
        S.bad++;
        return;
    }
    int ok = find(m, end, "\"result\":") != NULL;
    if (!pub_ready) {
        if (id != 1 || !ok) fail_with_message(c, "backend connect refused");
        else pub_ready = 1;
        return;
    }
    if (outstanding > 0) outstanding--;
    if (!ok) { /* the run ends: publications are the point */
        fail_with_message(c, "publish refused");
        return;
    }
    if (field_u64(m, end, "\"offset\":", &off, NULL) < 0) {
        S.bad++;
        return;
    }
    S.published++;
    if (off > pub_top) pub_top = off;
}

static void hex(const unsigned char *d, unsigned n, char *out) {
    for (unsigned i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static size_t pub_req_len; /* pusher: the request in PUB->buf */

/* pusher: a signed POST /apps/<id>/events for publication `seq` into PUB's
 * buffer, its connection opened; written once connected (on_writable). */
static int pusher_publish(struct conn *c, uint64_t seq, const char *stamp, long pad) {
    /* the event's data is a JSON string: the same object, its quotes escaped */
    int blen = snprintf(pubtext, pubtext_cap,
                        "{\"name\":\"pub\",\"channels\":[\"%s\"],\"data\":"
                        "\"{\\\"seq\\\":%llu,\\\"t\\\":%s,\\\"pad\\\":\\\"%.*s\\\"}\"}",
                        O.channel, (unsigned long long)seq, stamp, (int)pad,
                        (const char *)corpus);
    if (blen < 0 || (size_t)blen >= pubtext_cap) return -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char md5[2 * EVP_MAX_MD_SIZE + 1], sig[2 * EVP_MAX_MD_SIZE + 1], query[512], signed_text[768];
    if (!EVP_Digest(pubtext, (size_t)blen, md, &mdlen, EVP_md5(), NULL)) return -1;
    hex(md, mdlen, md5);
    snprintf(query, sizeof query, "auth_key=%s&auth_timestamp=%lld&auth_version=1.0&body_md5=%s",
             O.api_key, (long long)time(NULL), md5);
    int slen = snprintf(signed_text, sizeof signed_text, "POST\n/apps/%s/events\n%s", O.app_id,
                        query);
    if (slen < 0 || (size_t)slen >= sizeof signed_text ||
        !HMAC(EVP_sha256(), O.app_secret, (int)strlen(O.app_secret),
              (const unsigned char *)signed_text, (size_t)slen, md, &mdlen))
        return -1;
    hex(md, mdlen, sig);
    if (ensure_buf(c, (size_t)blen + 2048) < 0) return -1;
    int n = snprintf((char *)c->buf, c->buf_cap,
                     "POST /apps/%s/events?%s&auth_signature=%s HTTP/1.1\r\nHost: %s:%d\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     O.app_id, query, sig, O.host, O.backend_port ? O.backend_port : O.port, blen,
                     pubtext);
    if (n < 0 || (size_t)n >= c->buf_cap) return -1;
    pub_req_len = (size_t)n;
    conn_open(c);
    c->req_seq = seq;
    return c->st == CONNECTING ? 0 : -1;
}

/* Sends up to `count` publish requests in one write, each stamped with the
 * time; returns how many went. Pusher's go one at a time: none while one is
 * unanswered. */
static int publish(struct conn *c, int count) {
    int sent = 0;
    for (int k = 0; k < count; k++) {
        if (O.proto == PR_PUSHER && (outstanding > 0 || (c->st != CLOSED && c->st != FREE)))
            break;
        uint64_t t = now_ns();
        char stamp[24];
        int tl = snprintf(stamp, sizeof stamp, "%llu", (unsigned long long)t);
        int n = -1, bad;
        if (O.proto == PR_HUB) {
            /* data is {"t":T,"pad":"P"}: 15 bytes and T's digits around the pad */
            long pad = (long)O.size - 15 - tl;
            if (pad < 0) pad = 0;
            n = snprintf(pubtext, pubtext_cap,
                         "{\"id\":%llu,\"op\":\"publish\",\"channel\":\"%s\","
                         "\"data\":{\"t\":%s,\"pad\":\"%.*s\"}}",
                         (unsigned long long)++pub_id, O.channel, stamp, (int)pad,
                         (const char *)corpus);
        } else {
            /* data is {"seq":N,"t":T,"pad":"P"}: 22 bytes and N's and T's digits */
            uint64_t seq = ++pub_seq;
            char num[24];
            long pad = (long)O.size - 22 - tl - snprintf(num, sizeof num, "%llu",
                                                          (unsigned long long)seq);
            if (pad < 0) pad = 0;
            if (O.proto == PR_PUSHER) {
                bad = pusher_publish(c, seq, stamp, pad) < 0;
                goto sent;
            }
            n = snprintf(pubtext, pubtext_cap,
                         "42%llu[\"publish\",\"%s\",{\"seq\":%llu,\"t\":%s,\"pad\":\"%.*s\"}]",
                         (unsigned long long)seq, O.channel, (unsigned long long)seq, stamp,
                         (int)pad, (const char *)corpus);
        }
        bad = n < 0 || (size_t)n >= pubtext_cap || append_frame(c, 1, pubtext, (size_t)n) < 0;
    sent:
        if (bad) {
            note_error("publish request", 0);
            if (O.proto == PR_PUSHER) pub_broken = 1;
            break;
        }
        outstanding++;
        pub_sent++;
        sent++;
        if (t >= lat_t0 && t < lat_t1) lat_sent++;
    }
    if (O.proto != PR_PUSHER && sent) flush(c);
    return sent;
}

/* pusher: the HTTP API's answer to a publish request, kept in c->hs. Once
 * whole, the request is done and the connection closed (soketi closes it). */
static void on_pusher_bytes(struct conn *c, const unsigned char *p, size_t n) {
    size_t take = n < HS_MAX - 1 - c->hs_len ? n : HS_MAX - 1 - c->hs_len;
    memcpy(c->hs + c->hs_len, p, take);
    c->hs_len += take;
    c->hs[c->hs_len] = '\0';
    char *head_end = strstr(c->hs, "\r\n\r\n");
    if (!head_end) {
        if (c->hs_len >= HS_MAX - 1) fail(c, "publish: answer head too long", 0);
        return;
    }
    size_t head = (size_t)(head_end - c->hs) + 4;
    const char *cl = strcasestr(c->hs, "\r\ncontent-length:");
    size_t body = cl && cl < head_end ? (size_t)strtoull(cl + 17, NULL, 10) : 0;
    if (c->hs_len < head + body && c->hs_len < HS_MAX - 1) return; /* more to come */
    int status = 0;
    if (sscanf(c->hs, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
        char what[120];
        snprintf(what, sizeof what, "publish refused: %.100s", c->hs);
        for (char *q = what; *q; q++)
            if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20) *q = '\'';
        fail(c, what, 0);
        return;
    }
    if (outstanding > 0) outstanding--;
    S.published++;
    if (c->req_seq > pub_top) pub_top = c->req_seq;
    conn_close(c);
}

/* Messages and frames from the server */

static void on_message(struct conn *c) {
    int ok = c->msg_len == O.size && c->msg_op == (O.text ? 1 : 2);
    switch (O.mode) {
    case ECHO:
        if (!ok) S.bad++;
        S.msgs++;
        S.bytes += c->msg_len;
        if (!stopping && send_message(c) < 0) conn_close(c);
        break;
    case CONNECT:
        if (!ok) S.bad++;
        c->st = CLOSING;
        if (queue(c, close_frame, sizeof close_frame) < 0) conn_close(c);
        break;
    case FANOUT:
        if (c->msg_op == 2) {
            S.deliveries++;
            if (c->msg_len != O.size) S.bad++;
        } else if (!c->ended) {
            c->ended = 1;
            ended++;
        }
        break;
    case IDLE:
    case HTTP: /* no frames */
        S.bad++;
        break;
    case HUB:
        if (c == PUB) on_backend_message(c);
        else on_subscriber_message(c);
        break;
    }
}

static int inflate_chunk(struct conn *c, const unsigned char *p, size_t n) {
    c->zi.next_in = (unsigned char *)p;
    c->zi.avail_in = (uInt)n;
    for (int k = 0; k < 1 << 20; k++) {
        c->zi.next_out = zbuf;
        c->zi.avail_out = sizeof zbuf;
        int ret = inflate(&c->zi, Z_SYNC_FLUSH);
        if (ret != Z_OK && ret != Z_BUF_ERROR) return -1;
        size_t produced = sizeof zbuf - c->zi.avail_out;
        c->msg_len += produced;
        if (c->zi.avail_in == 0 && c->zi.avail_out != 0) return 0;
        if (ret == Z_BUF_ERROR && produced == 0) return 0;
    }
    return -1;
}

static void on_frame_end(struct conn *c) {
    c->hdr_have = 0;
    c->hdr_need = 2;
    if (c->op == 8) {
        c->got_close = 1;
        if (O.mode == CONNECT && c->st == CLOSING) return; /* now wait for EOF */
        if (O.mode == HUB && c->ctl_len >= 2) { /* say why: 4000 is a slow consumer */
            char why[100];
            snprintf(why, sizeof why, "server closed the connection: %d %.*s",
                     (c->ctl[0] << 8) | c->ctl[1], (int)c->ctl_len - 2, (const char *)c->ctl + 2);
            for (char *q = why; *q; q++)
                if (*q == '"' || *q == '\\' || (unsigned char)*q < 0x20) *q = '\'';
            fail(c, why, 0);
            return;
        }
        fail(c, "server closed the connection", 0);
        return;
    }
    if (c->op == 9 && O.mode == HUB) { /* the hub's keepalive */
        if (append_frame(c, 10, c->ctl, c->ctl_len) < 0 || flush(c) < 0) conn_close(c);
        return;
    }
    if (c->op >= 8 || !c->fin) return; /* pings are not expected: keepalive is off */
    if (c->msg_z && inflate_chunk(c, DEFLATE_TAIL, 4) < 0) {
        fail(c, "inflate", 0);
        return;
    }
    on_message(c);
}

static void on_frame_bytes(struct conn *c, const unsigned char *p, size_t n) {
    while (n > 0 && c->st >= OPEN && c->st != CLOSED) {
        if (c->hdr_have < c->hdr_need) {
            size_t take = (size_t)(c->hdr_need - c->hdr_have);
            if (take > n) take = n;
            memcpy(c->hdr + c->hdr_have, p, take);
            c->hdr_have += (int)take;
            p += take;
            n -= take;
            if (c->hdr_have == 2) {
                if (c->hdr[1] & 0x80) {
                    fail(c, "masked frame from the server", 0);
                    return;
                }
                int l7 = c->hdr[1] & 0x7f;
                c->hdr_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
            }
            if (c->hdr_have < c->hdr_need) continue;
            uint64_t len = c->hdr[1] & 0x7f;
            if (len == 126) {
                len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            } else if (len == 127) {
                len = 0;
                for (int k = 0; k < 8; k++) len = (len << 8) | c->hdr[2 + k];
            }
            c->op = c->hdr[0] & 0x0f;
            c->fin = (c->hdr[0] & 0x80) != 0;
            c->left = len;
            if (c->op == 1 || c->op == 2) {
                c->msg_op = c->op;
                c->msg_len = 0;
                c->msg_z = c->z && (c->hdr[0] & 0x40);
                c->in_len = 0;
            }
            if (c->op >= 8) c->ctl_len = 0;
            if (c->left == 0) on_frame_end(c);
            continue;
        }
        size_t take = c->left < n ? (size_t)c->left : n;
        if (c->op < 8) {
            if (c->msg_z) {
                if (inflate_chunk(c, p, take) < 0) {
                    fail(c, "inflate", 0);
                    return;
                }
            } else {
                if (O.mode == HUB) keep_bytes(c, p, take);
                c->msg_len += take;
            }
        } else if (O.mode == HUB && c->ctl_len + take <= sizeof c->ctl) {
            memcpy(c->ctl + c->ctl_len, p, take);
            c->ctl_len += take;
        }
        p += take;
        n -= take;
        c->left -= take;
        if (c->left == 0) on_frame_end(c);
    }
}

/* http: a whole response came (head and body). */
static void on_http_response(struct conn *c) {
    c->requests--;
    c->t0 = now();
    if (c->status >= 200 && c->status < 300) {
        S.msgs++;
    } else {
        char what[48];
        snprintf(what, sizeof what, "HTTP status %d", c->status);
        note_error(what, 0);
    }
    if (c->last) {
        c->st = CLOSING; /* the server closes TCP first: wait for the end */
        return;
    }
    if (c->requests < 0) fail(c, "more responses than requests", 0);
    else send_posts(c);
}

/* http: responses, heads gathered in hs, bodies skipped. */
static void on_http_bytes(struct conn *c, const unsigned char *p, size_t n) {
    for (int k = 0; k < 1 << 20 && n > 0 && c->st == OPEN; k++) {
        if (c->left > 0) {
            size_t skip = n < c->left ? n : (size_t)c->left;
            p += skip;
            n -= skip;
            c->left -= skip;
            if (c->left == 0) on_http_response(c);
            continue;
        }
        size_t take = n < HS_MAX - 1 - c->hs_len ? n : HS_MAX - 1 - c->hs_len;
        size_t from = c->hs_len > 3 ? c->hs_len - 3 : 0;
        memcpy(c->hs + c->hs_len, p, take);
        c->hs_len += take;
        c->hs[c->hs_len] = '\0';
        char *end = strstr(c->hs + from, "\r\n\r\n");
        if (!end) {
            if (c->hs_len >= HS_MAX - 1) fail(c, "response head too long", 0);
            return;
        }
        size_t used = take - (c->hs_len - ((size_t)(end - c->hs) + 4));
        p += used;
        n -= used;
        *end = '\0';
        const char *length = strcasestr(c->hs, "\ncontent-length:");
        if (strncmp(c->hs, "HTTP/1.1 ", 9) != 0 || !length) {
            S.bad++;
            fail(c, "malformed response", 0);
            return;
        }
        c->status = atoi(c->hs + 9);
        c->left = strtoull(length + strlen("\ncontent-length:"), NULL, 10);
        c->last = strcasestr(c->hs, "\nconnection: close") != NULL;
        c->hs_len = 0;
        if (c->left == 0) on_http_response(c);
    }
}

static void on_raw_echo_bytes(struct conn *c, size_t n) {
    c->raw_got += n;
    if (c->raw_got < frame_len) return;
    if (O.mode == CONNECT) {
        S.cycles++;
        conn_close(c);
        return;
    }
    c->msg_len = O.size;
    c->msg_op = O.text ? 1 : 2;
    on_message(c);
}

static void on_eof(struct conn *c) {
    if (O.mode == CONNECT && c->st == CLOSING && c->got_close) {
        S.cycles++;
        conn_close(c);
        return;
    }
    if (O.mode == HTTP && c->st == CLOSING) { /* after an answer that said close */
        S.cycles++;
        conn_close(c);
        if (!stopping) conn_open(c);
        return;
    }
    fail(c, "server closed TCP", 0);
}

static void on_readable(struct conn *c) {
    ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (n == 0) {
        on_eof(c);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) fail(c, "recv", errno);
        return;
    }
    if (O.mode == HUB) recv_ns = now_ns();
    const unsigned char *p = rbuf;
    size_t left = (size_t)n;
    if (c == PUB && O.proto == PR_PUSHER) {
        on_pusher_bytes(c, p, left);
        return;
    }
    if (c->st == HANDSHAKE) {
        long rest = on_handshake_bytes(c, p, left);
        if (rest < 0) {
            fail(c, "handshake refused", 0);
            return;
        }
        p += left - (size_t)rest;
        left = (size_t)rest;
    }
    if (left == 0 || c->st < OPEN || c->st == CLOSED) return;
    if (O.raw && (O.mode == ECHO || O.mode == CONNECT)) on_raw_echo_bytes(c, left);
    else if (O.mode == HTTP) on_http_bytes(c, p, left);
    else on_frame_bytes(c, p, left);
}

static void on_writable(struct conn *c) {
    if (c->st != CONNECTING) {
        if (flush(c) == 0 && O.mode == HTTP) send_posts(c);
        return;
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        fail(c, "connect", err);
        return;
    }
    watch(c, 0);
    if (O.raw || O.mode == HTTP) {
        on_open(c);
        return;
    }
    if (c == PUB && O.proto == PR_PUSHER) { /* plain HTTP: the request goes now */
        pending--;
        c->st = OPEN;
        live++;
        if (queue(c, c->buf, pub_req_len) < 0) conn_close(c);
        return;
    }
    c->st = HANDSHAKE;
    const char *req = c == PUB ? pub_request : request;
    if (queue(c, (const unsigned char *)req, c == PUB ? pub_request_len : request_len) < 0)
        conn_close(c);
}

/* Modes: each tick decides what happens next; it returns 1 when the run is over. */

static double t_start, t_measure, t_ready, cpu_measure;
static int measuring, ready_printed, round_no = -1, stdin_ready;
static double round_t0, fan_seconds, fan_cpu;
static uint64_t round_d0, fan_deliveries, fan_expected;
static struct stats S0;

static void open_more(void) {
    while (next_id < O.conns && pending < O.inflight) conn_open(&C[next_id++]);
}

/* Connections stuck opening, or a connect cycle stuck closing, are cut. */
static void sweep(double t) {
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &C[i];
        int stuck_open = c->st == CONNECTING || c->st == HANDSHAKE;
        int stuck_cycle = (O.mode == CONNECT || O.mode == HTTP) && c->st >= OPEN &&
                          c->st != CLOSED;
        int stuck_subscribing = O.mode == HUB && c != PUB && c->st == OPEN &&
                                c->hub_st != H_SUBSCRIBED;
        if ((stuck_open || stuck_cycle || stuck_subscribing) && t - c->t0 > STEP_TIMEOUT)
            fail(c, stuck_subscribing ? "no answer to connect and subscribe" : "step timeout", 0);
    }
}

/* "measuring" and "measured" bracket the measured window, so that the harness
 * can read the server's CPU time over the same window. */
static void print_event(const char *name) {
    printf("{\"event\": \"%s\"}\n", name);
    fflush(stdout);
}

static int tick_timed(double t) {
    if ((O.mode == CONNECT || O.mode == HTTP) && !stopping) {
        for (int i = 0; i < O.conns; i++)
            if (C[i].st == CLOSED || C[i].st == FREE) conn_open(&C[i]);
    }
    if (!measuring && t >= t_start + O.warmup) {
        measuring = 1;
        t_measure = t;
        cpu_measure = cpu_seconds();
        S0 = S;
        print_event("measuring");
    }
    if (measuring && t >= t_measure + O.duration) {
        print_event("measured");
        return 1;
    }
    return 0;
}

static void print_ready(double t) {
    printf("{\"event\": \"ready\", \"opened\": %llu, \"failed\": %llu, \"seconds\": %.3f}\n",
           (unsigned long long)S.opened, (unsigned long long)S.failed, t - t_start);
    fflush(stdout);
    ready_printed = 1;
    t_ready = t;
}

static int tick_idle(double t) {
    open_more();
    if (!ready_printed && next_id == O.conns && pending == 0) print_ready(t);
    return ready_printed && (stdin_ready || t >= t_ready + O.hold);
}

static void start_round(double t) {
    round_no++;
    for (int i = 0; i < O.conns; i++) C[i].ended = 0;
    ended = 0;
    int m = round_no == 0 ? (O.count + 4) / 5 : O.count; /* round 0 warms up */
    char trigger[32];
    snprintf(trigger, sizeof trigger, "%d", m);
    round_t0 = t;
    round_d0 = S.deliveries;
    if (round_no == 1) {
        cpu_measure = cpu_seconds();
        print_event("measuring");
    }
    if (round_no >= 1) fan_expected += (uint64_t)m * (uint64_t)live;
    if (C[0].st != OPEN || send_text(&C[0], trigger) < 0) note_error("trigger", 0);
}

static int tick_fanout(double t) {
    open_more();
    if (!ready_printed) {
        if (next_id == O.conns && pending == 0) {
            ready_printed = 1;
            t_ready = t;
        }
        return 0;
    }
    if (round_no < 0) {
        if (t < t_ready + 0.2) return 0; /* let every server register its last client */
        if (C[0].st != OPEN) {
            note_error("first connection is not open", 0);
            return 1;
        }
        start_round(t);
        return 0;
    }
    if (live > 0 && ended < live) return 0;
    if (round_no >= 1) {
        fan_seconds += t - round_t0;
        fan_deliveries += S.deliveries - round_d0;
    }
    if (round_no >= O.rounds || live == 0) {
        fan_cpu = cpu_seconds() - cpu_measure;
        print_event("measured");
        return 1;
    }
    start_round(t);
    return 0;
}

/* hub: the phases, in order. A phase's window is bracketed by "measuring"
 * and "measured" events that name it. */

static double phase_t0, next_due, tp_seconds, tp_cpu, lat_seconds, lat_cpu, t_subscribed;
static uint64_t tp_pub0, tp_del0, tp_published, tp_deliveries;

static void print_phase_event(const char *name, const char *what) {
    printf("{\"event\": \"%s\", \"phase\": \"%s\"}\n", name, what);
    fflush(stdout);
}

static void begin_phase(enum hub_phase p, double t) {
    phase = p;
    phase_t0 = t;
    measuring = 0;
}

/* Every subscriber is open and subscribed (or the opening has failed). */
static int subscribers_settled(void) {
    if (next_id < O.conns || pending > 0) return 0;
    for (int i = 0; i < O.conns; i++)
        if (C[i].st == OPEN && C[i].hub_st != H_SUBSCRIBED) return 0;
    return 1;
}

/* Every publish request is answered and every subscriber has every publication. */
static int drained(void) {
    if (outstanding > 0) return 0;
    for (int i = 0; i < O.conns; i++)
        if (C[i].st == OPEN && C[i].last_offset < pub_top) return 0;
    return 1;
}

/* latency: publications on schedule, as long as fewer than --window are unanswered */
static void publish_due(double t) {
    for (int k = 0; k < 64 && t >= next_due; k++) {
        if (outstanding >= O.window || publish(PUB, 1) == 0) {
            late++;
            break;
        }
        next_due += 1.0 / O.rate;
    }
    if (t - next_due > 1.0) next_due = t; /* far behind: no burst to catch up */
}

/* Publications sent that an open subscriber hasn't received yet, or not answered:
 * those in flight. (Every subscriber subscribed before the first publication.) */
static uint64_t in_flight(void) {
    uint64_t least = pub_sent;
    for (int i = 0; i < O.conns; i++)
        if (C[i].st == OPEN && C[i].hub_st == H_SUBSCRIBED && C[i].got < least) least = C[i].got;
    uint64_t undelivered = pub_sent - least;
    return undelivered > (uint64_t)outstanding ? undelivered : (uint64_t)outstanding;
}

static int tick_hub(double t) {
    /* the error says why; pusher's backend closes after each request */
    if (phase >= P_BACKEND && (pub_broken || (O.proto != PR_PUSHER && PUB->st == CLOSED)))
        return 1;
    switch (phase) {
    case P_SUBSCRIBE:
        open_more();
        if (!subscribers_settled()) return 0;
        if (S.failed || S.dropped) return 1;
        if (O.hold_subscribed && !stdin_ready) {
            if (t_subscribed == 0) { /* the harness reads the server's memory now */
                t_subscribed = t;
                printf("{\"event\": \"subscribed\", \"subscribed\": %d}\n", live);
                fflush(stdout);
            }
            if (t < t_subscribed + O.hold) return 0;
        }
        if (O.proto == PR_PUSHER) pub_ready = 1; /* HTTP: nothing to open yet */
        else conn_open(PUB);
        begin_phase(P_BACKEND, t);
        return 0;
    case P_BACKEND:
        if (pub_ready) {
            begin_phase(P_THROUGHPUT, t);
        } else if (t - phase_t0 > STEP_TIMEOUT) {
            note_error("no answer to the backend's connect", 0);
            return 1;
        }
        return 0;
    case P_THROUGHPUT:
        if (!measuring && t >= phase_t0 + O.warmup) {
            measuring = 1;
            t_measure = t;
            cpu_measure = cpu_seconds();
            tp_pub0 = S.published;
            tp_del0 = S.deliveries;
            print_phase_event("measuring", "throughput");
        }
        if (measuring && t >= t_measure + O.duration) {
            tp_seconds = t - t_measure;
            tp_cpu = cpu_seconds() - cpu_measure;
            tp_published = S.published - tp_pub0;
            tp_deliveries = S.deliveries - tp_del0;
            print_phase_event("measured", "throughput");
            begin_phase(P_DRAIN1, t);
            return 0;
        }
        uint64_t busy = in_flight();
        if (busy < (uint64_t)O.window) publish(PUB, O.window - (int)busy);
        return 0;
    case P_DRAIN1:
    case P_DRAIN2:
        if (drained()) {
            if (phase == P_DRAIN2) return 1;
            begin_phase(P_LATENCY, t);
            next_due = t;
        } else if (t - phase_t0 > DRAIN_TIMEOUT) {
            note_error("subscribers still miss publications after the drain timeout", 0);
            return 1;
        }
        return 0;
    case P_LATENCY:
        if (!measuring && t >= phase_t0 + O.warmup) {
            measuring = 1;
            t_measure = t;
            cpu_measure = cpu_seconds();
            lat_t1 = UINT64_MAX;
            lat_t0 = now_ns();
            print_phase_event("measuring", "latency");
        }
        if (measuring && t >= t_measure + O.duration) {
            lat_t1 = now_ns();
            lat_seconds = t - t_measure;
            lat_cpu = cpu_seconds() - cpu_measure;
            print_phase_event("measured", "latency");
            begin_phase(P_DRAIN2, t);
            return 0;
        }
        publish_due(t);
        return 0;
    case P_DONE:
        return 1;
    }
    return 1;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank percentile p (0-100) of the sorted latencies, in µs. */
static double percentile_us(double p) {
    if (lat_n == 0) return 0;
    size_t rank = (size_t)(p / 100.0 * (double)lat_n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > lat_n) rank = lat_n;
    return (double)lat[rank - 1] / 1e3;
}

static void print_hub_fields(void) {
    uint64_t subscribed = 0;
    for (int i = 0; i < O.conns; i++)
        if (C[i].st == OPEN && C[i].hub_st == H_SUBSCRIBED) subscribed++;
    qsort(lat, lat_n, sizeof *lat, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < lat_n; i++) sum += (double)lat[i];
    printf("\"subscribed\": %llu, \"window\": %d, \"rate\": %g, "
           "\"published\": %llu, \"deliveries\": %llu, "
           "\"lat_published\": %llu, \"lat_deliveries\": %llu, \"lat_expected\": %llu, "
           "\"lat_seconds\": %.6f, \"lat_cpu\": %.4f, \"late\": %llu, "
           "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, "
           "\"mean_us\": %.1f, \"lost\": %llu, \"disorder\": %llu, ",
           (unsigned long long)subscribed, O.window, O.rate,
           (unsigned long long)tp_published, (unsigned long long)tp_deliveries,
           (unsigned long long)lat_sent, (unsigned long long)(lat_n + lat_overflow),
           (unsigned long long)(lat_sent * subscribed), lat_seconds,
           lat_seconds > 0 ? lat_cpu / lat_seconds : 0.0, (unsigned long long)late,
           percentile_us(50), percentile_us(90), percentile_us(99), percentile_us(100),
           lat_n ? sum / (double)lat_n / 1e3 : 0.0, (unsigned long long)S.lost,
           (unsigned long long)S.disorder);
}

static void print_result(double t, int timed_out) {
    struct stats d = S;
    double seconds = t - t_measure, cpu = cpu_seconds() - cpu_measure;
    if (O.mode == ECHO || O.mode == CONNECT || O.mode == HTTP) {
        d.msgs -= S0.msgs;
        d.bytes -= S0.bytes;
        d.cycles -= S0.cycles;
    }
    printf("{\"mode\": \"%s\", \"conns\": %d, \"size\": %zu, \"timed_out\": %s, ",
           (const char *[]){"echo", "connect", "idle", "fanout", "hub", "http"}[O.mode], O.conns, O.size,
           timed_out ? "true" : "false");
    printf("\"opened\": %llu, \"failed\": %llu, \"dropped\": %llu, \"errors\": %llu, "
           "\"bad\": %llu, \"deflate\": %llu, ",
           (unsigned long long)S.opened, (unsigned long long)S.failed,
           (unsigned long long)S.dropped, (unsigned long long)S.errors,
           (unsigned long long)S.bad, (unsigned long long)S.deflate);
    if (O.mode == FANOUT) {
        seconds = fan_seconds;
        cpu = fan_cpu;
        printf("\"deliveries\": %llu, \"expected\": %llu, \"rounds\": %d, ",
               (unsigned long long)fan_deliveries, (unsigned long long)fan_expected,
               round_no < 0 ? 0 : round_no);
    } else if (O.mode == IDLE) {
        seconds = t_ready > 0 ? t_ready - t_start : t - t_start;
        cpu = 0;
    } else if (O.mode == HUB) {
        seconds = tp_seconds;
        cpu = tp_cpu;
        print_hub_fields();
    } else {
        printf("\"messages\": %llu, \"bytes\": %llu, \"cycles\": %llu, ",
               (unsigned long long)d.msgs, (unsigned long long)d.bytes,
               (unsigned long long)d.cycles);
    }
    printf("\"seconds\": %.6f, \"cpu\": %.4f, \"extensions\": \"%s\", "
           "\"last_error\": \"%s\"}\n",
           seconds, seconds > 0 ? cpu / seconds : 0.0, extensions, last_error);
    fflush(stdout);
}

/* Setup */

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen echo|connect|idle|fanout|hub|http --port N [--host 127.0.0.1]\n"
            "  [--path /]\n"
            "  [--conns N] [--size BYTES] [--binary] [--raw] [--deflate] [--warmup S]\n"
            "  [--duration S] [--timeout S] [--hold S] [--count M] [--rounds R]\n"
            "  [--inflight N]\n"
            "  hub: [--channel ticker:bench] --api-key KEY [--window 16] [--rate 100]\n"
            "       [--backend-port N (default: --port)] [--hold-subscribed [--hold S]]\n"
            "       [--proto hub|socketio|pusher] pusher: --app-id ID --app-secret S\n"
            "  http: [--keepalive] [--window 16] [--channel ticker:bench] [--api-key KEY]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    if (argc < 2) usage();
    const char *modes[] = {"echo", "connect", "idle", "fanout", "hub", "http"};
    int found = 0;
    for (int m = 0; m < 6; m++)
        if (strcmp(argv[1], modes[m]) == 0) {
            O.mode = (enum mode)m;
            found = 1;
        }
    if (!found) usage();
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--binary") == 0) O.text = 0;
        else if (strcmp(a, "--raw") == 0) O.raw = 1;
        else if (strcmp(a, "--deflate") == 0) O.deflate = 1;
        else if (strcmp(a, "--keepalive") == 0) O.keepalive = 1;
        else if (strcmp(a, "--hold-subscribed") == 0) O.hold_subscribed = 1;
        else if (!v) usage();
        else if (strcmp(a, "--host") == 0) O.host = v, i++;
        else if (strcmp(a, "--path") == 0) O.path = v, i++;
        else if (strcmp(a, "--port") == 0) O.port = atoi(v), i++;
        else if (strcmp(a, "--conns") == 0) O.conns = atoi(v), i++;
        else if (strcmp(a, "--size") == 0) O.size = (size_t)strtoull(v, NULL, 10), i++;
        else if (strcmp(a, "--warmup") == 0) O.warmup = atof(v), i++;
        else if (strcmp(a, "--duration") == 0) O.duration = atof(v), i++;
        else if (strcmp(a, "--timeout") == 0) O.timeout = atof(v), i++;
        else if (strcmp(a, "--hold") == 0) O.hold = atof(v), i++;
        else if (strcmp(a, "--count") == 0) O.count = atoi(v), i++;
        else if (strcmp(a, "--rounds") == 0) O.rounds = atoi(v), i++;
        else if (strcmp(a, "--inflight") == 0) O.inflight = atoi(v), i++;
        else if (strcmp(a, "--channel") == 0) O.channel = v, i++;
        else if (strcmp(a, "--api-key") == 0) O.api_key = v, i++;
        else if (strcmp(a, "--window") == 0) O.window = atoi(v), i++;
        else if (strcmp(a, "--rate") == 0) O.rate = atof(v), i++;
        else if (strcmp(a, "--backend-port") == 0) O.backend_port = atoi(v), i++;
        else if (strcmp(a, "--app-id") == 0) O.app_id = v, i++;
        else if (strcmp(a, "--app-secret") == 0) O.app_secret = v, i++;
        else if (strcmp(a, "--proto") == 0) {
            if (strcmp(v, "hub") == 0) O.proto = PR_HUB;
            else if (strcmp(v, "socketio") == 0) O.proto = PR_SOCKETIO;
            else if (strcmp(v, "pusher") == 0) O.proto = PR_PUSHER;
            else usage();
            i++;
        }
        else usage();
    }
    if (O.port <= 0 || O.conns <= 0 || O.inflight <= 0 || O.count <= 0 || O.rounds <= 0 ||
        O.port > 65535 || O.backend_port < 0 || O.backend_port > 65535 ||
        (O.backend_port && O.mode != HUB) || (O.mode != HUB && (O.proto || O.hold_subscribed)))
        usage();
    if (O.mode == HUB || O.mode == HTTP) {
        /* names go into JSON strings as they are: keep them plain */
        const char *plain = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-.";
        if (O.deflate || O.raw || O.window <= 0 || O.rate <= 0 ||
            (O.mode == HUB && !O.api_key[0]) || strspn(O.channel, plain) != strlen(O.channel) ||
            strspn(O.api_key, plain) != strlen(O.api_key) || strlen(O.channel) > 255 ||
            strlen(O.api_key) > 255 || O.size > HUB_MSG_MAX / 2 ||
            strspn(O.app_id, plain) != strlen(O.app_id) || strlen(O.app_id) > 100 ||
            strlen(O.app_secret) > 255 ||
            (O.proto == PR_PUSHER && (!O.app_id[0] || !O.app_secret[0])))
            usage();
    }
    if (O.keepalive && O.mode != HTTP) usage();
    if (O.timeout <= 0) /* a hard deadline well past the expected end */
        O.timeout = O.mode == IDLE     ? O.hold + 120.0
                    : O.mode == FANOUT ? 300.0
                    : O.mode == HUB    ? 2 * (O.warmup + O.duration) + 2 * DRAIN_TIMEOUT + 60.0 +
                                          (O.hold_subscribed ? O.hold : 0)
                                       : O.warmup + O.duration + 60.0;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)O.conns + 65;
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur = want <= rl.rlim_max ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static size_t upgrade_request(char *dst, size_t cap, int port) {
    int n = snprintf(
        dst, cap,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
        O.path, O.host, port,
        O.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                  : "");
    if (n < 0 || (size_t)n >= cap) exit(2);
    return (size_t)n;
}

/* http: the request, --window times over (one write tops a connection up). */
static void prepare_posts(void) {
    size_t cap = O.size + 1024;
    char *body = malloc(cap), *one = malloc(cap + 1024);
    if (!body || !one) exit(2);
    /* data is {"pad":"P"}: 10 bytes around the pad */
    int pad = O.size > 10 ? (int)O.size - 10 : 0;
    int blen = snprintf(body, cap, "{\"channel\":\"%s\",\"data\":{\"pad\":\"%.*s\"}}",
                        O.channel, pad, (const char *)corpus);
    char auth[300] = "";
    if (O.api_key[0]) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", O.api_key);
    int n = snprintf(one, cap + 1024,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\n%sContent-Type: application/json\r\n"
                     "Content-Length: %d\r\n%s\r\n%s",
                     O.path, O.host, O.port, auth, blen,
                     O.keepalive ? "" : "Connection: close\r\n", body);
    if (blen < 0 || (size_t)blen >= cap || n < 0 || (size_t)n >= cap + 1024) exit(2);
    post_len = (size_t)n;
    int copies = O.keepalive ? O.window : 1;
    posts = malloc(post_len * (size_t)copies);
    if (!posts) exit(2);
    for (int k = 0; k < copies; k++) memcpy(posts + (size_t)k * post_len, one, post_len);
    free(body);
    free(one);
}

static void prepare_frames(void) {
    make_corpus();
    frame = malloc(header_len(O.size) + O.size);
    if (!frame) exit(2);
    frame_len = build_frame(frame, O.text ? 1 : 2, corpus, O.size);
    const unsigned char code[2] = {0x03, 0xe8}; /* 1000, normal closure */
    build_frame(close_frame, 8, code, 2);
    pubtext_cap = O.size + 1024;
    pubtext = malloc(pubtext_cap);
    if (!pubtext) exit(2);
    request_len = upgrade_request(request, sizeof request, O.port);
    if (O.mode == HTTP) prepare_posts();
    pub_request_len = upgrade_request(pub_request, sizeof pub_request,
                                      O.backend_port ? O.backend_port : O.port);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    prepare_frames();
    nconns = O.conns + (O.mode == HUB);
    C = calloc((size_t)nconns, sizeof *C);
    if (O.mode == HUB && C) PUB = &C[O.conns];
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!C || ep < 0) return 2;
    if (O.mode == IDLE || O.hold_subscribed) {
        struct epoll_event ev = {.events = EPOLLIN};
        ev.data.u64 = STDIN_TAG;
        epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev); /* fails for /dev/null: --hold still ends it */
    }
    t_start = now();
    t_measure = t_start;
    cpu_measure = cpu_seconds();
    if (O.mode == ECHO || O.mode == CONNECT || O.mode == HTTP) {
        for (int i = 0; i < O.conns; i++) conn_open(&C[i]);
    }
    struct epoll_event events[MAX_EVENTS];
    double deadline = t_start + O.timeout, last_sweep = t_start, t = t_start;
    int done = 0, timed_out = 0;
    for (unsigned long long loops = 0; loops < MAX_LOOPS && !done; loops++) {
        t = now();
        if (t >= deadline) {
            timed_out = 1;
            break;
        }
        if (t - last_sweep > 0.1) {
            sweep(t);
            last_sweep = t;
        }
        switch (O.mode) {
        case ECHO:
        case CONNECT:
        case HTTP: done = tick_timed(t); break;
        case IDLE: done = tick_idle(t); break;
        case FANOUT: done = tick_fanout(t); break;
        case HUB: done = tick_hub(t); break;
        }
        if (done) break;
        int wait_ms = 2;
        if (O.mode == HUB && phase == P_LATENCY) { /* wake up for the next publication */
            double ms = (next_due - now()) * 1e3;
            wait_ms = ms <= 0 ? 0 : ms < 2 ? (int)ms + 1 : 2;
        }
        int n = epoll_wait(ep, events, MAX_EVENTS, wait_ms);
        int batch = O.mode == FANOUT || (O.mode == HUB && phase != P_LATENCY);
        /* pusher's backend waits for each answer before its next request: no pause then */
        if (O.mode == HUB && O.proto == PR_PUSHER && PUB->st != CLOSED && PUB->st != FREE)
            batch = 0;
        if (batch && n > 0 && n < 64) {
            /* A trickle over many sockets: let it pile up for a moment, so that one
             * recv() takes several messages and the reader stays cheaper than the
             * server's writes (the socket buffers hold far more than this). Never
             * while latency is measured: it would add to it. */
            struct timespec pause = {0, 200 * 1000};
            nanosleep(&pause, NULL);
            n = epoll_wait(ep, events, MAX_EVENTS, 0);
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.u64 == STDIN_TAG) {
                stdin_ready = 1;
                epoll_ctl(ep, EPOLL_CTL_DEL, 0, NULL);
                continue;
            }
            struct conn *c = &C[events[i].data.u64];
            if (c->st == FREE || c->st == CLOSED) continue;
            if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                if (c->st == CONNECTING || c->out_off < c->out_len) on_writable(c);
            }
            if (c->st != CLOSED && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                on_readable(c);
        }
    }
    if (timed_out) note_error("timed out", 0);
    stopping = 1;
    if (O.mode == IDLE && !ready_printed) print_ready(t);
    print_result(t, timed_out);
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &C[i];
        if (c->st == OPEN && !O.raw && O.mode != HTTP)
            send(c->fd, close_frame, sizeof close_frame, MSG_NOSIGNAL);
        conn_close(c);
    }
    return 0;
}
