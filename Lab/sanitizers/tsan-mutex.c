// ThreadSanitizer annotations for Swift's Synchronization.Mutex on Linux,
// loaded with LD_PRELOAD by Lab/test's TSan step (never in a product).
//
// Why: Mutex's fast paths are atomics compiled into our code, which TSan
// sees; its contended paths (_lockSlow/_unlockSlow) hand the lock over
// through a priority-inheritance futex inside libswiftSynchronization.so,
// which TSan does not see. So under contention TSan misses the happens-before
// edge from one lock holder to the next and reports "Swift access race" on
// data only ever touched inside withLock (reproduced with 4 threads appending
// to a Mutex<[Int]>: every append counted, yet one report per run). Here the
// slow paths are wrapped to tell TSan what the kernel did: release before
// handing the lock over, acquire once it is ours.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>

// Weak: a process without the TSan runtime (the swift driver, git) that
// inherits LD_PRELOAD just calls through.
void __tsan_acquire(void *addr) __attribute__((weak));
void __tsan_release(void *addr) __attribute__((weak));

// The methods take the handle's address as Swift's self (swiftself register).
#define SELF void *__attribute__((swift_context))
#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"
#define TRYLOCK_SLOW "$s15Synchronization12_MutexHandleV12_tryLockSlowSbyF"

// dlsym once per function; threads may race to store the same pointer.
static void *resolve(void **slot, const char *name) {
    void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (!p) {
        p = dlsym(RTLD_NEXT, name);
        __atomic_store_n(slot, p, __ATOMIC_RELEASE);
    }
    return p;
}
static void *lock_real, *unlock_real, *trylock_real;

typedef __attribute__((swiftcall)) void (*lock_fn)(uint32_t, SELF);
typedef __attribute__((swiftcall)) void (*unlock_fn)(SELF);
typedef __attribute__((swiftcall)) bool (*trylock_fn)(SELF);

__attribute__((swiftcall)) void lock_slow(uint32_t id, SELF h) __asm__(LOCK_SLOW);
__attribute__((swiftcall)) void lock_slow(uint32_t id, SELF h) {
    lock_fn real = (lock_fn)resolve(&lock_real, LOCK_SLOW);
    real(id, h);
    if (__tsan_acquire) __tsan_acquire(h);
}

__attribute__((swiftcall)) void unlock_slow(SELF h) __asm__(UNLOCK_SLOW);
__attribute__((swiftcall)) void unlock_slow(SELF h) {
    unlock_fn real = (unlock_fn)resolve(&unlock_real, UNLOCK_SLOW);
    if (__tsan_release) __tsan_release(h);
    real(h);
}

__attribute__((swiftcall)) bool trylock_slow(SELF h) __asm__(TRYLOCK_SLOW);
__attribute__((swiftcall)) bool trylock_slow(SELF h) {
    trylock_fn real = (trylock_fn)resolve(&trylock_real, TRYLOCK_SLOW);
    bool locked = real(h);
    if (locked && __tsan_acquire) __tsan_acquire(h);
    return locked;
}
