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
 *   - idle workers spin briefly (about a millisecond of wall time, whatever the CPU's pause
 *     costs), then sleep on a condition variable; a spin yields the CPU every few
 *     microseconds (a spinner that shares its CPU with the thread it waits for would keep
 *     that thread off it: measured, jobs of 50 us took 1.3 ms, one whole spin);
 *   - on Linux a sleeping worker is woken on another CPU than the caller's, and a worker
 *     that finds itself on the caller's CPU moves off it (see place_sleepers);
 *   - the pool is created lazily and re-created in a forked child (pthread_atfork);
 *     mdfi_conv_shutdown() joins the workers (programs that want a clean exit call it);
 *   - one job runs at a time: a caller that finds the pool busy (another thread is
 *     convolving) runs its job on its own thread instead of waiting.
 * The caller is participant 0.  Without POSIX threads (Windows, or MDFI_NO_THREADS) every
 * job runs on the caller's thread.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE                 /* clock_gettime, sched_yield, and on Linux sched_getcpu and
                                     * the CPU affinity calls, under -std=c11 */
#endif
#include "mdfi_conv_internal.h"

#include <stddef.h>

#if MDFI_POOL

#include <pthread.h>
#include <sched.h>
#include <time.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define MDFI_MOVE_OFF_CALLER 1
#else
#define MDFI_MOVE_OFF_CALLER 0
#endif
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <emmintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define SPIN_NS 1000000             /* spin ~1 ms (wall time) before sleeping        */
#define SPIN_STEP 128               /* pauses between a yield and a clock check      */

/* A bounded busy-wait: `while (cond && spin_on(&s)) ;` pauses, and every SPIN_STEP pauses
 * (a few microseconds) yields the CPU to a thread that shares it and reads the clock;
 * returns 0 once SPIN_NS have passed since the first call (then the caller sleeps). */
typedef struct {
    int n;
    int64_t t0;
} spin_state;

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int spin_on(spin_state *s)
{
    CPU_RELAX();
    if (++s->n % SPIN_STEP) return 1;
    sched_yield();
    const int64_t t = now_ns();
    if (s->n == SPIN_STEP) s->t0 = t;
    return t - s->t0 < SPIN_NS;
}

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
    _Atomic int caller_cpu;         /* the CPU the caller published the job on (Linux) */
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

#if MDFI_MOVE_OFF_CALLER
/* Where a sleeping worker wakes.  Linux may wake a worker on the CPU of the thread that
 * wakes it while another CPU is idle -- in a VM it skips a halted vCPU, which reports itself
 * preempted -- and the worker then waits behind the caller, or shares its CPU, until the
 * load balancer moves it some milliseconds later (measured on a 2-vCPU AMD EPYC VM: after
 * 0.03-0.25 s idle, half of the 2-thread yolov3-tiny forwards ran their first layers on
 * one CPU, 15 ms instead of 8.3).  So the caller, before it wakes the sleepers, gives each
 * one its affinity without the caller's CPU (the kernel must then wake it elsewhere); the
 * worker restores its affinity as soon as it runs.  Guarded by pool.m: a worker marks
 * itself asleep under it and can only return from its wait holding it. */
typedef struct {
    pid_t tid;                      /* the worker's thread id (0: not started yet)    */
    int asleep;                     /* waiting on pool.cv                              */
    int pinned;                     /* its affinity was narrowed; `mask` restores it   */
    cpu_set_t mask;
} worker_place;
static worker_place places[MDFI_POOL_MAX_THREADS];

static void place_sleepers(int nworkers, int cpu)
{
    if (cpu < 0 || cpu >= CPU_SETSIZE) return;
    for (int i = 0; i < nworkers; ++i) {
        worker_place *p = &places[i];
        if (!p->asleep || p->pinned || p->tid <= 0) continue;
        if (sched_getaffinity(p->tid, sizeof p->mask, &p->mask) != 0 || !CPU_ISSET(cpu, &p->mask)) continue;
        cpu_set_t other = p->mask;
        CPU_CLR(cpu, &other);
        if (CPU_COUNT(&other) > 0 && sched_setaffinity(p->tid, sizeof other, &other) == 0) p->pinned = 1;
    }
}

