/*
 * The nakkucache-bench l1 workload on Caffeine, for comparison. nakkucache-bench
 * compiles and runs this file itself; it can also be run by hand:
 *
 *   javac -cp /usr/share/java/caffeine.jar -d /tmp/cb CaffeineBench.java
 *   echo 'measure 1' | java -cp /tmp/cb:/usr/share/java/caffeine.jar CaffeineBench \
 *       --seq FILE [--keys N --duration-ms MS --warmup-ms MS ...]
 *
 * It reads the key index sequences the C harness generated (so both look up the
 * same keys in the same order), prefills a Cache<String, byte[]> with every key,
 * prints "CAFFEINE_MEMORY heap_per_entry=X" (JVM heap per entry beyond key + value
 * bytes), warms the JIT up, prints "CAFFEINE_READY", then for each "measure N" line
 * on stdin measures getIfPresent at N threads exactly as the C loop does (batches
 * of 64 lookups, each batch timed; a sequence entry with the sign bit set, from
 * --read-ratio, is a put of a new value instead) and prints "CAFFEINE threads=N ops=... misses=...
 * ops_per_sec=... p50_ns=... p99_ns=... p999_ns=... p90_ns=...". It exits at end of
 * input.
 */
import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.CyclicBarrier;

public final class CaffeineBench {
    static final int BATCH = 64;
    static final int SUB_BITS = 5; /* the histogram of bench/hist.c */
    static final int BUCKETS = (64 - SUB_BITS + 1) << SUB_BITS;

    int keys = 1000000, keySize = 12, valueSize = 100;
    long durationMs = 2000, opsPerThread = 0, warmupMs = 2000;
    int warmupThreads = 2;
    String seqPath;
    int[][] seqs;
    String[] lookupKeys;
    Cache<String, byte[]> cache;
    volatile boolean stop;

