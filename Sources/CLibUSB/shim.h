#pragma once
#include <libusb.h>

// libusb_set_option is variadic, which Swift cannot call: one fixed-arity
// wrapper per option devif uses.
static inline int devif_libusb_no_device_discovery(libusb_context *ctx) {
    (void)ctx;
    return libusb_set_option(NULL, LIBUSB_OPTION_NO_DEVICE_DISCOVERY);
}
static inline int devif_libusb_set_log_level(libusb_context *ctx, int level) {
    return libusb_set_option(ctx, LIBUSB_OPTION_LOG_LEVEL, level);
}
