/*
 * The libFuzzer entry point of each fuzz target, shared with driver.c,
 * which runs a target as a plain TAP test in `make check`.
 */
#ifndef AOS_FUZZ_H
#define AOS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
