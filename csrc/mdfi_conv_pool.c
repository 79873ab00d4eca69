/* mdfi_conv_pool.c -- the convolution's worker threads (POSIX threads; interface in
 * mdfi_conv_internal.h).
 *
 * Why not OpenMP: libgomp's pool does not survive fork() (a child that opens a parallel
 * region after its parent did hangs), and fork/join with barriers makes every phase wait
 * for the slowest thread to *arrive* -- after a sleep that can take a millisecond to wake
 * from in a VM, or a whole scheduler time slice when another process competes for the
 * cores.  Here
 *   - work is split into items taken from shared counters, and threads wait for the
 *     *completion* of a phase's items, never for another thread to arrive: a worker that
 *     wakes up late simply finds less (or no) work left;
 *   - a job is joined through a gate: a worker that wakes up after the caller has finished
 *     the job never touches it (so the caller only waits for workers that joined, which
 *     are running);
 *   - idle workers spin briefly, then sleep on a condition variable;
 *   - the pool is created lazily and re-created in a forked child (pthread_atfork);
 *     mdfi_conv_shutdown() joins the workers (programs that want a clean exit call it);
 *   - one job runs at a time: a caller that finds the pool busy (another thread is
 *     convolving) runs its job on its own thread instead of waiting.
 * The caller is participant 0.  Without POSIX threads (Windows, or MDFI_NO_THREADS) every
 * job runs on the caller's thread.
 */
#include "mdfi_conv_internal.h"

#include <stddef.h>

#if MDFI_POOL

#include <pthread.h>
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <emmintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_ITERS 40000            /* ~1 ms of pause before sleeping */

/* Job gate, one 64-bit word: generation (high 32 bits) | open flag (bit 31) | number of
 * workers that joined (bits 0-30). */
#define GATE_OPEN ((uint64_t)1 << 31)
#define GATE_GEN(g) ((uint32_t)((g) >> 32))
#define GATE_COUNT(g) ((int)((g) & 0x7fffffffu))

static struct {
    pthread_mutex_t busy;           /* held by the caller running a job            */
    pthread_mutex_t m;              /* protects sleeping on cv                     */
    pthread_cond_t cv;              /* broadcast on every event below              */
    int nworkers;                   /* threads created                             */
    _Atomic uint32_t job_gen;       /* +1 when a job is published                  */
    _Atomic uint64_t gate;          /* see GATE_*                                  */
    _Atomic int32_t finished;       /* joined workers done with the current job    */
    mdfi_job_fn fn;                 /* current job (valid while the gate is open or */
    void *arg;                      /*  a joined worker runs)                      */
    _Atomic int maxjoin;            /* workers allowed to join                     */
    _Atomic int quit;               /* set by mdfi_pool_shutdown                   */
    pthread_t threads[MDFI_POOL_MAX_THREADS];   /* the workers, joined at shutdown  */
} pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .m = PTHREAD_MUTEX_INITIALIZER,
          .cv = PTHREAD_COND_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void wake_all(void)
{
    pthread_mutex_lock(&pool.m);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.m);
}

static void *worker_main(void *unused)
{
    (void)unused;
    uint32_t seen = atomic_load(&pool.job_gen);
    for (;;) {
        /* wait for a new job: spin, then sleep */
        /* A worker may start late (after the job it was created for, or even after a
         * shutdown bumped the generation it then reads as `seen`), so `quit` is part of the
         * wait condition; shutdown sets it under pool.m, so it cannot be missed. */
        int spin = 0;
        while (atomic_load(&pool.job_gen) == seen && !atomic_load(&pool.quit) && spin < SPIN_ITERS) {
            CPU_RELAX();
            ++spin;
        }
        if (atomic_load(&pool.job_gen) == seen && !atomic_load(&pool.quit)) {
            pthread_mutex_lock(&pool.m);
            while (atomic_load(&pool.job_gen) == seen && !atomic_load(&pool.quit))
                pthread_cond_wait(&pool.cv, &pool.m);
            pthread_mutex_unlock(&pool.m);
        }
        if (atomic_load(&pool.quit)) return NULL;
        seen = atomic_load(&pool.job_gen);
        /* join the job if its gate is still open */
        uint64_t g = atomic_load(&pool.gate);
        int tid = 0;
        while (GATE_GEN(g) == seen && (g & GATE_OPEN) && GATE_COUNT(g) < atomic_load(&pool.maxjoin)) {
            if (atomic_compare_exchange_weak(&pool.gate, &g, g + 1)) {
                tid = GATE_COUNT(g) + 1;
                break;
            }
        }
        if (tid == 0) continue;
        pool.fn(pool.arg, tid);
        atomic_fetch_add(&pool.finished, 1);
        wake_all();
    }
    return NULL;
}

/* In a forked child only the forking thread exists: forget the workers and re-initialize
 * the synchronization objects (another thread may have held them at fork time). */
static void pool_atfork_child(void)
{
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.m, NULL);
    pthread_cond_init(&pool.cv, NULL);
    pool.nworkers = 0;
    atomic_store(&pool.gate, (uint64_t)0);
}

static void pool_init_once(void) { (void)pthread_atfork(NULL, NULL, pool_atfork_child); }

