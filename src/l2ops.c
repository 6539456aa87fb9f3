/*
 * Redis operations of the cache (see l2ops.h and docs/FORMAT.md). Every stored
 * value is an envelope: 'V' + value bytes, 'N' (not found), or 'L' + lease token.
 * Each operation is one round trip: lookups and fills are Lua scripts so that the
 * read, the TTL and the lease decision happen atomically on the server.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "l2ops.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads go through GETEX without options: it returns the value like GET but is a
 * write command, so Redis does not start tracking the key for this connection.
 * A tracked read (PTTL, STRLEN) is done only where this process keeps a copy, and
 * always after any write of ours in the script: a connection's own write would
 * otherwise invalidate its own fresh copy (we do not use NOLOOP, whose self-filter
 * on Redis 7.0 also swallows tracking-table evictions; see docs/FORMAT.md). */

/* {kind, value, pttl}: kind 1 value, 2 someone's lease, 3 our new lease, 0 absent,
 * 4 a value over the size we accept (not sent: the reply stays small) */
static const char lookup_lua[] =
    "local v = redis.call('GETEX', KEYS[1])\n"
    "if v then\n"
    "  if string.byte(v, 1) == 76 then return {2, '', 0} end\n"
    "  local ttl = redis.call('PTTL', KEYS[1])\n"
    "  if #v > tonumber(ARGV[3]) then return {4, '', ttl} end\n"
    "  return {1, v, ttl}\n"
    "end\n"
    "if ARGV[1] == '' then return {0, '', 0} end\n"
    "redis.call('SET', KEYS[1], 'L' .. ARGV[1], 'PX', ARGV[2])\n"
    "return {3, '', tonumber(ARGV[2])}\n";

/* The refresh variant: like lookup_lua, but a value whose TTL left is at most
 * ARGV[4] also takes the key's refresh lease (KEYS[2], SET NX) when free: kind 5,
 * "reload it and refill"; others keep getting the current value meanwhile. */
static const char refresh_lookup_lua[] =
    "local v = redis.call('GETEX', KEYS[1])\n"
    "if v then\n"
    "  if string.byte(v, 1) == 76 then return {2, '', 0} end\n"
    "  local ttl = redis.call('PTTL', KEYS[1])\n"
    "  if #v > tonumber(ARGV[3]) then return {4, '', ttl} end\n"
    "  if ttl >= 0 and ttl <= tonumber(ARGV[4]) and\n"
    "     redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "    return {5, v, ttl}\n"
    "  end\n"
    "  return {1, v, ttl}\n"
    "end\n"
    "redis.call('SET', KEYS[1], 'L' .. ARGV[1], 'PX', ARGV[2])\n"
    "return {3, '', tonumber(ARGV[2])}\n";

/* A refresh's fill: only while we hold the refresh lease (any cache_set or
 * cache_del drops it) and the key still holds the value the refresh replaces
 * (an outside SET or DEL changes it). */
static const char refill_lua[] =
    "if redis.call('GETEX', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "redis.call('DEL', KEYS[2])\n"
    "if redis.call('GETEX', KEYS[1]) ~= ARGV[2] then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])\n"
    "redis.call('STRLEN', KEYS[1])\n"
    "return 1\n";

/* The STRLEN after the SET is the tracked read that registers the copy this fill
 * puts in L1, so the next writer anywhere invalidates it. */
static const char fill_lua[] =
    "if redis.call('GETEX', KEYS[1]) == 'L' .. ARGV[1] then\n"
    "  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
    "  redis.call('STRLEN', KEYS[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

static const char release_lua[] =
    "if redis.call('GETEX', KEYS[1]) == 'L' .. ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

/* A prefixed key: inline for the usual sizes, heap beyond. */
struct pkey {
    char *p;
    size_t len;
    char inline_buf[256];
};

/* The refresh lease's key: the prefixed key followed by this (see docs/FORMAT.md). */
static const char refresh_suffix[] = "\0nkc-refresh";
#define REFRESH_SUFFIX_LEN (sizeof(refresh_suffix) - 1)

