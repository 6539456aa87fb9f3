/*
 * product_service: the quick-commerce playbook's product service, for real.
 *
 * Products live in SQLite, the database (L3). The service caches each one as JSON under
 * the key "product:<id>", through libnakkucache: an in-process L1 and, with --redis, a
 * Redis L2 (5-minute TTL) shared by every copy of the service. Reads go through
 * cache_get: on a miss at every level the loader queries SQLite. A write updates SQLite
 * in a transaction, then cache_del drops the key from Redis and from every copy's L1.
 *
 *   product_service [OPTIONS]                  the scripted demo: reads, an update, reads
 *   product_service [OPTIONS] get ID           prints product ID
 *   product_service [OPTIONS] update ID PRICE  sets product ID's price (e.g. 12.50)
 *   product_service [OPTIONS] watch ID         prints product ID each time it changes
 *
 * `product_service --help` lists the options; docs/EXAMPLES.md shows the two-process demo.
 */
#define _POSIX_C_SOURCE 200809L /* sigaction, nanosleep, clock_gettime, strdup */

#include <nakkucache.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_PREFIX "product:"
#define KEY_SIZE 32                     /* "product:" and up to 19 digits, with room */
#define MAX_SEED_PRODUCTS 1000000LL     /* --seed-products bound */
#define MAX_PRICE_CENTS 100000000LL     /* one million, in cents */
#define DB_BUSY_TIMEOUT_MS 2000         /* how long SQLite waits for another writer */
#define DEMO_PRODUCT 1LL                /* the demo reads and updates this product */
#define DEMO_MISSING_PRODUCT 9999999LL  /* above MAX_SEED_PRODUCTS: never seeded */

/* The service's state: one database connection and the cache in front of it. */
struct shop {
    sqlite3 *db;
    sqlite3_stmt *select_product; /* one product by id; prepared once, reused */
    sqlite3_stmt *update_price;   /* one product's price by id */
    /* Protects db and both statements. The loader runs in whichever thread missed
     * (several at once, for different keys) and a statement serves one at a time; a
     * busier service would give each thread its own connection instead. */
    pthread_mutex_t db_lock;
    cache_t *cache;
};

enum command { CMD_DEMO, CMD_GET, CMD_UPDATE, CMD_WATCH };

struct options {
    enum command command;
    long long id;            /* get, update, watch: the product */
    long long price_cents;   /* update: the new price */
    const char *db_path;     /* --db; NULL: a private in-memory database */
    const char *redis_url;   /* --redis; NULL: L1 and the loader only */
    const char *key_prefix;  /* --key-prefix: this service's namespace in Redis */
    long long seed_products; /* --seed-products: rows a new database starts with */
    long long duration_ms;   /* watch --duration-ms */
    long long interval_ms;   /* watch --interval-ms */
    long long max_changes;   /* watch --changes; 0 = until the duration ends */
};

/* Set by SIGINT/SIGTERM during `watch`, read by its loop. volatile sig_atomic_t is the
 * one type C lets a signal handler write; the handler runs in the main thread, the
 * loop's, because the library's threads block signals. */
static volatile sig_atomic_t stop_requested;

static void request_stop(int signo)
{
    (void)signo;
    stop_requested = 1;
}

/* ---- small parsers ------------------------------------------------------------------ */

