// C++ runtime stubs for bare-metal edgemnist firmware: nothing is ever deleted or destroyed,
// so these keep libstdc++'s exception/terminate machinery and newlib's malloc/atexit out of
// the link.
#include <cstddef>

#include "platform.h"

// Virtual destructors of TFLM classes reference the deleting destructor, hence operator
// delete; the firmware allocates nothing on the heap, so it is never called with an object.
void operator delete(void*) noexcept {}
void operator delete(void*, std::size_t) noexcept {}

extern "C" {

void __cxa_pure_virtual(void) {
  edgemnist_write("EDGEMNIST FAULT pure_virtual\n");
  edgemnist_exit(3);
}

// Destructors of static objects are never run (main's return ends the program).
int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }
int __aeabi_atexit(void*, void (*)(void*), void*) { return 0; }

}  // extern "C"