static int pkey_make_suffixed(struct pkey *k, const struct nkc_l2ops *o, const void *key,
                              size_t klen, const char *suffix, size_t slen)
{
    k->len = o->prefix_len + klen + slen;
    k->p = k->len <= sizeof(k->inline_buf) ? k->inline_buf : malloc(k->len);
    if (!k->p)
        return -1;
    memcpy(k->p, o->prefix, o->prefix_len);
    memcpy(k->p + o->prefix_len, key, klen);
    memcpy(k->p + o->prefix_len + klen, suffix, slen);
    return 0;
}

static int pkey_make(struct pkey *k, const struct nkc_l2ops *o, const void *key, size_t klen)
{
    return pkey_make_suffixed(k, o, key, klen, "", 0);
}

static int pkey_make_refresh(struct pkey *k, const struct nkc_l2ops *o, const void *key,
                             size_t klen)
{
    return pkey_make_suffixed(k, o, key, klen, refresh_suffix, REFRESH_SUFFIX_LEN);
}

static void pkey_free(struct pkey *k)
{
    if (k->p != k->inline_buf)
        free(k->p);
}

void nkc_lookup_clear(struct nkc_lookup *lk)
{
    nkc_reply_free(lk->reply);
    memset(lk, 0, sizeof(*lk));
}

/* Decodes a lookup script's reply. Error replies (wrong type) and foreign data
 * are NKC_FOUND_BAD: treated as a miss, counted by the caller. */
static void decode_lookup(struct nkc_reply *r, struct nkc_lookup *out)
{
    memset(out, 0, sizeof(*out));
    out->reply = r;
    out->found = NKC_FOUND_BAD;
    if (r->type != NKC_R_ARRAY || r->n != 3 || r->elem[0]->type != NKC_R_INTEGER ||
        r->elem[2]->type != NKC_R_INTEGER || r->elem[1]->type != NKC_R_STRING)
        return;
    out->pttl_ms = r->elem[2]->integer;
    switch (r->elem[0]->integer) {
    case 0: out->found = NKC_FOUND_MISS; return;
    case 2: out->found = NKC_FOUND_LEASE_OTHER; return;
    case 3: out->found = NKC_FOUND_LEASE_MINE; return;
    case 4: return; /* over l2.max_value_bytes: foreign to us */
    default: break;
    }
    const unsigned char *v = (const unsigned char *)r->elem[1]->str;
    size_t len = r->elem[1]->len;
    if (len == 1 && v[0] == 'N') {
        out->found = NKC_FOUND_NEGATIVE;
    } else if (len >= 1 && v[0] == 'V') {
        out->found = NKC_FOUND_VALUE;
        out->data = v + 1;
        out->len = len - 1;
    } else {
        return;
    }
    out->envelope = v;
    out->envelope_len = len;
    out->refresh = r->elem[0]->integer == 5;
}

struct script_args {
    const char *argv[9];
    size_t lens[9];
    char n1[24], n2[24], n3[24], n4[24];
    struct pkey rkey; /* the refresh lease's key, for two-key scripts */
};

/* EVAL script 1 key [args]: argv[0..3] are "EVAL", body, "1", key. */
static void script_begin(struct script_args *a, const char *body, const struct pkey *k)
{
    a->argv[0] = "EVAL";
    a->lens[0] = 4;
    a->argv[1] = body;
    a->lens[1] = strlen(body);
    a->argv[2] = "1";
    a->lens[2] = 1;
    a->argv[3] = k->p;
    a->lens[3] = k->len;
}

static void token_text(char *buf, size_t cap, uint64_t token)
{
    if (token)
        snprintf(buf, cap, "%016" PRIx64, token);
    else
        buf[0] = '\0';
}

/* EVAL script 2 key rkey [args]: argv[0..4]; a->rkey must be made first. */
static void script_begin2(struct script_args *a, const char *body, const struct pkey *k)
{
    script_begin(a, body, k);
    a->argv[2] = "2";
    a->argv[4] = a->rkey.p;
    a->lens[4] = a->rkey.len;
}