/* Parses text as a whole decimal number in [min, max]: 0 on success, -1 otherwise. */
static int parse_number(const char *text, long long min, long long max, long long *out)
{
    char *end;
    if (*text < '0' || *text > '9') /* strtoll would accept spaces and signs */
        return -1;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

/* Parses a price such as "12", "12.5" or "12.50" into cents: 0 on success, -1 otherwise. */
static int parse_price(const char *text, long long *cents)
{
    char units_text[24];
    const char *dot = strchr(text, '.');
    size_t n = dot ? (size_t)(dot - text) : strlen(text);
    long long units, fraction = 0;
    if (n == 0 || n >= sizeof units_text)
        return -1;
    memcpy(units_text, text, n);
    units_text[n] = '\0';
    if (parse_number(units_text, 0, MAX_PRICE_CENTS / 100, &units) != 0)
        return -1;
    if (dot) {
        size_t digits = strlen(dot + 1);
        if (digits < 1 || digits > 2 || parse_number(dot + 1, 0, 99, &fraction) != 0)
            return -1;
        if (digits == 1)
            fraction *= 10; /* "12.5" is 12.50 */
    }
    *cents = units * 100 + fraction;
    return *cents <= MAX_PRICE_CENTS ? 0 : -1;
}

/* Writes the cache key of product id, "product:<id>", to key and returns its length. */
static size_t product_key(char key[KEY_SIZE], long long id)
{
    int n = snprintf(key, KEY_SIZE, KEY_PREFIX "%lld", id);
    return n > 0 && n < KEY_SIZE ? (size_t)n : 0;
}

/* The product id in a cache key (bytes, not NUL-terminated): 0, or -1 when the key is
 * not "product:<id>". */
static int parse_product_key(const void *key, size_t klen, long long *id)
{
    const size_t prefix_len = sizeof KEY_PREFIX - 1;
    char digits[KEY_SIZE];
    if (klen <= prefix_len || klen - prefix_len >= sizeof digits ||
        memcmp(key, KEY_PREFIX, prefix_len) != 0)
        return -1;
    memcpy(digits, (const char *)key + prefix_len, klen - prefix_len);
    digits[klen - prefix_len] = '\0';
    return parse_number(digits, 1, LLONG_MAX, id);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal cuts it short: the caller checks stop_requested */
}

/* ---- the database (L3) ------------------------------------------------------------- */

/* Runs one SQL statement without results; reports a failure on stderr. */
static int db_exec(sqlite3 *db, const char *sql)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fprintf(stderr, "product_service: SQLite: %s: %s\n", sql, sqlite3_errmsg(db));
    return rc;
}

/* Ends the transaction that BEGIN opened: COMMIT when rc is SQLITE_OK, else (or when
 * COMMIT fails, e.g. busy) ROLLBACK. Returns rc, or COMMIT's failure. */
static int db_finish(sqlite3 *db, int rc)
{
    if (rc == SQLITE_OK)
        rc = db_exec(db, "COMMIT");
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db)) /* a transaction is still open */
        db_exec(db, "ROLLBACK");
    return rc;
}

/* Inserts products 1..n, in the transaction the caller opened. */
static int insert_products(sqlite3 *db, long long n)
{
    static const char *const names[] = {"teapot", "oat milk 1 l", "bananas (6)",
                                        "coffee beans 250 g", "sourdough loaf", "eggs (12)",
                                        "basmati rice 1 kg", "olive oil 500 ml"};
    const size_t n_names = sizeof names / sizeof names[0];
    sqlite3_stmt *insert = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT INTO products (id, name, price_cents, stock) "
                                    "VALUES (?1, ?2, ?3, ?4)", -1, &insert, NULL);
    for (long long id = 1; rc == SQLITE_OK && id <= n; id++) {
        char name[64];
        snprintf(name, sizeof name, "%s #%lld", names[(size_t)id % n_names], id);
        rc = sqlite3_bind_int64(insert, 1, id);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_text(insert, 2, name, -1, SQLITE_TRANSIENT);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(insert, 3, 99 + id * 137 % 4900); /* 0.99 to 49.98 */
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(insert, 4, 10 + id % 50);
        if (rc == SQLITE_OK && (rc = sqlite3_step(insert)) == SQLITE_DONE)
            rc = sqlite3_reset(insert);
    }
    if (rc != SQLITE_OK)
        fprintf(stderr, "product_service: SQLite: seeding: %s\n", sqlite3_errmsg(db));
    sqlite3_finalize(insert);
    return rc;
}

/* Creates the products table when it is missing and fills it with n products when it
 * is empty. BEGIN IMMEDIATE takes the write lock first: of two processes opening one
 * new file at once, the second waits, then finds the rows. */
