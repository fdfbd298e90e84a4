// Bare-metal start-up for Cortex-M4/M7/M55 (edgemnist firmware template).
//
// No CMSIS device header and no newlib crt0/rdimon start-up: link with -nostartfiles and
// cortex_m.ld. Reset_Handler sets the stack from the linker script (and MSPLIM on Armv8-M
// Mainline), enables the FPU, copies .data, zeroes .bss, runs the C++ constructors, calls
// main() and exits through semihosting with main's return value.
#include <stdint.h>

#include "platform.h"

// Linker-script symbols (cortex_m.ld).
extern uint32_t __StackTop;
extern uint32_t __StackLimit;
extern uint32_t __data_load_start;
extern uint32_t __data_start;
extern uint32_t __data_end;
extern uint32_t __bss_start;
extern uint32_t __bss_end;
extern void (*__preinit_array_start[])(void);
extern void (*__preinit_array_end[])(void);
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);

extern int main(void);

// C++ objects with static storage register their destructors against this handle
// (__cxa_atexit); newlib's crt files normally define it.
void* __dso_handle = 0;

void Reset_Handler(void);
void SysTick_Handler(void);  // platform.c
void edgemnist_reset_c(void);

// Fault handlers may run on a broken stack (an overflow is the usual cause): each one moves
// MSP back to the top of the stack region, then reports by number.
enum { kNMI, kHardFault, kMemManage, kBusFault, kUsageFault, kSecureFault, kUnexpectedInterrupt };

__attribute__((noreturn, used)) void edgemnist_fault(int which) {
  static const char* const kNames[] = {"NMI", "HardFault", "MemManage", "BusFault", "UsageFault",
                                       "SecureFault", "UnexpectedInterrupt"};
  edgemnist_write("EDGEMNIST FAULT ");
  edgemnist_write(kNames[which]);
  edgemnist_write("\n");
  edgemnist_exit(3);
}

#define EDGEMNIST_STR2(x) #x
#define EDGEMNIST_STR(x) EDGEMNIST_STR2(x)
#define EDGEMNIST_FAULT_HANDLER(handler, number)             \
  __attribute__((naked)) void handler(void) {                \
    __asm volatile(                                          \
        ".syntax unified\n"                                  \
        "ldr r0, =__StackTop\n"                              \
        "msr msp, r0\n"                                      \
        "movs r0, #" EDGEMNIST_STR(number) "\n"               \
        "b edgemnist_fault\n");                              \
  }

EDGEMNIST_FAULT_HANDLER(NMI_Handler, 0)
EDGEMNIST_FAULT_HANDLER(HardFault_Handler, 1)
EDGEMNIST_FAULT_HANDLER(MemManage_Handler, 2)
EDGEMNIST_FAULT_HANDLER(BusFault_Handler, 3)
EDGEMNIST_FAULT_HANDLER(UsageFault_Handler, 4)
EDGEMNIST_FAULT_HANDLER(SecureFault_Handler, 5)
EDGEMNIST_FAULT_HANDLER(Default_Handler, 6)
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));

// 16 system exceptions + 96 external interrupts (covers the MPS2/MPS3 boards QEMU models;
// none of them is enabled, so any that fires is reported as a fault).
#define EDGEMNIST_NUM_IRQS 96
typedef void (*VectorEntry)(void);
__attribute__((section(".isr_vector"), used)) const VectorEntry g_edgemnist_vectors[16 + EDGEMNIST_NUM_IRQS] = {
    (VectorEntry)(uintptr_t)&__StackTop,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    SecureFault_Handler,  // Armv8-M Mainline; reserved on Armv7-M
    0,
    0,
    0,
    SVC_Handler,
    DebugMon_Handler,
    0,
    PendSV_Handler,
    SysTick_Handler,
    [16 ... 16 + EDGEMNIST_NUM_IRQS - 1] = Default_Handler,
};

// Naked: runs on whatever stack the core loaded from the vector table, sets it again from the
// linker script (a debugger or loader may not have), then continues in C.
__attribute__((naked, noreturn)) void Reset_Handler(void) {
  __asm volatile(
      "ldr r0, =__StackTop\n"
      "msr msp, r0\n"
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
      "ldr r0, =__StackLimit\n"
      "msr msplim, r0\n"
#endif
      "b edgemnist_reset_c\n");
}

__attribute__((noreturn, used)) void edgemnist_reset_c(void) {
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
  // CPACR: full access to CP10/CP11 (FPU, and MVE/Helium on the M55), before any float code.
  volatile uint32_t* const cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= (0xFu << 20);
  __asm volatile("dsb\n isb" ::: "memory");
#endif
  // SHCSR: report MemManage, BusFault, UsageFault (and SecureFault on Armv8-M) by name instead
  // of escalating them to HardFault (e.g. a stack overflow past MSPLIM is a UsageFault).
  // Armv6-M (Cortex-M0) has no configurable faults: everything is a HardFault there.
#if !defined(__ARM_ARCH_6M__)
  volatile uint32_t* const shcsr = (volatile uint32_t*)0xE000ED24u;
#if defined(__ARM_ARCH_8M_MAIN__) || defined(__ARM_ARCH_8_1M_MAIN__)
  *shcsr |= (1u << 16) | (1u << 17) | (1u << 18) | (1u << 19);
#else
  *shcsr |= (1u << 16) | (1u << 17) | (1u << 18);
#endif
  __asm volatile("dsb\n isb" ::: "memory");
#endif
  // .data: flash -> RAM. Plain word loops (volatile so GCC does not turn them into
  // memcpy/memset calls before the C library may be used).
  const volatile uint32_t* src = &__data_load_start;
  for (volatile uint32_t* dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
  for (volatile uint32_t* dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;

  const int n_pre = (int)(__preinit_array_end - __preinit_array_start);
  for (int i = 0; i < n_pre; ++i) __preinit_array_start[i]();
  const int n_init = (int)(__init_array_end - __init_array_start);
  for (int i = 0; i < n_init; ++i) __init_array_start[i]();

  const int rc = main();
  edgemnist_exit(rc);
}
