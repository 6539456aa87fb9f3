/*
 * Epoch-based reclamation: lets L1 readers probe tables and take references with
 * no lock and no shared write, while writers unlink entries and tables under the
 * stripe lock and free them only after every reader that could still see them has
 * left its critical section (a grace period: the global epoch advanced twice).
 * One process-wide domain; each thread gets a padded record on first use.
 */
#ifndef NKC_EBR_H
#define NKC_EBR_H

#include <stdint.h>

/* Enter/leave a read-side critical section (nestable, per thread, cheap: a store
 * to the thread's own cache line plus one fence). Nothing found inside may be used
 * after nkc_ebr_exit unless a reference was taken. */
void nkc_ebr_enter(void);
void nkc_ebr_exit(void);

/* The current global epoch, to tag something just unlinked. */
uint64_t nkc_ebr_epoch(void);
/* Tries to advance the global epoch (fails when some reader lags behind).
 * Returns the epoch now in force. */
uint64_t nkc_ebr_advance(void);
/* True when memory retired at epoch `retired` can no longer be seen by any reader. */
int nkc_ebr_safe(uint64_t retired, uint64_t now);
/* Blocks until everything unlinked before the call is unreachable (a full grace
 * period). Must not be called inside a critical section. Sleeps, never spins hot. */
void nkc_ebr_synchronize(void);

/* A small number identifying the calling thread, stable for its life, reused after
 * it exits: picks the per-thread counter slot. */
unsigned nkc_thread_slot(void);

#endif /* NKC_EBR_H */