static int seed_database(sqlite3 *db, long long n)
{
    sqlite3_stmt *count = NULL;
    int rc = db_exec(db, "CREATE TABLE IF NOT EXISTS products ("
                         " id INTEGER PRIMARY KEY,"
                         " name TEXT NOT NULL,"
                         " price_cents INTEGER NOT NULL CHECK (price_cents >= 0),"
                         " stock INTEGER NOT NULL CHECK (stock >= 0))");
    if (rc != SQLITE_OK || (rc = db_exec(db, "BEGIN IMMEDIATE")) != SQLITE_OK)
        return rc;
    rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM products", -1, &count, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(count)) == SQLITE_ROW) {
        long long rows = sqlite3_column_int64(count, 0);
        rc = rows == 0 ? insert_products(db, n) : SQLITE_OK;
    } else {
        fprintf(stderr, "product_service: SQLite: counting products: %s\n", sqlite3_errmsg(db));
    }
    sqlite3_finalize(count);
    return db_finish(db, rc);
}

/* Opens (creating and seeding when needed) the database at path and prepares the
 * service's statements. 0 on success; on failure -1, and close_database cleans up. */
static int open_database(struct shop *shop, const char *path, long long seed_products)
{
    int rc = sqlite3_open_v2(path, &shop->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "product_service: SQLite: opening %s: %s\n", path,
                shop->db ? sqlite3_errmsg(shop->db) : sqlite3_errstr(rc));
        return -1;
    }
    /* Wait for another process's write lock rather than fail at once. WAL: readers (the
     * loader) and the writer (update_product) of different processes do not block each
     * other. An in-memory database keeps its own journal mode, which is fine. */
    if (sqlite3_busy_timeout(shop->db, DB_BUSY_TIMEOUT_MS) != SQLITE_OK ||
        db_exec(shop->db, "PRAGMA journal_mode = WAL") != SQLITE_OK ||
        seed_database(shop->db, seed_products) != SQLITE_OK)
        return -1;
    rc = sqlite3_prepare_v2(shop->db, "SELECT id, name, price_cents, stock FROM products "
                                      "WHERE id = ?1", -1, &shop->select_product, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(shop->db, "UPDATE products SET price_cents = ?2 WHERE id = ?1",
                                -1, &shop->update_price, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "product_service: SQLite: preparing: %s\n", sqlite3_errmsg(shop->db));
        return -1;
    }
    return 0;
}

static void close_database(struct shop *shop)
{
    sqlite3_finalize(shop->select_product); /* NULL is a no-op */
    sqlite3_finalize(shop->update_price);
    if (sqlite3_close(shop->db) != SQLITE_OK) /* NULL is a no-op too */
        fprintf(stderr, "product_service: SQLite: closing: %s\n", sqlite3_errmsg(shop->db));
}

/* The JSON the service serves for the row the statement is on: a new string (free()),
 * or NULL when out of memory or when the name is not valid UTF-8. */
static char *product_json(sqlite3_stmt *row)
{
    const unsigned char *name = sqlite3_column_text(row, 1);
    json_t *product = json_pack("{s:I, s:s, s:I, s:I}",
                                "id", (json_int_t)sqlite3_column_int64(row, 0),
                                "name", name ? (const char *)name : "",
                                "price_cents", (json_int_t)sqlite3_column_int64(row, 2),
                                "stock", (json_int_t)sqlite3_column_int64(row, 3));
    char *text = product ? json_dumps(product, JSON_COMPACT) : NULL;
    json_decref(product); /* NULL is a no-op */
    return text;
}

/* ---- the cache: read through, write then invalidate -------------------------------- */

/* The loader (L3): runs on a miss at every level, in the thread that missed, with no
 * cache lock held. Returns CACHE_OK after cache_sink_put; CACHE_ENOTFOUND when there is
 * no such product (the cache remembers that for negative_ttl_ms, so a flood of requests
 * for a missing id does not reach the database); CACHE_ELOADER when the database failed,
 * e.g. it stayed busy or locked past the busy timeout (nothing is cached, the next read
 * tries again). */
