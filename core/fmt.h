/*
 * Number formatting for hot paths (response heads, rate-limit headers,
 * Redis commands), where snprintf's format parsing and locale handling
 * were a visible share of a request's instructions.
 */
#ifndef AOS_FMT_H
#define AOS_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Decimal digits of v into out (room for 20 bytes), no terminator;
 * returns how many. */
static inline size_t aos_fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

#endif