/* A spinning worker that finds the caller on its own CPU (the caller moved there) moves off
 * it: its affinity without that CPU (the kernel migrates it at once), then its affinity as it
 * was -- the scheduler would otherwise let the two share one CPU for milliseconds. */
static void move_off(int cpu)
{
    cpu_set_t mask, other;
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof mask, &mask) != 0) return;
    other = mask;
    CPU_CLR(cpu, &other);
    if (CPU_COUNT(&other) == 0) return;
    if (sched_setaffinity(0, sizeof other, &other) == 0) (void)sched_setaffinity(0, sizeof mask, &mask);
}
#endif

static void *worker_main(void *slot)
{
#if MDFI_MOVE_OFF_CALLER
    const int me = (int)(intptr_t)slot;
    pthread_mutex_lock(&pool.m);
    places[me].tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_unlock(&pool.m);
#else
    (void)slot;
#endif
    uint32_t seen = atomic_load(&pool.job_gen);
    for (;;) {
        /* wait for a new job: spin, then sleep */
        /* A worker may start late (after the job it was created for, or even after a
         * shutdown bumped the generation it then reads as `seen`), so `quit` is part of the
         * wait condition; shutdown sets it under pool.m, so it cannot be missed. */
        spin_state spin = {0, 0};
        while (atomic_load(&pool.job_gen) == seen && !atomic_load(&pool.quit) && spin_on(&spin)) {
        }
        if (atomic_load(&pool.job_gen) == seen && !atomic_load(&pool.quit)) {
            pthread_mutex_lock(&pool.m);
#if MDFI_MOVE_OFF_CALLER
            places[me].asleep = 1;
#endif
            while (atomic_load(&pool.job_gen) == seen && !atomic_load(&pool.quit))
                pthread_cond_wait(&pool.cv, &pool.m);
#if MDFI_MOVE_OFF_CALLER
            places[me].asleep = 0;
            const int restore = places[me].pinned;
            places[me].pinned = 0;
            const cpu_set_t mask = places[me].mask;
            pthread_mutex_unlock(&pool.m);
            if (restore) (void)sched_setaffinity(0, sizeof mask, &mask);
#else
            pthread_mutex_unlock(&pool.m);
#endif
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
#if MDFI_MOVE_OFF_CALLER
        {
            const int here = sched_getcpu(), caller = atomic_load(&pool.caller_cpu);
            if (here >= 0 && here == caller) move_off(here);
        }
#endif
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
#if MDFI_MOVE_OFF_CALLER
    memset(places, 0, sizeof places);
#endif
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
        if (pthread_create(&pool.threads[pool.nworkers], NULL, worker_main, (void *)(intptr_t)pool.nworkers) != 0)
            break;
        pool.nworkers++;
    }
    /* publish: parameters, then an open gate for the new generation, then the generation */
    pool.fn = fn;
    pool.arg = arg;
#if MDFI_MOVE_OFF_CALLER
    const int cpu = sched_getcpu();
    atomic_store(&pool.caller_cpu, cpu);
#endif
    atomic_store(&pool.maxjoin, nthreads - 1);
    atomic_store(&pool.finished, 0);
    const uint32_t gen = atomic_load(&pool.job_gen) + 1;
    atomic_store(&pool.gate, ((uint64_t)gen << 32) | GATE_OPEN);
    pthread_mutex_lock(&pool.m);
#if MDFI_MOVE_OFF_CALLER
    place_sleepers(pool.nworkers, cpu);
#endif
    atomic_store(&pool.job_gen, gen);
    pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.m);

    fn(arg, 0);

    /* close the gate; wait only for the workers that joined */
    const uint64_t closed = atomic_fetch_and(&pool.gate, ~GATE_OPEN);
    const int joined = GATE_COUNT(closed);
    if (atomic_load(&pool.finished) < joined) {
        spin_state spin = {0, 0};
        while (atomic_load(&pool.finished) < joined && spin_on(&spin)) {
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
    spin_state spin = {0, 0};
    while (atomic_load(counter) < total) {
        if (spin_on(&spin)) continue;
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