int mdfi_pool_run(mdfi_job_fn fn, void *arg, int nthreads)
{
    if (nthreads > MDFI_POOL_MAX_THREADS) nthreads = MDFI_POOL_MAX_THREADS;
    if (nthreads <= 1) {
        fn(arg, 0);
        return 1;
    }
    pthread_once(&pool_once, pool_init_once);
    if (pthread_mutex_trylock(&pool.busy) != 0) {   /* busy: run on this thread */
        fn(arg, 0);
        return 1;
    }
    while (pool.nworkers < nthreads - 1) {
        if (pthread_create(&pool.threads[pool.nworkers], NULL, worker_main, NULL) != 0) break;
        pool.nworkers++;
    }
    /* publish: parameters, then an open gate for the new generation, then the generation */
    pool.fn = fn;
    pool.arg = arg;
    atomic_store(&pool.maxjoin, nthreads - 1);
    atomic_store(&pool.finished, 0);
    const uint32_t gen = atomic_load(&pool.job_gen) + 1;
    atomic_store(&pool.gate, ((uint64_t)gen << 32) | GATE_OPEN);
    pthread_mutex_lock(&pool.m);
    atomic_store(&pool.job_gen, gen);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.m);

    fn(arg, 0);

    /* close the gate; wait only for the workers that joined */
    const uint64_t closed = atomic_fetch_and(&pool.gate, ~GATE_OPEN);
    const int joined = GATE_COUNT(closed);
    if (atomic_load(&pool.finished) < joined) {
        int spin = 0;
        while (atomic_load(&pool.finished) < joined && spin < SPIN_ITERS) {
            CPU_RELAX();
            ++spin;
        }
        pthread_mutex_lock(&pool.m);
        while (atomic_load(&pool.finished) < joined) pthread_cond_wait(&pool.cv, &pool.m);
        pthread_mutex_unlock(&pool.m);
    }
    pthread_mutex_unlock(&pool.busy);
    return joined + 1;
}

void mdfi_pool_shutdown(void)
{
    pthread_once(&pool_once, pool_init_once);
    pthread_mutex_lock(&pool.busy);                 /* no job is running after this   */
    pthread_mutex_lock(&pool.m);
    atomic_store(&pool.quit, 1);
    atomic_fetch_add(&pool.job_gen, 1);             /* wake every worker              */
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.m);
    for (int i = 0; i < pool.nworkers; ++i) pthread_join(pool.threads[i], NULL);
    pool.nworkers = 0;
    atomic_store(&pool.quit, 0);
    pthread_mutex_unlock(&pool.busy);
}

int64_t mdfi_pool_next(mdfi_counter *counter) { return atomic_fetch_add(counter, 1); }

int64_t mdfi_pool_next_end(mdfi_counter *counter, int64_t total, int back, int64_t parts, int64_t minrun,
                           int64_t *end)
{
    int64_t v = atomic_load(counter);
    for (;;) {
        const int64_t lo = v & 0xffffffff, nb = (int64_t)((uint64_t)v >> 32), left = total - lo - nb;
        if (left <= 0) {
            *end = total;
            return total;
        }
        int64_t n = left / (parts > 0 ? parts : 1);
        if (n < minrun) n = minrun;
        if (n < 1) n = 1;
        if (n > left) n = left;
        const int64_t nv = back ? (int64_t)((uint64_t)(nb + n) << 32 | (uint64_t)lo) : (int64_t)((uint64_t)nb << 32 | (uint64_t)(lo + n));
        if (atomic_compare_exchange_weak(counter, &v, nv)) {
            const int64_t s = back ? total - nb - n : lo;
            *end = s + n;
            return s;
        }
    }
}

void mdfi_pool_done(mdfi_counter *counter, int64_t total)
{
    if (atomic_fetch_add(counter, 1) + 1 >= total) wake_all();
}

void mdfi_pool_wait(mdfi_counter *counter, int64_t total)
{
    int spin = 0;
    while (atomic_load(counter) < total) {
        if (++spin < SPIN_ITERS) {
            CPU_RELAX();
            continue;
        }
        pthread_mutex_lock(&pool.m);
        while (atomic_load(counter) < total) pthread_cond_wait(&pool.cv, &pool.m);
        pthread_mutex_unlock(&pool.m);
    }
}

#else /* no threads */

void mdfi_pool_shutdown(void) {}

int mdfi_pool_run(mdfi_job_fn fn, void *arg, int nthreads)
{
    (void)nthreads;
    fn(arg, 0);
    return 1;
}

int64_t mdfi_pool_next(mdfi_counter *counter) { return (*counter)++; }

int64_t mdfi_pool_next_end(mdfi_counter *counter, int64_t total, int back, int64_t parts, int64_t minrun,
                           int64_t *end)
{
    (void)back;
    (void)parts;
    (void)minrun;
    const int64_t s = *counter;
    *end = *counter = s < total ? total : s;
    return s;
}

void mdfi_pool_done(mdfi_counter *counter, int64_t total)
{
    (void)total;
    ++*counter;
}

void mdfi_pool_wait(mdfi_counter *counter, int64_t total)
{
    (void)counter;
    (void)total;
}

#endif
