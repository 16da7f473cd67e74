#pragma once
// What Swift cannot call directly: variadic libc functions.
#include <sys/prctl.h>

/// Names the calling thread (the kernel keeps 15 bytes): prctl is variadic.
static inline int devif_name_thread(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

/// The calling thread's name into `name` (16 bytes, NUL-ended).
static inline int devif_thread_name(char name[16]) {
    return prctl(PR_GET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}
