// Bare-metal Cortex-M platform layer for edgemnist firmware (see platform.h).
#include "platform.h"

#include <stddef.h>
#include <stdint.h>

// System Control Space registers (identical on Armv7-M and Armv8-M Mainline).
#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t*)0xE000ED04u)
#define SCB_SHPR3 (*(volatile uint32_t*)0xE000ED20u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)  // 1 = processor clock
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SYST_RELOAD 0xFFFFFFu

// Semihosting operations.
#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define SYS_EXIT_EXTENDED 0x20
#define ADP_Stopped_ApplicationExit 0x20026

static volatile uint32_t g_systick_wraps;
static uint32_t g_cal_num = 1;
static uint32_t g_cal_den = 1;
static uint32_t g_meas_num = 0;
static uint32_t g_meas_den = 0;

void SysTick_Handler(void) { g_systick_wraps = g_systick_wraps + 1; }

static inline uint32_t Semihost(uint32_t op, const void* arg) {
  register uint32_t r0 __asm("r0") = op;
  register const void* r1 __asm("r1") = arg;
  __asm volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void edgemnist_write(const char* s) { Semihost(SYS_WRITE0, s); }

void edgemnist_exit(int code) {
  // Static, not on the stack: this also runs after a stack overflow.
  static uint32_t block[2];
  block[0] = ADP_Stopped_ApplicationExit;
  block[1] = (uint32_t)code;
  Semihost(SYS_EXIT_EXTENDED, block);
  // A host without SYS_EXIT_EXTENDED: plain SYS_EXIT (status 0 only), then stop here.
  Semihost(SYS_EXIT, (const void*)(uintptr_t)ADP_Stopped_ApplicationExit);
  for (;;) __asm volatile("wfi");
}

uint64_t edgemnist_ticks(void) {
  uint32_t primask;
  __asm volatile("mrs %0, primask\n cpsid i" : "=r"(primask)::"memory");
  uint32_t wraps = g_systick_wraps;
  uint32_t current = SYST_CVR;
  if (SCB_ICSR & SCB_ICSR_PENDSTSET) {
    // Wrapped, but the interrupt has not counted it yet: read again after the wrap.
    current = SYST_CVR;
    wraps += 1;
  }
  __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
  return ((uint64_t)wraps << 24) + (SYST_RELOAD - current);
}

// Exactly 2 * n instructions (subs + bne per iteration).
__attribute__((noinline)) static void SpinInstructions(uint32_t n) {
  // Unified syntax: Armv6-M (Cortex-M0) assembles `subs` only in it.
  __asm volatile(
      ".syntax unified\n"
      "1:\n"
      "  subs %0, %0, #1\n"
      "  bne 1b\n"
      : "+r"(n)
      :
      : "cc");
}

static uint32_t Gcd(uint32_t a, uint32_t b) {
  while (b != 0) {
    const uint32_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

#define EDGEMNIST_CAL_ITERATIONS 500000u

void edgemnist_platform_init(void) {
  SCB_SHPR3 = (SCB_SHPR3 & 0x00FFFFFFu);  // SysTick: highest configurable priority
  SYST_CSR = 0;
  SYST_RVR = SYST_RELOAD;
  SYST_CVR = 0;
  g_systick_wraps = 0;
  SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
  // The counter reads 0 until its first reload from RVR (QEMU: until the first tick);
  // counting starts there.
  for (uint32_t i = 0; i < 1000000u && SYST_CVR == 0; ++i) {
  }
  g_systick_wraps = 0;
  __asm volatile("cpsie i" ::: "memory");

  // Two loops, N and 2N iterations: their difference is exactly 2N instructions, which
  // cancels the fixed cost of the calls and timer reads.
  const uint64_t t0 = edgemnist_ticks();
  SpinInstructions(EDGEMNIST_CAL_ITERATIONS);
  const uint64_t t1 = edgemnist_ticks();
  SpinInstructions(2 * EDGEMNIST_CAL_ITERATIONS);
  const uint64_t t2 = edgemnist_ticks();
  const int64_t diff = (int64_t)(t2 - t1) - (int64_t)(t1 - t0);
  const uint32_t instr = 2 * EDGEMNIST_CAL_ITERATIONS;
  const uint32_t ticks = diff > 0 ? (uint32_t)diff : 1;
  g_meas_num = instr;
  g_meas_den = ticks;
  // Each timer reading is quantized to one tick, so `ticks` is off by up to 2. Clocks are
  // simple ratios of the instruction rate (QEMU -icount shift=0: 1 instruction per ns, mps2
  // 25 MHz -> 40/1, mps3-an547 32 MHz -> 125/4): take the fraction with the smallest
  // denominator <= 64 that the measurement allows, else the measurement itself.
  uint32_t num = instr;
  uint32_t den = ticks;
  for (uint32_t d = 1; d <= 64; ++d) {
    const uint64_t scaled = (uint64_t)instr * d;
    const uint64_t n = (scaled + ticks / 2) / ticks;
    if (n == 0) continue;
    const uint64_t err = scaled > n * ticks ? scaled - n * ticks : n * ticks - scaled;
    if (err <= 2 * n) {
      num = (uint32_t)n;
      den = d;
      break;
    }
  }
  const uint32_t g = Gcd(num, den);
  g_cal_num = num / g;
  g_cal_den = den / g;
}

void edgemnist_calibration_measured(uint32_t* instructions, uint32_t* ticks) {
  *instructions = g_meas_num;
  *ticks = g_meas_den;
}

void edgemnist_calibration(uint32_t* num, uint32_t* den) {
  *num = g_cal_num;
  *den = g_cal_den;
}

uint64_t edgemnist_instructions(uint64_t ticks) {
  // Rounded to nearest; ticks * num stays far below 2^64 for any realistic run.
  return (ticks * g_cal_num + g_cal_den / 2) / g_cal_den;
}

void edgemnist_write_u64(uint64_t value) {
  char buf[21];
  size_t i = sizeof(buf) - 1;
  buf[i] = '\0';
  do {
    buf[--i] = (char)('0' + (unsigned)(value % 10u));
    value /= 10u;
  } while (value != 0);
  edgemnist_write(&buf[i]);
}

// ---- Minimal newlib-nano system interface (no files, no heap unless __HEAP_SIZE > 0). ----
// TFLM's debug_log.cc formats with vsnprintf, which links newlib's malloc for growable
// string buffers (never used for a fixed buffer); _sbrk hands out the linker's .heap region.
extern char __HeapBase;
extern char __HeapLimit;
void* _sbrk(ptrdiff_t increment) {
  static char* brk = &__HeapBase;
  if (increment < 0 || (size_t)(&__HeapLimit - brk) < (size_t)increment) return (void*)-1;
  char* const old = brk;
  brk += increment;
  return old;
}

__attribute__((noreturn)) void abort(void) {
  edgemnist_write("EDGEMNIST FAULT abort\n");
  edgemnist_exit(3);
}

// assert() in TFLM sources: report instead of newlib's fiprintf(stderr) (which would link
// the whole FILE machinery).
__attribute__((noreturn)) void __assert_func(const char* file, int line, const char* func, const char* expr) {
  (void)func;
  edgemnist_write("EDGEMNIST FAULT assert ");
  edgemnist_write(expr != NULL ? expr : "?");
  edgemnist_write(" at ");
  edgemnist_write(file != NULL ? file : "?");
  edgemnist_write(":");
  edgemnist_write_u64(line >= 0 ? (uint64_t)line : 0u);
  edgemnist_write("\n");
  edgemnist_exit(3);
}

// newlib's reentrant stdio wrappers are referenced by printf code paths that only ever write
// to strings here (vsnprintf); no files exist.
int _write(int fd, const void* buf, size_t n) { (void)fd; (void)buf; (void)n; return -1; }
int _read(int fd, void* buf, size_t n) { (void)fd; (void)buf; (void)n; return -1; }
int _close(int fd) { (void)fd; return -1; }
int _lseek(int fd, int offset, int whence) { (void)fd; (void)offset; (void)whence; return -1; }
int _isatty(int fd) { (void)fd; return 0; }
struct stat;
int _fstat(int fd, struct stat* st) { (void)fd; (void)st; return -1; }
