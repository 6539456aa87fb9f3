/* Write-invalidate across processes through Redis client tracking: other processes'
 * and redis-cli's writes reach this process's L1; and after each way tracking can
 * silently break (subscriber killed, a data connection killed, a tiny tracking
 * table, FLUSHALL, a stalled server) no stale value outlives the bound. The bound
 * asserted here is generous (BOUND_MS); the bench measures the real latency. */
#include "redis_helpers.h"

#define BOUND_MS 2000

NKC_REDIS_FIXTURE()
TestSuite(tracking, .init = setup, .fini = teardown, .timeout = 90);

static cache_t *open_tracked(const char *prefix)
{
    cache_config_t *cfg = redis_config(prefix, &db);
    cfg_set(cfg, "l1.ttl_ms", "300000"); /* without invalidation, stale for 5 minutes */
    cache_t *cc = open_or_die(cfg);
    cache_config_free(cfg);
    return cc;
}

static cache_tier_t read_tier(const char *key, char *buf, size_t cap)
{
    cache_value_t *v = NULL;
    cache_get_info_t info = {.struct_size = sizeof(info)};
    cache_err_t err = cache_get_ex(c, key, strlen(key), &v, &info);
    cr_assert_eq(err, CACHE_OK, "%s", cache_strerror(err));
    snprintf(buf, cap, "%.*s", (int)cache_value_len(v), (const char *)cache_value_data(v));
    cache_value_release(v);
    return info.tier;
}

/* Reads key into L1 and checks the next read is an L1 hit (so the test bites). */
static void warm(const char *key)
{
    char buf[128];
    read_tier(key, buf, sizeof(buf));
    cr_assert_eq(read_tier(key, buf, sizeof(buf)), CACHE_TIER_L1, "%s is in L1", key);
}

/* Polls until key reads as want; returns the milliseconds it took, or fails. */
static double wait_for(const char *key, const char *want)
{
    int64_t t0 = nkc_now_ns();
    char buf[128] = "";
    while (ms_since(t0) < BOUND_MS) {
        read_tier(key, buf, sizeof(buf));
        if (strcmp(buf, want) == 0)
            return ms_since(t0);
        usleep(5000);
    }
    cr_assert_fail("%s still reads \"%s\" after %d ms, want \"%s\"", key, buf, BOUND_MS, want);
    return -1;
}

static void raw_set_value(redisContext *r, const char *prefix, const char *key, const char *val)
{
    char k[128], v[128];
    snprintf(k, sizeof(k), "%s%s", prefix, key);
    snprintf(v, sizeof(v), "V%s", val);
    redisReply *rep = redisCommand(r, "SET %s %s", k, v);
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
}

Test(tracking, another_process_writes_reach_this_l1)
{
    c = open_tracked("tp:");
    warm("product:1");
    cr_assert_eq(peer("tp:", "set", "product:1", "price 20"), 0);
    wait_for("product:1", "price 20");
    warm("product:1");
    atomic_store(&db.version, 7);
    cr_assert_eq(peer("tp:", "del", "product:1", NULL), 0);
    wait_for("product:1", "v:product:1:7");
    cr_assert(stat_of(c, "tracking.invalidations") >= 2);
}

Test(tracking, redis_cli_writes_reach_this_l1)
{
    c = open_tracked("tc:");
    warm("k");
    redisContext *r = raw_connect();
    raw_set_value(r, "tc:", "k", "from cli");
    wait_for("k", "from cli");
    warm("k");
    atomic_store(&db.version, 3);
    raw_ok(r, "DEL tc:k");
    wait_for("k", "v:k:3");
    warm("k");
    raw_ok(r, "PEXPIRE tc:k 1"); /* expiry is a write too */
    atomic_store(&db.version, 4);
    wait_for("k", "v:k:4");
    redisFree(r);
}

Test(tracking, own_writes_are_read_your_writes_and_stay_tracked)
{
    c = open_tracked("to:");
    cr_assert_eq(cache_set(c, "k", 1, "mine", 4, 0), CACHE_OK);
    char buf[64];
    cr_assert_eq(read_tier("k", buf, sizeof(buf)), CACHE_TIER_L1);
    cr_assert_str_eq(buf, "mine");
    /* the copy our own write left in L1 is still invalidated by others */
    redisContext *r = raw_connect();
    raw_set_value(r, "to:", "k", "theirs");
    wait_for("k", "theirs");
    redisFree(r);
}