static void set_arg(struct script_args *a, int i, const char *text)
{
    a->argv[i] = text;
    a->lens[i] = strlen(text);
}

/* The lookup's arguments; with refresh_ms > 0 (and a->rkey made) the refresh
 * variant's. Returns argc. */
static int lookup_args(struct script_args *a, const struct nkc_l2ops *o, const struct pkey *k,
                       uint64_t token, uint64_t refresh_ms)
{
    int at = 4;
    if (refresh_ms) {
        script_begin2(a, refresh_lookup_lua, k);
        at = 5;
    } else {
        script_begin(a, lookup_lua, k);
    }
    token_text(a->n1, sizeof(a->n1), token);
    snprintf(a->n2, sizeof(a->n2), "%" PRIu64, o->lease_ms);
    snprintf(a->n3, sizeof(a->n3), "%" PRIu64, o->max_value + 1); /* + the envelope byte */
    set_arg(a, at, a->n1);
    set_arg(a, at + 1, a->n2);
    set_arg(a, at + 2, a->n3);
    if (!refresh_ms)
        return 7;
    snprintf(a->n4, sizeof(a->n4), "%" PRIu64, refresh_ms);
    set_arg(a, at + 3, a->n4);
    return 9;
}

cache_err_t nkc_l2ops_lookup_many(const struct nkc_l2ops *o, size_t n, const void *const *keys,
                                  const size_t *klens, const uint64_t *tokens,
                                  uint64_t refresh_ms, struct nkc_lookup *out,
                                  struct nkc_origin *origin)
{
    struct pkey *pk = calloc(n, sizeof(*pk));
    struct script_args *args = calloc(n, sizeof(*args));
    struct nkc_cmd *cmds = calloc(n, sizeof(*cmds));
    struct nkc_reply **replies = calloc(n, sizeof(*replies));
    cache_err_t err = (pk && args && cmds && replies) ? CACHE_OK : CACHE_ENOMEM;
    size_t made = 0;
    for (; made < n && err == CACHE_OK; made++) {
        if (pkey_make(&pk[made], o, keys[made], klens[made]) != 0) {
            err = CACHE_ENOMEM;
            break;
        }
        args[made].rkey.p = args[made].rkey.inline_buf;
        if (refresh_ms && pkey_make_refresh(&args[made].rkey, o, keys[made], klens[made]) != 0) {
            args[made].rkey.p = args[made].rkey.inline_buf;
            pkey_free(&pk[made]);
            err = CACHE_ENOMEM;
            break;
        }
        int argc = lookup_args(&args[made], o, &pk[made], tokens[made], refresh_ms);
        cmds[made] = (struct nkc_cmd){argc, args[made].argv, args[made].lens};
    }
    if (err == CACHE_OK && n > 0)
        err = nkc_l2_pipeline(o->l2, keys[0], klens[0], n, cmds, replies, origin);
    for (size_t i = 0; i < n && out; i++) {
        if (err == CACHE_OK)
            decode_lookup(replies[i], &out[i]);
        else
            memset(&out[i], 0, sizeof(out[i]));
    }
    for (size_t i = 0; i < made; i++) {
        pkey_free(&pk[i]);
        pkey_free(&args[i].rkey);
    }
    free(pk);
    free(args);
    free(cmds);
    free(replies);
    return err;
}

cache_err_t nkc_l2ops_lookup(const struct nkc_l2ops *o, const void *key, size_t klen,
                             uint64_t token, struct nkc_lookup *out, struct nkc_origin *origin)
{
    struct pkey k;
    if (pkey_make(&k, o, key, klen) != 0)
        return CACHE_ENOMEM;
    struct script_args a;
    int argc = lookup_args(&a, o, &k, token, 0);
    struct nkc_reply *r;
    struct nkc_cmd cmd = {argc, a.argv, a.lens};
    cache_err_t err = nkc_l2_pipeline(o->l2, key, klen, 1, &cmd, &r, origin);
    pkey_free(&k);
    if (err == CACHE_OK)
        decode_lookup(r, out);
    else
        memset(out, 0, sizeof(*out));
    return err;
}