static cache_err_t load_product(void *udata, const void *key, size_t klen, cache_sink_t *sink)
{
    struct shop *shop = udata;
    long long id;
    if (parse_product_key(key, klen, &id) != 0)
        return CACHE_ENOTFOUND; /* not a product key: the database has nothing for it */

    cache_err_t rc;
    char *json = NULL;
    pthread_mutex_lock(&shop->db_lock);
    int step = sqlite3_bind_int64(shop->select_product, 1, id);
    if (step == SQLITE_OK)
        step = sqlite3_step(shop->select_product);
    if (step == SQLITE_ROW) {
        json = product_json(shop->select_product);
        rc = json ? CACHE_OK : CACHE_ELOADER;
        if (!json)
            fprintf(stderr, "product_service: product %lld: no JSON for its row\n", id);
    } else if (step == SQLITE_DONE) {
        rc = CACHE_ENOTFOUND;
    } else {
        fprintf(stderr, "product_service: loading product %lld: %s%s\n", id,
                sqlite3_errmsg(shop->db),
                step == SQLITE_BUSY || step == SQLITE_LOCKED ? " (the next read retries)" : "");
        rc = CACHE_ELOADER;
    }
    sqlite3_reset(shop->select_product); /* ends the read transaction */
    sqlite3_clear_bindings(shop->select_product);
    pthread_mutex_unlock(&shop->db_lock);

    if (json) {
        rc = cache_sink_put(sink, json, strlen(json), 0); /* 0: the default TTLs */
        free(json);
    }
    return rc;
}

/* Reads product id through the cache: the request path. On CACHE_OK *json is a new
 * reference to the product's JSON, ready to send as is (release it with
 * cache_value_release) and *tier, when tier is not NULL, says which level served it.
 * CACHE_ENOTFOUND: no such product. Anything else: the cache and the database failed. */
static cache_err_t get_product(struct shop *shop, long long id, cache_value_t **json,
                               cache_tier_t *tier)
{
    char key[KEY_SIZE];
    cache_get_info_t info = {.struct_size = sizeof info};
    cache_err_t rc = cache_get_ex(shop->cache, key, product_key(key, id), json, &info);
    if (rc == CACHE_OK && tier)
        *tier = info.tier;
    return rc;
}

enum update_result {
    UPDATED,                 /* the database has the new price; the cached copies are
                              * dropped (other processes' within milliseconds) */
    UPDATE_NO_SUCH_PRODUCT,  /* nothing changed */
    UPDATE_DB_FAILED,        /* nothing changed (rolled back); the message is on stderr */
    UPDATED_NOT_INVALIDATED  /* the database has it, but Redis missed the delete */
};

/* Sets product id's price: the write path. The database first, in a transaction (a real
 * service writes more here, e.g. a price history), then cache_del, which drops the key
 * from Redis and from every process's L1. In that order a read between the two serves
 * the old price for a moment, and a load that read the old row before the commit is
 * overtaken by the delete: the library returns it to its caller but never caches it. */
static enum update_result update_product(struct shop *shop, long long id, long long price_cents)
{
    int changed = 0;
    pthread_mutex_lock(&shop->db_lock);
    int rc = db_exec(shop->db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) {
        rc = sqlite3_bind_int64(shop->update_price, 1, id);
        if (rc == SQLITE_OK)
            rc = sqlite3_bind_int64(shop->update_price, 2, price_cents);
        if (rc == SQLITE_OK && (rc = sqlite3_step(shop->update_price)) == SQLITE_DONE) {
            changed = sqlite3_changes(shop->db);
            rc = SQLITE_OK;
        } else {
            fprintf(stderr, "product_service: updating product %lld: %s\n", id,
                    sqlite3_errmsg(shop->db));
        }
        sqlite3_reset(shop->update_price);
        sqlite3_clear_bindings(shop->update_price);
        rc = db_finish(shop->db, rc);
    }
    pthread_mutex_unlock(&shop->db_lock);
    if (rc != SQLITE_OK)
        return UPDATE_DB_FAILED;
    if (changed == 0)
        return UPDATE_NO_SUCH_PRODUCT;