Test(tracking, killed_subscriber_drops_l1_copies)
{
    c = open_tracked("tk:");
    warm("k");
    redisContext *r = raw_connect();
    raw_ok(r, "CLIENT KILL TYPE pubsub");
    raw_set_value(r, "tk:", "k", "written while deaf"); /* its invalidation is lost */
    wait_for("k", "written while deaf");
    cr_assert(stat_of(c, "tracking.subscriber_losses") >= 1);
    /* and tracking comes back: a later write is seen again */
    usleep(300 * 1000);
    warm("k");
    raw_set_value(r, "tk:", "k", "after resubscribe");
    wait_for("k", "after resubscribe");
    redisFree(r);
}

Test(tracking, killed_data_connection_drops_what_it_read)
{
    c = open_tracked("td:");
    warm("k");
    redisContext *r = raw_connect();
    long long me = raw_int(r, "CLIENT ID", NULL);
    redisReply *list = redisCommand(r, "CLIENT LIST TYPE normal");
    cr_assert(list && list->type == REDIS_REPLY_STRING);
    int killed = 0;
    for (char *line = strtok(list->str, "\n"); line; line = strtok(NULL, "\n")) {
        long long id = 0;
        if (sscanf(line, "id=%lld", &id) == 1 && id != me) {
            char cmd[64];
            snprintf(cmd, sizeof(cmd), "CLIENT KILL ID %lld", id);
            raw_ok(r, cmd);
            killed++;
        }
    }
    freeReplyObject(list);
    cr_assert(killed >= 1);
    raw_set_value(r, "td:", "k", "nobody told you"); /* Redis forgot the tracking */
    wait_for("k", "nobody told you");
    cr_assert(stat_of(c, "tracking.generations_retired") >= 1);
    redisFree(r);
}

Test(tracking, tiny_tracking_table)
{
    redisContext *r = raw_connect();
    raw_ok(r, "CONFIG SET tracking-table-max-keys 10");
    c = open_tracked("tt:");
    char key[16], want[32];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        warm(key);
    }
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(want, sizeof(want), "new %d", i);
        raw_set_value(r, "tt:", key, want);
    }
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        snprintf(want, sizeof(want), "new %d", i);
        wait_for(key, want);
    }
    raw_ok(r, "CONFIG SET tracking-table-max-keys 0");
    redisFree(r);
}

Test(tracking, flushall_drops_l1_copies)
{
    c = open_tracked("tf:");
    warm("k");
    atomic_store(&db.version, 9);
    redisContext *r = raw_connect();
    raw_ok(r, "FLUSHALL");
    wait_for("k", "v:k:9");
    redisFree(r);
}

Test(tracking, stalled_server_then_write)
{
    cache_config_t *cfg = redis_config_fast("ts:", &db);
    cfg_set(cfg, "l1.ttl_ms", "300000");
    c = open_consuming(cfg);
    warm("k");
    stopped = redis_pid();
    cr_assert_eq(kill(stopped, SIGSTOP), 0);
    usleep(1500 * 1000); /* longer than two ping intervals */
    kill(stopped, SIGCONT);
    stopped = 0;
    redisContext *r = raw_connect();
    raw_set_value(r, "ts:", "k", "after the stall");
    wait_for("k", "after the stall");
    redisFree(r);
}

Test(tracking, untracked_copies_live_briefly)
{
    redisContext *r = raw_connect();
    raw_ok(r, "ACL SETUSER notrack on >pw ~* &* +@all -client|tracking");
    char url[128];
    snprintf(url, sizeof(url), "redis://notrack:pw@127.0.0.1:%d", redis_port());
    cache_config_t *cfg = redis_config("tu:", &db);
    cfg_set(cfg, "l2.url", url);
    cfg_set(cfg, "l2.untracked_l1_ttl_ms", "200");
    c = open_consuming(cfg);
    char buf[64];
    read_tier("k", buf, sizeof(buf));
    cr_assert_eq(read_tier("k", buf, sizeof(buf)), CACHE_TIER_L1);
    usleep(300 * 1000);
    cr_assert_eq(read_tier("k", buf, sizeof(buf)), CACHE_TIER_L2,
                 "an untracked copy lives at most l2.untracked_l1_ttl_ms");
    cr_assert(stat_of(c, "tracking.untracked_connects") >= 1);
    redisFree(r);
}

