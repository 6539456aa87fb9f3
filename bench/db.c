/*
 * The database behind both sides of the Redis modes: simulated (each query sleeps
 * --loader-us, then returns --value-size bytes derived from the key), or with
 * --loader sqlite:PATH a real one: the bench creates table nkb_kv(k, v, n) in PATH
 * and fills it with every key's value; a query is a primary-key SELECT, a write an
 * UPDATE of the row. Each thread gets its own SQLite connection (SQLite serializes
 * the users of one connection), closed when the thread ends; WAL lets readers run
 * beside a writer. Queries and writes are counted for the reports.
 */
#include "redis_base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the database */

void nkb_db_value(const void *key, size_t klen, unsigned char *buf, size_t len)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a of the key: each value its own */

    for (size_t i = 0; i < klen; i++)
        h = (h ^ ((const unsigned char *)key)[i]) * 1099511628211u;
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)('a' + (h + i) % 26);
}

int nkb_db_query(nkb_db_t *db, const void *key, size_t klen, unsigned char *buf)
{
    uint64_t t0 = nkb_now_ns();
    int rc = 0;

    if (db->sqlite != NULL) {
        rc = nkb_sqlite_get(db->sqlite, key, klen, buf, db->value_size);
    } else {
        if (db->delay_us > 0)
            nkb_sleep_ns(db->delay_us * 1000u);
        nkb_db_value(key, klen, buf, db->value_size);
    }
    atomic_fetch_add_explicit(&db->busy_ns, nkb_now_ns() - t0, memory_order_relaxed);
    atomic_fetch_add_explicit(&db->calls, 1, memory_order_relaxed);
    return rc;
}

int nkb_db_update(nkb_db_t *db, const void *key, size_t klen)
{
    int rc = 0;

    if (db->sqlite != NULL)
        rc = nkb_sqlite_update(db->sqlite, key, klen);
    else if (db->delay_us > 0)
        nkb_sleep_ns(db->delay_us * 1000u);
    atomic_fetch_add_explicit(&db->writes, 1, memory_order_relaxed);
    return rc;
}

int nkb_db_open(nkb_db_t *db, const nkb_opts_t *o, const nkb_keys_t *keys)
{
    db->delay_us = o->loader_us;
    db->value_size = o->value_size;
    if (o->sqlite_path != NULL &&
        (db->sqlite = nkb_sqlite_open(o->sqlite_path, keys, o->value_size)) == NULL)
        return -1;
    return 0;
}

void nkb_db_close(nkb_db_t *db)
{
    nkb_sqlite_close(db->sqlite);
    db->sqlite = NULL;
}

cache_err_t nkb_db_loader(void *udata, const void *key, size_t klen, cache_sink_t *sink)
{
    nkb_db_t *db = udata;
    unsigned char buf[NKB_VALUE_MAX];

    if (nkb_db_query(db, key, klen, buf) != 0)
        return CACHE_ELOADER;
    return cache_sink_put(sink, buf, db->value_size, 0);
}

/* ---------------------------------------------------------------- SQLite */

#ifdef NKB_HAVE_SQLITE
#include <pthread.h>
#include <sqlite3.h>

#define BUSY_TIMEOUT_MS 5000

struct conn {
    sqlite3 *db;
    sqlite3_stmt *get, *update;
};

struct nkb_sqlite {
    char path[4096];
    pthread_key_t key; /* the calling thread's struct conn */
};

static void conn_close(void *p)
{
    struct conn *c = p;

    if (c == NULL)
        return;
    sqlite3_finalize(c->get);
    sqlite3_finalize(c->update);
    sqlite3_close(c->db);
    free(c);
}

/* The calling thread's connection, opened on first use; NULL after a message. */
static struct conn *conn_of(nkb_sqlite_t *s)
{
    struct conn *c = pthread_getspecific(s->key);

    if (c != NULL)
        return c;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return NULL;
    if (sqlite3_open_v2(s->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS) != SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "SELECT v FROM nkb_kv WHERE k = ?1", -1, &c->get, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(c->db, "UPDATE nkb_kv SET n = n + 1 WHERE k = ?1", -1, &c->update,
                           NULL) != SQLITE_OK) {
        fprintf(stderr, "nakkucache-bench: sqlite %s: %s\n", s->path,
                c->db ? sqlite3_errmsg(c->db) : "out of memory");
        conn_close(c);
        return NULL;
    }
    pthread_setspecific(s->key, c);
    return c;
}