    char key[KEY_SIZE];
    cache_err_t err = cache_del(shop->cache, key, product_key(key, id));
    if (err != CACHE_OK) {
        /* Our own L1 copy is gone, but other processes may serve the old price until
         * it expires, or until the library replays the delete (l2.retry_invalidations). */
        fprintf(stderr, "product_service: product %lld updated, but not invalidated: %s\n",
                id, cache_strerror(err));
        return UPDATED_NOT_INVALIDATED;
    }
    return UPDATED;
}

/* Opens the cache in front of the database. */
static cache_err_t open_cache(struct shop *shop, const struct options *opt)
{
    const char *properties[][2] = {
        {"l1.max_bytes", "64MiB"},
        {"l2.url", opt->redis_url}, /* NULL: skipped, no L2 */
        {"l2.key_prefix", opt->key_prefix},
        {"l2.ttl_ms", "300000"}, /* products stay 5 minutes in Redis */
        /* a cache_del that Redis missed is replayed when it comes back */
        {"l2.retry_invalidations", "1000"},
    };
    char err[256] = "";
    cache_err_t rc = CACHE_ENOMEM;
    cache_config_t *cfg = cache_config_new();
    if (cfg) {
        rc = CACHE_OK;
        for (size_t i = 0; rc == CACHE_OK && i < sizeof properties / sizeof properties[0]; i++)
            if (properties[i][1])
                rc = cache_config_set(cfg, properties[i][0], properties[i][1], err, sizeof err);
        cache_config_set_loader(cfg, load_product, shop);
    }
    if (rc == CACHE_OK)
        rc = cache_open(&shop->cache, cfg, err, sizeof err);
    if (rc != CACHE_OK)
        fprintf(stderr, "product_service: cache: %s %s\n", cache_strerror(rc), err);
    cache_config_free(cfg);
    return rc;
}

/* ---- the commands ------------------------------------------------------------------ */

static const char *tier_name(cache_tier_t tier)
{
    switch (tier) {
    case CACHE_TIER_L1: return "L1";
    case CACHE_TIER_L2: return "Redis";
    case CACHE_TIER_LOADER: return "SQLite, through the loader";
    }
    return "?";
}

/* Prints what reading product id returned; returns 0 when that was a product. */
static int print_read(const char *label, long long id, cache_err_t rc, const cache_value_t *json,
                      cache_tier_t tier)
{
    if (rc == CACHE_OK)
        printf("%s product %lld: %.*s (from %s)\n", label, id, (int)cache_value_len(json),
               (const char *)cache_value_data(json), tier_name(tier));
    else if (rc == CACHE_ENOTFOUND)
        printf("%s product %lld: not found\n", label, id);
    else
        fprintf(stderr, "%s product %lld: %s\n", label, id, cache_strerror(rc));
    return rc == CACHE_OK ? 0 : -1;
}

/* The price in a product's JSON: 0, or -1 when it has none. */
static int price_of(const cache_value_t *json, long long *price_cents)
{
    json_int_t price;
    json_t *product = json_loadb(cache_value_data(json), cache_value_len(json), 0, NULL);
    int ok = product && json_unpack(product, "{s:I}", "price_cents", &price) == 0;
    json_decref(product);
    if (ok)
        *price_cents = price;
    return ok ? 0 : -1;
}

static int cmd_get(struct shop *shop, long long id)
{
    cache_value_t *json = NULL;
    cache_tier_t tier = 0;
    cache_err_t rc = get_product(shop, id, &json, &tier);
    int status = print_read("get:", id, rc, json, tier) == 0 ? 0 : 1;
    cache_value_release(json); /* NULL is a no-op */
    return status;
}

static int cmd_update(struct shop *shop, long long id, long long price_cents)
{
    switch (update_product(shop, id, price_cents)) {
    case UPDATED:
        printf("update: product %lld: price_cents %lld, written to SQLite and invalidated\n",
               id, price_cents);
        return 0;
    case UPDATE_NO_SUCH_PRODUCT:
        printf("update: product %lld: not found\n", id);
        return 1;
    case UPDATED_NOT_INVALIDATED: /* the message is on stderr */
    case UPDATE_DB_FAILED:
        break;
    }
    return 1;
}