Test(tracking, failed_deletes_are_replayed_when_redis_returns)
{
    cache_config_t *cfg = redis_config_fast("tr:", &db);
    cfg_set(cfg, "l2.retry_invalidations", "16");
    c = open_consuming(cfg);
    cr_assert_eq(cache_set(c, "k", 1, "old", 3, 0), CACHE_OK);
    stopped = redis_pid();
    cr_assert_eq(kill(stopped, SIGSTOP), 0);
    cache_err_t err = cache_del(c, "k", 1);
    cr_assert(err == CACHE_EL2 || err == CACHE_ETIMEOUT, "%s", cache_strerror(err));
    cr_assert_eq(stat_of(c, "retry.queued"), 1);
    kill(stopped, SIGCONT);
    stopped = 0;
    redisContext *r = raw_connect();
    int64_t t0 = nkc_now_ns();
    while (raw_int(r, "EXISTS %s", "tr:k") != 0 && ms_since(t0) < BOUND_MS)
        usleep(10 * 1000);
    cr_assert_eq(raw_int(r, "EXISTS %s", "tr:k"), 0, "the delete was replayed");
    while (stat_of(c, "retry.replayed") != 1 && ms_since(t0) < BOUND_MS)
        usleep(10 * 1000);
    cr_assert_eq(stat_of(c, "retry.replayed"), 1);
    redisFree(r);
}

/* ---- the GET-reply-vs-invalidation race, made deterministic ---- */

static struct {
    _Atomic int armed, sent, release;
    pthread_t reader;
} hook;

static void after_send(void *udata)
{
    (void)udata;
    if (!atomic_load(&hook.armed) || !pthread_equal(pthread_self(), hook.reader))
        return;
    atomic_store(&hook.armed, 0);
    atomic_store(&hook.sent, 1);
    for (int i = 0; i < 10000 && !atomic_load(&hook.release); i++) /* at most 10 s */
        usleep(1000);
}

static void *race_reader(void *arg)
{
    char *buf = arg;
    read_tier("race", buf, 64);
    return NULL;
}

/* The reader's lookup reaches Redis and reads "old"; before its reply is read, a
 * writer sets "new" and the invalidation arrives. Returns what L1 serves after. */
static cache_tier_t race_run(const char *prefix, int overtake, char *after, size_t cap)
{
    memset(&hook, 0, sizeof(hook));
    cache_config_t *cfg = redis_config(prefix, &db);
    cfg_set(cfg, "l1.ttl_ms", "300000");
    nkc_config_set_test_after_send(cfg, after_send, NULL, !overtake);
    c = open_consuming(cfg);
    redisContext *r = raw_connect();
    raw_set_value(r, prefix, "race", "old");
    char got[64] = "";
    atomic_store(&hook.armed, 1);
    cr_assert_eq(pthread_create(&hook.reader, NULL, race_reader, got), 0);
    wait_flag(&hook.sent);
    usleep(50 * 1000); /* the lookup has run: the key is tracked for that connection */
    long long before = stat_of(c, "tracking.invalidations");
    raw_set_value(r, prefix, "race", "new");
    for (int i = 0; i < 200 && stat_of(c, "tracking.invalidations") == before; i++)
        usleep(5000);
    atomic_store(&hook.release, 1);
    cr_assert(stat_of(c, "tracking.invalidations") > before, "the invalidation arrived");
    pthread_join(hook.reader, NULL);
    cr_assert_str_eq(got, "old", "the reader answers with what its lookup read");
    redisFree(r);
    return read_tier("race", after, cap);
}

Test(tracking, reply_racing_an_invalidation_is_not_kept)
{
    char after[64];
    cache_tier_t tier = race_run("trace1:", 1, after, sizeof(after));
    cr_assert_str_eq(after, "new", "L1 must not keep the overtaken reply");
    cr_assert_neq(tier, CACHE_TIER_L1);
}

Test(tracking, reply_race_control_without_the_check_serves_stale)
{
    char after[64];
    cache_tier_t tier = race_run("trace2:", 0, after, sizeof(after));
    cr_assert_eq(tier, CACHE_TIER_L1);
    cr_assert_str_eq(after, "old", "without the check the stale reply is kept");
}