/* Creates the table and writes every key's value in one transaction. */
static int fill(sqlite3 *db, const nkb_keys_t *keys, size_t value_size)
{
    unsigned char *val = malloc(value_size);
    sqlite3_stmt *put = NULL;
    int rc = val != NULL &&
                     sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                      "CREATE TABLE IF NOT EXISTS nkb_kv(k BLOB PRIMARY KEY, v "
                                      "BLOB NOT NULL, n INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
                                      "BEGIN", NULL, NULL, NULL) == SQLITE_OK &&
                     sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO nkb_kv(k, v) VALUES (?1, ?2)",
                                        -1, &put, NULL) == SQLITE_OK
                 ? 0
                 : -1;

    for (uint32_t i = 0; rc == 0 && i < keys->n; i++) {
        for (size_t j = 0; j < value_size; j++) /* any bytes do: the bench never checks */
            val[j] = (unsigned char)('a' + (i + j) % 26);
        sqlite3_bind_blob(put, 1, nkb_key(keys, i), (int)keys->klen, SQLITE_STATIC);
        sqlite3_bind_blob(put, 2, val, (int)value_size, SQLITE_STATIC);
        rc = sqlite3_step(put) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(put);
    }
    sqlite3_finalize(put);
    if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = -1;
    free(val);
    return rc;
}

nkb_sqlite_t *nkb_sqlite_open(const char *path, const nkb_keys_t *keys, size_t value_size)
{
    nkb_sqlite_t *s = calloc(1, sizeof *s);
    sqlite3 *db = NULL;

    if (s == NULL || pthread_key_create(&s->key, conn_close) != 0) {
        free(s);
        return NULL;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    fprintf(stderr, "nakkucache-bench: writing %u rows to %s (table nkb_kv)\n", keys->n, path);
    if (sqlite3_open(path, &db) != SQLITE_OK || fill(db, keys, value_size) != 0) {
        fprintf(stderr, "nakkucache-bench: sqlite %s: %s\n", path,
                db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        pthread_key_delete(s->key);
        free(s);
        return NULL;
    }
    sqlite3_close(db);
    return s;
}

int nkb_sqlite_get(nkb_sqlite_t *s, const void *key, size_t klen, unsigned char *buf,
                   size_t len)
{
    struct conn *c = conn_of(s);
    int rc = -1;

    if (c == NULL)
        return -1;
    sqlite3_bind_blob(c->get, 1, key, (int)klen, SQLITE_STATIC);
    if (sqlite3_step(c->get) == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(c->get, 0);

        memset(buf, 0, len);
        memcpy(buf, sqlite3_column_blob(c->get, 0), n < len ? n : len);
        rc = 0;
    }
    sqlite3_reset(c->get);
    return rc;
}

int nkb_sqlite_update(nkb_sqlite_t *s, const void *key, size_t klen)
{
    struct conn *c = conn_of(s);
    int rc;

    if (c == NULL)
        return -1;
    sqlite3_bind_blob(c->update, 1, key, (int)klen, SQLITE_STATIC);
    rc = sqlite3_step(c->update) == SQLITE_DONE ? 0 : -1;
    sqlite3_reset(c->update);
    return rc;
}

void nkb_sqlite_close(nkb_sqlite_t *s)
{
    if (s == NULL)
        return;
    conn_close(pthread_getspecific(s->key)); /* the calling thread's; others closed at exit */
    pthread_key_delete(s->key);
    free(s);
}

#else /* built without libsqlite3-dev */

nkb_sqlite_t *nkb_sqlite_open(const char *path, const nkb_keys_t *keys, size_t value_size)
{
    (void)keys;
    (void)value_size;
    fprintf(stderr, "nakkucache-bench: --loader sqlite:%s: this build has no SQLite (install "
                    "libsqlite3-dev and rebuild)\n", path);
    return NULL;
}

int nkb_sqlite_get(nkb_sqlite_t *s, const void *key, size_t klen, unsigned char *buf,
                   size_t len)
{
    (void)s, (void)key, (void)klen, (void)buf, (void)len;
    return -1;
}

int nkb_sqlite_update(nkb_sqlite_t *s, const void *key, size_t klen)
{
    (void)s, (void)key, (void)klen;
    return -1;
}

void nkb_sqlite_close(nkb_sqlite_t *s)
{
    (void)s;
}
#endif