/* What one read of the watched product saw: the product's JSON, "not found" or the
 * error; a new string, NULL when out of memory. Which tier served it is left out: a
 * copy moving from the loader to L1 is not a change. */
static char *describe_read(cache_err_t rc, const cache_value_t *json)
{
    if (rc != CACHE_OK)
        return strdup(rc == CACHE_ENOTFOUND ? "not found" : cache_strerror(rc));
    size_t len = cache_value_len(json);
    char *text = malloc(len + 1);
    if (text) {
        memcpy(text, cache_value_data(json), len);
        text[len] = '\0';
    }
    return text;
}

/* Reads product id every interval_ms for duration_ms and prints what it saw each time
 * that changes: how one copy of the service sees another's update_product. The first
 * read is printed too; it is not a change. Stops after max_changes changes (when not
 * 0), or on SIGINT/SIGTERM. Fails when max_changes were asked for and not seen. */
static int cmd_watch(struct shop *shop, const struct options *opt)
{
    char *seen = NULL; /* what the last printed read saw */
    long long changes = 0, start = now_ms(), elapsed = 0;
    int status = 0;
    while (!stop_requested && elapsed < opt->duration_ms &&
           (opt->max_changes == 0 || changes < opt->max_changes)) {
        cache_value_t *json = NULL;
        cache_tier_t tier = 0;
        cache_err_t rc = get_product(shop, opt->id, &json, &tier);
        char *now_seen = describe_read(rc, json);
        cache_value_release(json);
        if (!now_seen) {
            fprintf(stderr, "watch: out of memory\n");
            status = 1;
            break;
        }
        if (seen && strcmp(seen, now_seen) == 0) {
            free(now_seen);
        } else {
            printf("watch: +%lld ms product %lld: %s%s%s\n", elapsed, opt->id, now_seen,
                   rc == CACHE_OK ? " from " : "", rc == CACHE_OK ? tier_name(tier) : "");
            changes += seen != NULL;
            free(seen);
            seen = now_seen;
        }
        sleep_ms(opt->interval_ms);
        elapsed = now_ms() - start;
    }
    free(seen);
    printf("watch: %lld change(s) in %lld ms\n", changes, elapsed);
    if (opt->max_changes && changes < opt->max_changes && status == 0) {
        fprintf(stderr, "watch: saw %lld of the %lld change(s) asked for\n", changes,
                opt->max_changes);
        status = 1;
    }
    return status;
}

/* Reads product id and prints it; the price goes to *price_cents. 0, or -1 on failure. */
static int demo_read(struct shop *shop, long long id, long long *price_cents)
{
    cache_value_t *json = NULL;
    cache_tier_t tier = 0;
    cache_err_t rc = get_product(shop, id, &json, &tier);
    int status = print_read("demo: get_product:", id, rc, json, tier);
    if (status == 0 && (status = price_of(json, price_cents)) != 0)
        fprintf(stderr, "demo: product %lld has no price_cents\n", id);
    cache_value_release(json);
    return status;
}

/* The scripted demo: the request path and the write path, with the level that served
 * each read. It checks its own story and fails when the story does not hold. */
