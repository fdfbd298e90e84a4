// Bare-metal Cortex-M platform layer for edgemnist firmware: semihosting output and exit,
// SysTick-based 64-bit tick counter, and a calibration of instructions per tick.
//
// Instruction counts are exact only under `qemu-system-arm -icount shift=0` (one guest
// instruction = 1 ns of virtual time, so SysTick ticks are proportional to instructions);
// on real silicon the same numbers are cycle-based estimates, not instruction counts.
#ifndef EDGEMNIST_PLATFORM_H_
#define EDGEMNIST_PLATFORM_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Starts SysTick from the processor clock (reload 0xFFFFFF, wraps counted by the SysTick
// interrupt into a 64-bit counter) and calibrates instructions per tick.
void edgemnist_platform_init(void);

// Writes a NUL-terminated string through semihosting (SYS_WRITE0).
void edgemnist_write(const char* s);

// Ends the program through semihosting (SYS_EXIT_EXTENDED): QEMU exits with `code`.
void edgemnist_exit(int code) __attribute__((noreturn));

// SysTick ticks since edgemnist_platform_init(), 64-bit, safe against wraps.
uint64_t edgemnist_ticks(void);

// Converts a tick count to instructions with the calibration of edgemnist_platform_init().
uint64_t edgemnist_instructions(uint64_t ticks);

// The calibration as a reduced fraction: instructions per tick = *num / *den.
void edgemnist_calibration(uint32_t* num, uint32_t* den);

// The raw calibration measurement: `instructions` took `ticks` SysTick ticks.
void edgemnist_calibration_measured(uint32_t* instructions, uint32_t* ticks);

// Writes `value` in decimal (no printf).
void edgemnist_write_u64(uint64_t value);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // EDGEMNIST_PLATFORM_H_
