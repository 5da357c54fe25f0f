/* B6's C floor: two threads hand a turn back and forth through one mutex and condition
 * variable, N round trips; prints the microseconds per round trip. What one call from a thread
 * into another and back costs on this machine with no interpreter in the way.
 * Built by bench_runs.py with the system's C compiler: cc -O2 -pthread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t turned = PTHREAD_COND_INITIALIZER;
static long turn = 0; /* even: the caller's turn; odd: the other thread's */
static long n;

static void *answer(void *unused) {
    (void)unused;
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&mutex);
        while (turn % 2 == 0) pthread_cond_wait(&turned, &mutex);
        turn++;
        pthread_cond_signal(&turned);
        pthread_mutex_unlock(&mutex);
    }
    return NULL;
}

int main(int argc, char **argv) {
    n = argc > 1 ? atol(argv[1]) : 20000;
    pthread_t other;
    if (pthread_create(&other, NULL, answer, NULL) != 0) return 1;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&mutex);
        turn++;
        pthread_cond_signal(&turned);
        while (turn % 2 == 1) pthread_cond_wait(&turned, &mutex);
        pthread_mutex_unlock(&mutex);
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    pthread_join(other, NULL);
    double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
    printf("%.3f\n", ns / n / 1000.0);
    return 0;
}