static int cmd_demo(struct shop *shop)
{
    long long before, after;
    printf("demo: 1. two reads: the first misses everywhere and the loader queries SQLite "
           "(or finds Redis filled by another copy), the second is an L1 hit\n");
    if (demo_read(shop, DEMO_PRODUCT, &before) != 0 || demo_read(shop, DEMO_PRODUCT, &before) != 0)
        return 1;
    long long price = before < MAX_PRICE_CENTS - 100 ? before + 100 : 100;
    printf("demo: 2. update_product: price_cents %lld -> %lld in SQLite, then cache_del\n",
           before, price);
    if (update_product(shop, DEMO_PRODUCT, price) != UPDATED)
        return 1;
    printf("demo: 3. the next read misses again and loads the new row\n");
    if (demo_read(shop, DEMO_PRODUCT, &after) != 0)
        return 1;
    if (after != price) {
        fprintf(stderr, "demo: read price_cents %lld after setting %lld\n", after, price);
        return 1;
    }
    printf("demo: 4. a missing product: not found, then remembered for negative_ttl_ms "
           "(the second read does not reach SQLite)\n");
    for (int i = 0; i < 2; i++) {
        cache_value_t *json = NULL;
        cache_err_t rc = get_product(shop, DEMO_MISSING_PRODUCT, &json, NULL);
        print_read("demo: get_product:", DEMO_MISSING_PRODUCT, rc, json, 0);
        cache_value_release(json);
        if (rc != CACHE_ENOTFOUND)
            return 1;
    }
    return 0;
}

/* Prints the cache's counters (cache_stats_json), one group per line. */
static void print_stats(cache_t *cache)
{
    char *stats = cache_stats_json(cache); /* new: free with cache_free */
    json_t *root = stats ? json_loads(stats, 0, NULL) : NULL;
    const char *group;
    json_t *counters;
    if (!root) /* out of memory */
        fprintf(stderr, "product_service: no stats\n");
    json_object_foreach(root, group, counters) { /* a NULL root has no members */
        char *text = json_dumps(counters, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        printf("stats.%s: %s\n", group, text ? text : "?");
        free(text);
    }
    json_decref(root);
    cache_free(stats);
}

/* ---- the command line ---------------------------------------------------------------- */

static void usage(void)
{
    fputs("usage: product_service [OPTIONS] [get ID | update ID PRICE | watch ID]\n"
          "Without a command: a scripted demo (reads, an update, reads, stats).\n"
          "  get ID             read product ID through the cache\n"
          "  update ID PRICE    set its price (12.50) in SQLite, then cache_del it\n"
          "  watch ID           read it every --interval-ms, print each change\n"
          "options:\n"
          "  --db PATH          the SQLite database, created and seeded when new\n"
          "                     (default: a private in-memory database)\n"
          "  --seed-products N  products a new database starts with (default 100)\n"
          "  --redis URL        Redis as L2, e.g. redis://127.0.0.1:6379/0\n"
          "                     (default: none, L1 and the loader only)\n"
          "  --key-prefix P     the service's namespace in Redis (default product_service:)\n"
          "  --duration-ms N    watch: how long (default 10000)\n"
          "  --interval-ms N    watch: time between reads (default 10)\n"
          "  --changes N        watch: stop after N changes, fail if fewer (default 0: no)\n",
          stdout);
}

/* Parses one option's value; 0, or -1 (with a message) when it is malformed. */
static int parse_option(struct options *opt, const char *name, const char *value)
{
    static const struct {
        const char *name;
        size_t offset;
        long long min, max;
    } numbers[] = {
        {"--seed-products", offsetof(struct options, seed_products), 1, MAX_SEED_PRODUCTS},
        {"--duration-ms", offsetof(struct options, duration_ms), 1, 86400000},
        {"--interval-ms", offsetof(struct options, interval_ms), 1, 60000},
        {"--changes", offsetof(struct options, max_changes), 0, 1000000},
    };
    if (strcmp(name, "--db") == 0)
        opt->db_path = value;
    else if (strcmp(name, "--redis") == 0)
        opt->redis_url = value;
    else if (strcmp(name, "--key-prefix") == 0)
        opt->key_prefix = value;
    else {
        for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
            if (strcmp(name, numbers[i].name) != 0)
                continue;
            long long *field = (long long *)((char *)opt + numbers[i].offset);
            if (parse_number(value, numbers[i].min, numbers[i].max, field) == 0)
                return 0;
            fprintf(stderr, "product_service: %s wants a number from %lld to %lld, not '%s'\n",
                    name, numbers[i].min, numbers[i].max, value);
            return -1;
        }
        fprintf(stderr, "product_service: unknown option %s\n", name);
        return -1;
    }
    return 0;
}

