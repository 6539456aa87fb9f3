/* The Redis client under faults: a stalled server (SIGSTOP) against deadlines and
 * the breaker, killed connections, hostile replies from a fake server, SIGPIPE,
 * AUTH failures, a least-privilege ACL user, and everything a reconnect must
 * re-apply (AUTH, SELECT, keep-alive, deadlines, reader limits). */
#include "fake_redis.h"
#include "redis_helpers.h"

#include <netinet/tcp.h>

static struct fake_db db;
static cache_t *c;

static void setup(void) { memset(&db, 0, sizeof(db)); }
static int default_pw_set;

static void teardown(void)
{
    if (stopped)
        kill(stopped, SIGCONT);
    stopped = 0;
    if (default_pw_set) { /* put the default user back for the next test */
        redisContext *r = raw_connect();
        freeReplyObject(redisCommand(r, "AUTH default default-pw"));
        freeReplyObject(redisCommand(r, "ACL SETUSER default nopass"));
        redisFree(r);
        default_pw_set = 0;
    }
    cache_close(c);
    c = NULL;
}
TestSuite(faults, .init = setup, .fini = teardown, .timeout = 90);

static void kill_with(redisContext *r)
{
    redisReply *rep = redisCommand(r, "CLIENT KILL TYPE normal SKIPME yes");
    cr_assert(rep && rep->type == REDIS_REPLY_INTEGER, "CLIENT KILL: %s",
              rep && rep->str ? rep->str : "");
    freeReplyObject(rep);
}

static void kill_our_connections(void)
{
    redisContext *r = raw_connect();
    kill_with(r);
    redisFree(r);
}

Test(faults, killed_pooled_connections_are_replaced)
{
    cache_config_t *cfg = redis_config("kill:", &db);
    c = open_consuming(cfg);
    char key[16], buf[64];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(get_str(c, key, buf, sizeof(buf)), CACHE_OK);
    }
    for (int round = 0; round < 3; round++) {
        kill_our_connections();
        snprintf(key, sizeof(key), "after%d", round);
        cr_assert_eq(cache_set(c, key, strlen(key), "v", 1, 0), CACHE_OK,
                     "a write right after CLIENT KILL still lands");
        cr_assert_eq(cache_del(c, "k1", 2), CACHE_OK);
    }
    cr_assert(stat_of(c, "l2.reconnects") >= 3);
    cr_assert_eq(stat_of(c, "ops.write_failures"), 0);
}

struct timed_ops {
    pthread_t t;
    int id;
    double worst_ms;
    int calls;
    _Atomic int *stop;
};

static void *timed_main(void *arg)
{
    struct timed_ops *o = arg;
    char key[32], buf[64];
    for (int i = 0; !atomic_load(o->stop); i++) {
        snprintf(key, sizeof(key), "t%d:%d", o->id, i);
        int64_t t0 = nkc_now_ns();
        if (i % 2)
            cache_set(c, key, strlen(key), "v", 1, 0);
        else
            get_str(c, key, buf, sizeof(buf));
        double ms = ms_since(t0);
        if (ms > o->worst_ms)
            o->worst_ms = ms;
        o->calls++;
    }
    return NULL;
}

