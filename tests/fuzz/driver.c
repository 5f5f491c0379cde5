/*
 * Runs a libFuzzer target without libFuzzer, as a TAP test: every file of
 * the corpus directory, then RANDOM_INPUTS inputs from a fixed seed built
 * from fragments that the detectors react to.  A target failure aborts
 * the process, which fails the test.
 *
 * Usage: driver [corpus-dir]  (default $AOS_SRCDIR/tests/fuzz/corpus/pii)
 */
#include "config.h"

#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANDOM_INPUTS 2000
#define RANDOM_MAX_LEN 4096

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

/* xorshift64*: deterministic across platforms, unlike rand(). */
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static const char *const fragments[] = {
    "4111", "1111", " ", "-", ".", "@", "example", "com", "+1 ", "+44 ", "(415) ", "555", "0", "9", "12",
    "DE89", "3704", "0044", "0532", "0130", "00", "GB82", "WEST", ":", "::", "ffff", "192.168.", "255", "256",
    "aos_", "abcdef012345", "_", "sk-", "ghp_", "AKIA", "eyJhbGciOiJIUzI1NiJ9", "eyJ", "\xc3\xa9", "\xf0\x9f\x98\x80",
    "078-05-1120", "jane", "\n", "\t", "%", "x", "Z",
};

static int run_corpus(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        printf("# cannot open %s\n", dir);
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    static unsigned char buf[1 << 20];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        int w = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (w < 0 || (size_t)w >= sizeof path) {
            rc = -1;
            break;
        }
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            printf("# cannot open %s\n", path);
            rc = -1;
            break;
        }
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        (*count)++;
    }
    closedir(d);
    return rc;
}

static void run_random(void)
{
    static unsigned char buf[RANDOM_MAX_LEN];
    const size_t nfrag = sizeof fragments / sizeof fragments[0];
    for (int i = 0; i < RANDOM_INPUTS; i++) {
        size_t len = 0, want = (size_t)(rng() % 300);
        while (len < want) {
            uint64_t r = rng();
            if (r % 8 == 0) {
                buf[len++] = (unsigned char)(r >> 8); /* any byte, including invalid UTF-8 */
                continue;
            }
            const char *f = fragments[(r >> 8) % nfrag];
            size_t fl = strlen(f);
            if (len + fl > sizeof buf)
                break;
            memcpy(buf + len, f, fl);
            len += fl;
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
}

int main(int argc, char **argv)
{
    char dir[4096];
    const char *src = getenv("AOS_SRCDIR");
    int w = argc > 1 ? snprintf(dir, sizeof dir, "%s", argv[1])
                     : snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/pii", src != NULL ? src : ".");
    if (w < 0 || (size_t)w >= sizeof dir) {
        puts("Bail out! corpus path too long");
        return 1;
    }
    puts("1..2");
    size_t count = 0;
    int rc = run_corpus(dir, &count);
    printf("%s 1 - corpus %s (%zu files)\n", rc == 0 && count > 0 ? "ok" : "not ok", dir, count);
    fflush(stdout);
    run_random();
    printf("ok 2 - %d pseudo-random inputs\n", RANDOM_INPUTS);
    return rc == 0 && count > 0 ? 0 : 1;
}