/* Reads the command (args[0..n-1]) into opt: 0, or -1 (with a message). */
static int parse_command(struct options *opt, const char *const *args, int n)
{
    static const struct {
        const char *name;
        enum command command;
        int n_args; /* the command included */
    } commands[] = {{"get", CMD_GET, 2}, {"update", CMD_UPDATE, 3}, {"watch", CMD_WATCH, 2}};
    if (n == 0)
        return 0; /* the demo */
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(args[0], commands[i].name) != 0)
            continue;
        if (n != commands[i].n_args) {
            fprintf(stderr, "product_service: %s takes %d argument(s)\n", args[0],
                    commands[i].n_args - 1);
            return -1;
        }
        opt->command = commands[i].command;
        if (parse_number(args[1], 1, LLONG_MAX, &opt->id) != 0) {
            fprintf(stderr, "product_service: bad product id '%s'\n", args[1]);
            return -1;
        }
        if (opt->command == CMD_UPDATE && parse_price(args[2], &opt->price_cents) != 0) {
            fprintf(stderr, "product_service: bad price '%s' (e.g. 12.50)\n", args[2]);
            return -1;
        }
        return 0;
    }
    fprintf(stderr, "product_service: unknown command '%s'\n", args[0]);
    return -1;
}

/* Options go anywhere ("watch 7 --duration-ms 5000"). Returns 0, 1 after --help, or
 * -1 (with a message) on a usage error. */
static int parse_command_line(struct options *opt, int argc, char **argv)
{
    const char *args[4];
    int n_args = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
        if (strncmp(argv[i], "--", 2) != 0) {
            if (n_args == (int)(sizeof args / sizeof args[0])) {
                fprintf(stderr, "product_service: too many arguments\n");
                return -1;
            }
            args[n_args++] = argv[i];
        } else if (i + 1 == argc) {
            fprintf(stderr, "product_service: %s needs a value\n", argv[i]);
            return -1;
        } else if (parse_option(opt, argv[i], argv[i + 1]) != 0) {
            return -1;
        } else {
            i++;
        }
    }
    return parse_command(opt, args, n_args);
}

static int run_command(struct shop *shop, const struct options *opt)
{
    switch (opt->command) {
    case CMD_DEMO: return cmd_demo(shop);
    case CMD_GET: return cmd_get(shop, opt->id);
    case CMD_UPDATE: return cmd_update(shop, opt->id, opt->price_cents);
    case CMD_WATCH: return cmd_watch(shop, opt);
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct options opt = {.command = CMD_DEMO, .key_prefix = "product_service:",
                          .seed_products = 100, .duration_ms = 10000, .interval_ms = 10};
    int status = parse_command_line(&opt, argc, argv);
    if (status > 0) {
        usage();
        return 0;
    }
    if (status < 0) {
        fprintf(stderr, "product_service: see product_service --help\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* line by line, also into a pipe or a file */
    if (opt.command == CMD_WATCH) {   /* Ctrl-C ends the watch, with its stats */
        struct sigaction sa = {.sa_handler = request_stop};
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
            perror("product_service: sigaction");
    }

    struct shop shop = {.cache = NULL};
    int err = pthread_mutex_init(&shop.db_lock, NULL);
    if (err != 0) {
        fprintf(stderr, "product_service: pthread_mutex_init: %s\n", strerror(err));
        return 1;
    }
    const char *db_path = opt.db_path ? opt.db_path : ":memory:";
    status = 1;
    if (open_database(&shop, db_path, opt.seed_products) == 0 &&
        open_cache(&shop, &opt) == CACHE_OK) {
        /* never the URL itself: it may hold a password */
        printf("product_service: products in %s, cached in L1%s\n", db_path,
               opt.redis_url ? " and Redis" : " only (no --redis)");
        status = run_command(&shop, &opt);
        print_stats(shop.cache);
    }
    cache_close(shop.cache); /* first: it may still call the loader, which uses the database */
    close_database(&shop);
    pthread_mutex_destroy(&shop.db_lock);
    return status;
}
