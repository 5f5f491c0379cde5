/* Thread pool + loop: completions run on the loop thread, the queue is
 * bounded, shutdown runs what was queued. */
#include "config.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "loop.h"
#include "threadpool.h"

#define NJOBS 2000

struct counter_state {
    struct aos_loop *loop;
    atomic_int worked;
    int done_on_loop;   /* touched only by the loop thread */
    int done_elsewhere;
    int total;
};

static void count_work(void *arg)
{
    struct counter_state *s = arg;
    atomic_fetch_add(&s->worked, 1);
}

static void count_done(void *arg)
{
    struct counter_state *s = arg;
    if (aos_loop_is_current(s->loop))
        s->done_on_loop++;
    else
        s->done_elsewhere++;
    if (s->done_on_loop + s->done_elsewhere == s->total)
        aos_loop_stop(s->loop);
}

static void test_completions_run_on_loop(void **state)
{
    (void)state;
    struct counter_state s = {.total = NJOBS};
    s.loop = aos_loop_new("test");
    assert_non_null(s.loop);
    struct aos_pool *pool = aos_pool_new(4, NJOBS);
    assert_non_null(pool);
    assert_int_equal(aos_loop_start_thread(s.loop), 0);
    for (int i = 0; i < NJOBS; i++)
        assert_int_equal(aos_pool_submit(pool, count_work, count_done, s.loop, &s), 0);
    aos_loop_join(s.loop);
    aos_pool_free(pool);
    assert_int_equal(atomic_load(&s.worked), NJOBS);
    assert_int_equal(s.done_on_loop, NJOBS);
    assert_int_equal(s.done_elsewhere, 0);
    aos_loop_free(s.loop);
}

struct gate {
    sem_t started;
    sem_t release;
    atomic_int ran;
};

static void blocking_work(void *arg)
{
    struct gate *g = arg;
    sem_post(&g->started);
    sem_wait(&g->release);
    atomic_fetch_add(&g->ran, 1);
}

static void quick_work(void *arg)
{
    struct gate *g = arg;
    atomic_fetch_add(&g->ran, 1);
}

static void test_queue_is_bounded(void **state)
{
    (void)state;
    struct gate g;
    sem_init(&g.started, 0, 0);
    sem_init(&g.release, 0, 0);
    atomic_init(&g.ran, 0);
    struct aos_pool *pool = aos_pool_new(1, 2);
    assert_non_null(pool);
    assert_int_equal(aos_pool_submit(pool, blocking_work, NULL, NULL, &g), 0);
    sem_wait(&g.started); /* the only thread is now busy */
    assert_int_equal(aos_pool_submit(pool, quick_work, NULL, NULL, &g), 0);
    assert_int_equal(aos_pool_submit(pool, quick_work, NULL, NULL, &g), 0);
    assert_int_equal(aos_pool_pending(pool), 3);
    /* Third waiting job exceeds max_queue = 2: refused at once. */
    assert_int_equal(aos_pool_submit(pool, quick_work, NULL, NULL, &g), -1);
    sem_post(&g.release);
    aos_pool_free(pool); /* runs the two queued jobs before joining */
    assert_int_equal(atomic_load(&g.ran), 3);
    sem_destroy(&g.started);
    sem_destroy(&g.release);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    assert_null(aos_pool_new(0, 10));
    assert_null(aos_pool_new(2, 0));
}

#define POSTERS 4
#define POSTS 500

struct post_state {
    struct aos_loop *loop;
    int last_seen[POSTERS]; /* loop thread only */
    int in_order;
    int count;
};

struct post_item {
    struct post_state *s;
    int poster;
    int seq;
};

static struct post_item items[POSTERS][POSTS];

static void on_post(void *arg)
{
    struct post_item *it = arg;
    struct post_state *s = it->s;
    if (it->seq == s->last_seen[it->poster] + 1)
        s->in_order++;
    s->last_seen[it->poster] = it->seq;
    if (++s->count == POSTERS * POSTS)
        aos_loop_stop(s->loop);
}

static void *poster_thread(void *arg)
{
    struct post_item *row = arg;
    for (int i = 0; i < POSTS; i++)
        if (aos_loop_post(row[i].s->loop, on_post, &row[i]) != 0)
            return (void *)1;
    return NULL;
}

static void test_post_is_fifo_per_thread(void **state)
{
    (void)state;
    struct post_state s = {0};
    for (int p = 0; p < POSTERS; p++)
        s.last_seen[p] = -1;
    s.loop = aos_loop_new("fifo");
    assert_non_null(s.loop);
    assert_int_equal(aos_loop_start_thread(s.loop), 0);
    pthread_t threads[POSTERS];
    for (int p = 0; p < POSTERS; p++) {
        for (int i = 0; i < POSTS; i++)
            items[p][i] = (struct post_item){.s = &s, .poster = p, .seq = i};
        assert_int_equal(pthread_create(&threads[p], NULL, poster_thread, items[p]), 0);
    }
    for (int p = 0; p < POSTERS; p++) {
        void *ret;
        pthread_join(threads[p], &ret);
        assert_null(ret);
    }
    aos_loop_join(s.loop);
    assert_int_equal(s.count, POSTERS * POSTS);
    assert_int_equal(s.in_order, POSTERS * POSTS);
    /* A stopped loop refuses new posts instead of queuing them forever. */
    assert_int_equal(aos_loop_post(s.loop, on_post, &items[0][0]), -1);
    aos_loop_free(s.loop);
}

int main(void)
{
    if (aos_loop_global_init() != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completions_run_on_loop),
        cmocka_unit_test(test_queue_is_bounded),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_post_is_fifo_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