Test(faults, stalled_server_deadlines_and_breaker)
{
    cache_config_t *cfg = redis_config_fast("stall:", &db);
    cfg_set(cfg, "l2.breaker.failures", "3");
    cfg_set(cfg, "l2.breaker.cooldown_ms", "300");
    c = open_consuming(cfg);
    char buf[64];
    kill_our_connections(); /* deadlines must hold on reconnected sockets too */
    cr_assert_eq(get_str(c, "warm", buf, sizeof(buf)), CACHE_OK);
    stopped = redis_pid();
    cr_assert_eq(kill(stopped, SIGSTOP), 0);
    _Atomic int stop = 0;
    struct timed_ops ops[4];
    for (int i = 0; i < 4; i++) {
        ops[i] = (struct timed_ops){.id = i, .stop = &stop};
        pthread_create(&ops[i].t, NULL, timed_main, &ops[i]);
    }
    usleep(1200 * 1000);
    char *stats = cache_stats_json(c);
    int opened = strstr(stats, "\"breaker\":\"open\"") || strstr(stats, "\"breaker\":\"half_open\"");
    cache_free(stats);
    atomic_store(&stop, 1);
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(ops[i].t, NULL);
        worst = ops[i].worst_ms > worst ? ops[i].worst_ms : worst;
        cr_assert(ops[i].calls > 3, "calls kept returning while Redis stalled");
    }
    kill(stopped, SIGCONT);
    stopped = 0;
    /* bound: reconnect handshake (200) + one round trip (100) + a generous margin */
    cr_assert(worst < 200 + 100 + 400, "a call took %.0f ms", worst);
    cr_assert(opened, "the breaker opened while Redis was stalled");
    cr_assert(stat_of(c, "l2.breaker_trips") >= 1);
    cr_assert(stat_of(c, "l2.skipped_breaker_open") > 0);
    /* after the cooldown one probe closes it again */
    cache_err_t err = CACHE_EL2;
    for (int i = 0; i < 40 && err != CACHE_OK; i++) {
        usleep(100 * 1000);
        err = cache_set(c, "back", 4, "v", 1, 0);
    }
    cr_assert_eq(err, CACHE_OK, "Redis is used again after it returns");
}

