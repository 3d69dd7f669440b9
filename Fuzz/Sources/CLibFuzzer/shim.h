#include <stddef.h>
#include <stdint.h>

// libFuzzer's driver (linked by -sanitize=fuzzer). SwiftPM points an executable's
// `main` at the module's own entry function, so libFuzzer's `main` is never linked
// and the executable starts the driver itself.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));