/* 'V' + value, or "N": a new buffer. */
static char *envelope(int negative, const void *val, size_t vlen, size_t *len)
{
    *len = negative ? 1 : vlen + 1;
    char *env = malloc(*len);
    if (!env)
        return NULL;
    env[0] = negative ? 'N' : 'V';
    if (!negative && vlen)
        memcpy(env + 1, val, vlen);
    return env;
}

/* Runs a one-key script whose reply is an integer; *result gets it. */
static cache_err_t run_int_script(const struct nkc_l2ops *o, struct script_args *a, int argc,
                                  const void *key, size_t klen, long long *result,
                                  struct nkc_origin *origin)
{
    struct nkc_reply *r;
    struct nkc_cmd cmd = {argc, a->argv, a->lens};
    cache_err_t err = nkc_l2_pipeline(o->l2, key, klen, 1, &cmd, &r, origin);
    if (err != CACHE_OK)
        return err;
    if (r->type == NKC_R_INTEGER)
        *result = r->integer;
    else
        err = CACHE_EL2; /* an error reply: wrong type under our key, or a refused script */
    nkc_reply_free(r);
    return err;
}

cache_err_t nkc_l2ops_fill(const struct nkc_l2ops *o, const void *key, size_t klen,
                           uint64_t token, int negative, const void *val, size_t vlen,
                           uint64_t ttl_ms, int *filled, struct nkc_origin *origin)
{
    *filled = 0;
    struct pkey k;
    size_t elen;
    char *env = envelope(negative, val, vlen, &elen);
    if (!env || pkey_make(&k, o, key, klen) != 0) {
        free(env);
        return CACHE_ENOMEM;
    }
    struct script_args a;
    script_begin(&a, fill_lua, &k);
    token_text(a.n1, sizeof(a.n1), token);
    snprintf(a.n2, sizeof(a.n2), "%" PRIu64, ttl_ms);
    a.argv[4] = a.n1;
    a.lens[4] = strlen(a.n1);
    a.argv[5] = env;
    a.lens[5] = elen;
    a.argv[6] = a.n2;
    a.lens[6] = strlen(a.n2);
    long long res = 0;
    cache_err_t err = run_int_script(o, &a, 7, key, klen, &res, origin);
    *filled = err == CACHE_OK && res == 1;
    pkey_free(&k);
    free(env);
    return err;
}

cache_err_t nkc_l2ops_refill(const struct nkc_l2ops *o, const void *key, size_t klen,
                             uint64_t token, const void *old_env, size_t old_len, int negative,
                             const void *val, size_t vlen, uint64_t ttl_ms, int *filled,
                             struct nkc_origin *origin)
{
    *filled = 0;
    struct pkey k;
    struct script_args a;
    size_t elen;
    char *env = envelope(negative, val, vlen, &elen);
    a.rkey.p = a.rkey.inline_buf;
    if (!env || pkey_make(&k, o, key, klen) != 0) {
        free(env);
        return CACHE_ENOMEM;
    }
    if (pkey_make_refresh(&a.rkey, o, key, klen) != 0) {
        pkey_free(&k);
        free(env);
        return CACHE_ENOMEM;
    }
    script_begin2(&a, refill_lua, &k);
    token_text(a.n1, sizeof(a.n1), token);
    snprintf(a.n2, sizeof(a.n2), "%" PRIu64, ttl_ms);
    set_arg(&a, 5, a.n1);
    a.argv[6] = old_env;
    a.lens[6] = old_len;
    a.argv[7] = env;
    a.lens[7] = elen;
    set_arg(&a, 8, a.n2);
    long long res = 0;
    cache_err_t err = run_int_script(o, &a, 9, key, klen, &res, origin);
    *filled = err == CACHE_OK && res == 1;
    pkey_free(&a.rkey);
    pkey_free(&k);
    free(env);
    return err;
}