Test(faults, while_redis_is_down_writes_fail_and_reads_serve)
{
    cache_config_t *cfg = redis_config_fast("down:", &db);
    cfg_set(cfg, "l2.down_l1_ttl_ms", "300");
    c = open_consuming(cfg);
    char buf[64];
    cr_assert_eq(cache_set(c, "held", 4, "old", 3, 0), CACHE_OK);
    stopped = redis_pid();
    cr_assert_eq(kill(stopped, SIGSTOP), 0);
    cache_err_t err = cache_set(c, "held", 4, "new", 3, 0);
    cr_assert(err == CACHE_ETIMEOUT || err == CACHE_EL2, "%s", cache_strerror(err));
    cr_assert_eq(get_str(c, "held", buf, sizeof(buf)), CACHE_OK);
    cr_assert_str_eq(buf, "v:held:0", "the old L1 copy was dropped; the loader answered");
    err = cache_del(c, "gone", 4);
    cr_assert(err == CACHE_ETIMEOUT || err == CACHE_EL2, "%s", cache_strerror(err));
    /* reads go on: L1, then the loader, with L1 TTLs capped at l2.down_l1_ttl_ms */
    int calls = atomic_load(&db.calls);
    cr_assert_eq(get_str(c, "fresh", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(get_str(c, "fresh", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(atomic_load(&db.calls), calls + 1, "the second read is an L1 hit");
    usleep(400 * 1000);
    cr_assert_eq(get_str(c, "fresh", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(atomic_load(&db.calls), calls + 2, "the L1 copy lived at most 300 ms");
    kill(stopped, SIGCONT);
    stopped = 0;
}

/* ---- a fake server ---- */

static cache_config_t *fake_config(struct fake_redis *f)
{
    char url[64];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", f->port);
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "l2.url", url);
    cfg_set(cfg, "l2.timeout_ms", "300");
    cfg_set(cfg, "l2.connect_timeout_ms", "300");
    cfg_set(cfg, "l2.max_value_bytes", "1KiB");
    cfg_set(cfg, "l2.tracking", "off"); /* the fake speaks only what each test scripts */
    cache_config_set_loader(cfg, fake_loader, &db);
    return cfg;
}

Test(faults, hostile_array_header_allocates_nothing)
{
    struct fake_redis f = {0};
    f.replies[0][0] = "*2147483647\r\n"; /* the handshake PING gets it */
    cr_assert_eq(fake_start(&f), 0);
    cache_config_t *cfg = fake_config(&f);
    char err[256] = "";
    cr_assert_eq(cache_open(&c, cfg, err, sizeof(err)), CACHE_EL2, "%s", err);
    cache_config_free(cfg);
    fake_stop(&f);
}

Test(faults, hostile_replies_after_a_good_handshake_fall_back_to_the_loader)
{
    struct fake_redis f = {0};
    static char huge_bulk[4096];
    snprintf(huge_bulk, sizeof(huge_bulk), "$2147483647\r\n");
    memset(huge_bulk + strlen(huge_bulk), 'x', sizeof(huge_bulk) - strlen(huge_bulk) - 1);
    f.replies[0][0] = "+PONG\r\n";
    f.replies[0][1] = "*2147483647\r\n";
    f.replies[1][0] = "+PONG\r\n";
    f.replies[1][1] = huge_bulk; /* bigger than l2.max_value_bytes: never buffered whole */
    f.replies[2][0] = "+PONG\r\n";
    f.replies[2][1] = "*3\r\n:1\r\n$-5\r\n:7\r\n"; /* a protocol error */
    cr_assert_eq(fake_start(&f), 0);
    cache_config_t *cfg = fake_config(&f);
    cfg_set(cfg, "l2.pool_size", "1");
    cfg_set(cfg, "l2.breaker.failures", "100");
    c = open_consuming(cfg);
    char buf[64];
    const char *keys[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        /* each reply poisons the connection; the next key reconnects, and the new
         * connection has the same reader limits */
        cr_assert_eq(get_str(c, keys[i], buf, sizeof(buf)), CACHE_OK);
        cr_assert_eq(buf[0], 'v', "served by the loader");
    }
    cr_assert(stat_of(c, "l2.protocol_errors") >= 2, "%lld", stat_of(c, "l2.protocol_errors"));
    cr_assert_eq(atomic_load(&f.accepted), 3);
    cache_close(c);
    c = NULL;
    fake_stop(&f);
}

Test(faults, dripping_server_cannot_hold_a_call_past_its_deadline)
{
    struct fake_redis f = {0};
    f.replies[0][0] = "+PONG\r\n";
    f.replies[0][1] = "*3\r\n:1\r\n$5\r\nVhello\r\n:1000\r\n";
    f.drip_ms = 0;
    cr_assert_eq(fake_start(&f), 0);
    cache_config_t *cfg = fake_config(&f);
    cfg_set(cfg, "l2.timeout_ms", "100");
    c = open_consuming(cfg);
    f.drip_ms = 30; /* from now on, one byte every 30 ms: ~1 s for the reply */
    char buf[64];
    int64_t t0 = nkc_now_ns();
    cr_assert_eq(get_str(c, "x", buf, sizeof(buf)), CACHE_OK);
    double ms = ms_since(t0);
    cr_assert(ms < 100 + 150, "the call took %.0f ms against a 100 ms deadline", ms);
    cr_assert(stat_of(c, "l2.timeouts") >= 1);
    cache_close(c);
    c = NULL;
    fake_stop(&f);
}

Test(faults, dead_server_mid_write_raises_no_sigpipe)
{
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill this process */
    struct fake_redis f = {0};
    f.replies[0][0] = "+PONG\r\n"; /* then the server closes on the next command */
    cr_assert_eq(fake_start(&f), 0);
    cache_config_t *cfg = fake_config(&f);
    cfg_set(cfg, "l2.max_value_bytes", "16MiB");
    cfg_set(cfg, "l2.pool_size", "1");
    c = open_consuming(cfg);
    static char big[8 << 20];
    for (int i = 0; i < 3; i++)
        cr_assert_neq(cache_set(c, "big", 3, big, sizeof(big), 0), CACHE_OK);
    cache_close(c);
    c = NULL;
    fake_stop(&f);
}

/* ---- AUTH, ACL, SELECT ---- */

Test(faults, wrong_password_fails_closed_and_is_never_shown)
{
    char url[128], err[256] = "";
    snprintf(url, sizeof(url), "redis://:Sekr1t-pw@127.0.0.1:%d", redis_port());
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "l2.url", url);
    cr_assert_eq(cache_open(&c, cfg, err, sizeof(err)), CACHE_EL2);
    cr_assert_null(strstr(err, "Sekr1t"), "%s", err);
    cr_assert(strstr(err, "AUTH") != NULL, "%s", err);
    redisContext *r = raw_connect();
    raw_ok(r, "ACL SETUSER wrongpw on >right-pw ~* +@all");
    snprintf(url, sizeof(url), "redis://wrongpw:Sekr1t-pw@127.0.0.1:%d", redis_port());
    cfg_set(cfg, "l2.url", url);
    cr_assert_eq(cache_open(&c, cfg, err, sizeof(err)), CACHE_EL2);
    cr_assert_null(strstr(err, "Sekr1t"), "%s", err);
    cache_config_free(cfg);
    redisFree(r);
}

/* The ACL the README documents for a cache with prefix "app:". */
#define APP_ACL "ACL SETUSER nkcapp on >app-pw resetkeys ~app:* resetchannels " \
                "&__redis__:invalidate -@all +ping +select +eval +getex +set +del +pttl " \
                "+strlen +client|id +client|tracking +subscribe"

Test(faults, least_privilege_acl_user_and_reconnect_reapplies_auth_and_select)
{
    redisContext *r = raw_connect();
    raw_ok(r, APP_ACL);
    char url[128];
    snprintf(url, sizeof(url), "redis://nkcapp:app-pw@127.0.0.1:%d/3", redis_port());
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "l2.url", url);
    cfg_set(cfg, "l2.key_prefix", "app:");
    cache_config_set_loader(cfg, fake_loader, &db);
    c = open_or_die(cfg);
    char buf[64];
    cr_assert_eq(get_str(c, "p1", buf, sizeof(buf)), CACHE_OK);
    cr_assert_eq(cache_set(c, "p2", 2, "two", 3, 0), CACHE_OK);
    cr_assert_eq(cache_del(c, "p1", 2), CACHE_OK);
    cr_assert_eq(stat_of(c, "l2.fills"), 1, "the lease scripts run under the ACL");
    /* now unauthenticated connections are refused, and every pooled socket dies */
    default_pw_set = 1;
    raw_ok(r, "ACL SETUSER default on resetpass >default-pw");
    kill_with(r); /* r stays: SKIPME, and it authenticated before the password */
    cr_assert_eq(cache_set(c, "p3", 2, "three", 5, 0), CACHE_OK, "AUTH was re-applied");
    raw_ok(r, "SELECT 3");
    size_t len;
    char *raw = raw_get(r, "app:p3", 6, &len);
    cr_assert_not_null(raw, "SELECT was re-applied: the write is in db 3");
    free(raw);
    raw_ok(r, "SELECT 0");
    raw = raw_get(r, "app:p3", 6, &len);
    cr_assert_null(raw);
    /* keep-alive is set on the new sockets */
    int fd = nkc_l2_conn_fd(c->l2, 0), on = 0;
    socklen_t sl = sizeof(on);
    cr_assert(fd >= 0);
    cr_assert_eq(getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &sl), 0);
    cr_assert(on, "SO_KEEPALIVE after reconnect");
    raw_ok(r, "ACL SETUSER default nopass");
    /* a key outside the ACL's pattern is refused, as an error, not a crash */
    cache_close(c);
    cfg_set(cfg, "l2.key_prefix", "other:");
    c = open_or_die(cfg);
    cr_assert_eq(cache_set(c, "x", 1, "v", 1, 0), CACHE_EL2);
    cr_assert_eq(get_str(c, "x", buf, sizeof(buf)), CACHE_OK, "reads fall back to the loader");
    cache_config_free(cfg);
    redisFree(r);
}

Test(faults, unix_socket_url)
{
    const char *sock = getenv("NKC_REDIS_SOCKET");
    cr_assert_not_null(sock);
    char url[300];
    snprintf(url, sizeof(url), "unix://%s?db=2", sock);
    cache_config_t *cfg = cache_config_new();
    cfg_set(cfg, "l2.url", url);
    c = open_consuming(cfg);
    cr_assert_eq(cache_set(c, "unixkey", 7, "v", 1, 0), CACHE_OK);
    redisContext *r = raw_connect();
    raw_ok(r, "SELECT 2");
    cr_assert_eq(raw_int(r, "EXISTS %s", "unixkey"), 1);
    redisFree(r);
}