    public static void main(String[] args) throws Exception {
        CaffeineBench b = new CaffeineBench();
        b.parse(args);
        b.seqs = readSequences(Paths.get(b.seqPath));
        b.prefill();
        b.warmUp();
        System.out.println("CAFFEINE_READY");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "US-ASCII"));
        for (String line; (line = in.readLine()) != null; ) {
            String[] w = line.trim().split(" ");
            int t = w.length == 2 && w[0].equals("measure") ? Integer.parseInt(w[1]) : 0;
            if (t < 1 || t > b.seqs.length)
                throw new IllegalArgumentException("bad request: " + line + " (sequence file has "
                                                   + b.seqs.length + " threads)");
            b.report(t, b.measure(t, b.durationMs, b.opsPerThread));
            System.out.flush();
        }
    }

    void parse(String[] a) {
        for (int i = 0; i + 1 < a.length; i += 2) {
            String v = a[i + 1];
            switch (a[i]) {
            case "--seq": seqPath = v; break;
            case "--keys": keys = Integer.parseInt(v); break;
            case "--key-size": keySize = Integer.parseInt(v); break;
            case "--value-size": valueSize = Integer.parseInt(v); break;
            case "--duration-ms": durationMs = Long.parseLong(v); break;
            case "--ops": opsPerThread = Long.parseLong(v); break;
            case "--warmup-ms": warmupMs = Long.parseLong(v); break;
            case "--warmup-threads": warmupThreads = Integer.parseInt(v); break;
            default: throw new IllegalArgumentException("unknown flag " + a[i]);
            }
        }
        if (seqPath == null || a.length % 2 != 0)
            throw new IllegalArgumentException("usage: CaffeineBench --seq FILE [--flag value]...");
    }

    /* Format (little-endian): "NKBSEQ1\0", u32 threads, u32 len (a power of two),
     * then threads arrays of len u32 key indices. */
    static int[][] readSequences(Path p) throws IOException {
        try (FileChannel ch = FileChannel.open(p, StandardOpenOption.READ)) {
            ByteBuffer buf = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
            buf.order(ByteOrder.LITTLE_ENDIAN);
            byte[] magic = new byte[8];
            buf.get(magic);
            if (!new String(magic, 0, 7, "US-ASCII").equals("NKBSEQ1"))
                throw new IOException(p + ": not a key sequence file");
            int threads = buf.getInt(), len = buf.getInt();
            IntBuffer ints = buf.asIntBuffer();
            int[][] out = new int[threads][len];
            for (int t = 0; t < threads; t++)
                ints.get(out[t]);
            return out;
        }
    }

    /* Stored keys and lookup keys are distinct String objects with equal contents, so
     * a hit compares characters as the C side compares bytes; each lookup String
     * still caches its hashCode after first use (see docs/BENCHMARKS.md). The heap
     * growth across the prefill (between full GCs) gives the bytes per entry. */
    void prefill() {
        String fmt = "key:%0" + (keySize - 4) + "d";
        long before = heapUsedAfterGc();
        cache = Caffeine.newBuilder().maximumSize(keys).initialCapacity(keys).build();
        for (int i = 0; i < keys; i++) {
            byte[] v = new byte[valueSize];
            v[0] = (byte) i;
            cache.put(String.format(fmt, i), v);
        }
        cache.cleanUp();
        long after = heapUsedAfterGc();
        if (cache.estimatedSize() != keys)
            throw new IllegalStateException("prefill kept " + cache.estimatedSize() + " of " + keys);
        System.out.printf("CAFFEINE_MEMORY heap_per_entry=%.1f%n",
                          (after - before) / (double) keys - keySize - valueSize);
        lookupKeys = new String[keys];
        for (int i = 0; i < keys; i++)
            lookupKeys[i] = String.format(fmt, i);
    }

    static long heapUsedAfterGc() {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 3; i++)
            System.gc();
        return rt.totalMemory() - rt.freeMemory();
    }

    void warmUp() throws Exception {
        int most = Math.max(1, Math.min(warmupThreads, seqs.length));
        long end = System.nanoTime() + warmupMs * 1000000L;
        do {
            measure(most, Math.min(warmupMs, 500), 0);
        } while (System.nanoTime() < end);
    }

    static final class Result {
        long ops, misses, elapsedNs, sink;
        final long[] hist = new long[BUCKETS];
    }

    Result[] measure(int threads, long ms, long ops) throws Exception {
        Result[] res = new Result[threads];
        Thread[] th = new Thread[threads];
        CyclicBarrier start = new CyclicBarrier(threads + 1);
        stop = false;
        for (int t = 0; t < threads; t++) {
            final int id = t;
            res[t] = new Result();
            th[t] = new Thread(() -> run(start, seqs[id], ops, res[id]));
            th[t].start();
        }
        start.await();
        if (ops == 0) {
            Thread.sleep(ms);
            stop = true;
        }
        for (Thread x : th)
            x.join();
        return res;
    }

    void run(CyclicBarrier start, int[] seq, long ops, Result r) {
        final Cache<String, byte[]> c = cache;
        final String[] k = lookupKeys;
        final int mask = seq.length - 1;
        long i = 0, misses = 0, sink = 0;
        try {
            start.await();
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
        long t0 = System.nanoTime(), begin = t0;
        while (ops > 0 ? i < ops : !stop) {
            for (int j = 0; j < BATCH; j++) {
                int e = seq[(int) (i++ & mask)];
                if (e < 0) { /* NKB_SEQ_WRITE, the sign bit: put a new value, as cache_set copies one */
                    byte[] w = new byte[valueSize];
                    w[0] = (byte) (e & 0x7fffffff);
                    c.put(k[e & 0x7fffffff], w);
                    continue;
                }
                byte[] v = c.getIfPresent(k[e]);
                if (v == null)
                    misses++;
                else
                    sink += v[0];
            }
            long t1 = System.nanoTime();
            r.hist[bucketOf((t1 - t0) / BATCH)] += BATCH;
            t0 = t1;
        }
        r.elapsedNs = t0 - begin;
        r.ops = i;
        r.misses = misses;
        r.sink = sink;
    }

    static double rate(Result[] res) {
        double rate = 0;
        for (Result r : res)
            rate += r.ops / (r.elapsedNs / 1e9);
        return rate;
    }

    void report(int threads, Result[] res) {
        long ops = 0, misses = 0;
        long[] hist = new long[BUCKETS];
        for (Result r : res) {
            ops += r.ops;
            misses += r.misses;
            for (int b = 0; b < BUCKETS; b++)
                hist[b] += r.hist[b];
        }
        System.out.printf("CAFFEINE threads=%d ops=%d misses=%d ops_per_sec=%.1f p50_ns=%d"
                          + " p99_ns=%d p999_ns=%d p90_ns=%d%n", threads, ops, misses,
                          rate(res), quantile(hist, ops, 0.50), quantile(hist, ops, 0.99),
                          quantile(hist, ops, 0.999), quantile(hist, ops, 0.90));
    }

    static int bucketOf(long v) {
        if (v < (1L << SUB_BITS))
            return (int) Math.max(v, 0);
        int e = 63 - Long.numberOfLeadingZeros(v);
        return ((e - SUB_BITS + 1) << SUB_BITS) + (int) ((v >>> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1));
    }

    static long valueOf(int b) {
        int row = b >>> SUB_BITS, sub = b & ((1 << SUB_BITS) - 1);
        if (row == 0)
            return sub;
        int shift = row - 1;
        return (((1L << SUB_BITS) + sub) << shift) | ((1L << shift) >>> 1);
    }

    static long quantile(long[] hist, long count, double q) {
        long rank = Math.min((long) (q * count), count - 1), seen = 0;
        for (int b = 0; b < BUCKETS; b++) {
            seen += hist[b];
            if (seen > rank)
                return valueOf(b);
        }
        return 0;
    }
}