cache_err_t nkc_l2ops_release(const struct nkc_l2ops *o, const void *key, size_t klen,
                              uint64_t token)
{
    struct pkey k;
    if (pkey_make(&k, o, key, klen) != 0)
        return CACHE_ENOMEM;
    struct script_args a;
    script_begin(&a, release_lua, &k);
    token_text(a.n1, sizeof(a.n1), token);
    a.argv[4] = a.n1;
    a.lens[4] = strlen(a.n1);
    long long res = 0;
    cache_err_t err = run_int_script(o, &a, 5, key, klen, &res, NULL);
    pkey_free(&k);
    return err;
}

/* Runs a plain command whose only acceptable replies are status or integer. */
static cache_err_t run_plain(const struct nkc_l2ops *o, int argc, const char **argv,
                             const size_t *lens, const void *key, size_t klen)
{
    struct nkc_reply *r;
    cache_err_t err = nkc_l2_command(o->l2, key, klen, argc, argv, lens, &r);
    if (err == CACHE_OK && r->type != NKC_R_STATUS && r->type != NKC_R_INTEGER)
        err = CACHE_EL2;
    nkc_reply_free(r);
    return err;
}

cache_err_t nkc_l2ops_set(const struct nkc_l2ops *o, const void *key, size_t klen,
                          const void *val, size_t vlen, uint64_t ttl_ms, struct nkc_origin *origin)
{
    struct pkey k;
    size_t elen;
    char *env = envelope(0, val, vlen, &elen);
    struct pkey rk;
    if (!env || pkey_make(&k, o, key, klen) != 0) {
        free(env);
        return CACHE_ENOMEM;
    }
    if (pkey_make_refresh(&rk, o, key, klen) != 0) {
        pkey_free(&k);
        free(env);
        return CACHE_ENOMEM;
    }
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRIu64, ttl_ms);
    /* SET, then STRLEN on the same connection: our write dropped the key from this
     * connection's tracking table; the read puts it back (see fill_lua) */
    const char *set_argv[5] = {"SET", k.p, env, "PX", ttl};
    size_t set_lens[5] = {3, k.len, elen, 2, strlen(ttl)};
    const char *len_argv[2] = {"STRLEN", k.p};
    size_t len_lens[2] = {6, k.len};
    /* and any refresh in flight elsewhere loses its lease (see refill_lua) */
    const char *del_argv[2] = {"DEL", rk.p};
    size_t del_lens[2] = {3, rk.len};
    struct nkc_cmd cmds[3] = {{5, set_argv, set_lens}, {2, del_argv, del_lens},
                              {2, len_argv, len_lens}};
    struct nkc_reply *r[3] = {NULL, NULL, NULL};
    cache_err_t err = nkc_l2_pipeline(o->l2, key, klen, 3, cmds, r, origin);
    if (err == CACHE_OK && (r[0]->type != NKC_R_STATUS || r[2]->type != NKC_R_INTEGER))
        err = CACHE_EL2; /* refused (ACL, wrong type): Redis did not take the write */
    if (err == CACHE_OK || r[0]) {
        for (int i = 0; i < 3; i++)
            nkc_reply_free(r[i]);
    }
    pkey_free(&rk);
    pkey_free(&k);
    free(env);
    return err;
}

cache_err_t nkc_l2ops_del(const struct nkc_l2ops *o, const void *key, size_t klen)
{
    struct pkey k, rk;
    if (pkey_make(&k, o, key, klen) != 0)
        return CACHE_ENOMEM;
    if (pkey_make_refresh(&rk, o, key, klen) != 0) {
        pkey_free(&k);
        return CACHE_ENOMEM;
    }
    const char *argv[3] = {"DEL", k.p, rk.p}; /* the key and any refresh lease on it */
    size_t lens[3] = {3, k.len, rk.len};
    cache_err_t err = run_plain(o, 3, argv, lens, key, klen);
    pkey_free(&rk);
    pkey_free(&k);
    return err;
}
