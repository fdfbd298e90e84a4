/* edgemnist's self-check firmware for an ATmega328P (bare avr-libc): runs the generated model on real
 * MNIST test digits kept in flash and compares every score with the host's (LiteRT's builtin kernels).
 *
 * For each digit: unpack it into EM_NAME_input() (the RAM input buffer inside the model's arena, as if
 * a sensor or the serial port had filled it), time EM_NAME_invoke with Timer1, compare the scores,
 * print one line. Then one result line (PASS only if every score of every digit is the host's), one
 * end line, and sleep with interrupts off (simavr stops there; QEMU is stopped by whoever reads the
 * end line). Lines:
 *   EDGEMNIST AVR digit=I label=L predicted=P cycles=N match=1|0
 *   EDGEMNIST AVR result digits=K matches=M cycles_per_inference=N stack_high_water=B PASS|FAIL
 *   EDGEMNIST AVR end
 *
 * Built with -DEM_NAME=<name> -DEM_HEADER="<name>.h" -DEM_INPUT_BYTES=.. -DEM_CLASSES=.. and the
 * generated test_digits.h (EM_DIGITS, EM_BACKGROUND, em_rle, em_rle_start, em_labels, em_golden).
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include <avr/sleep.h>
#include <stdint.h>

#include EM_HEADER
#include "em_uart.h"
#include "test_digits.h"

#define EM_CAT2(a, b) a##b
#define EM_CAT(a, b) EM_CAT2(a, b)
#define EM_FN(suffix) EM_CAT(EM_NAME, suffix)

/* ----- stack high-water mark: paint the free RAM at start-up, count what was never written ----- */

#define EM_PAINT 0xC5
extern uint8_t _end;    /* the linker's end of .data, .bss and .noinit: the first free byte */
extern uint8_t __stack; /* the top of RAM, where the stack starts */

/* Runs from .init3: after the stack pointer is set, before .data and .bss are filled and before main.
 * A naked function in an init section falls through to the next one; its loop keeps to registers. */
void em_paint(void) __attribute__((naked, used, section(".init3")));
void em_paint(void)
{
    uint8_t *p = &_end;
    while (p <= &__stack) *p++ = EM_PAINT;
}

static uint16_t em_stack_high_water(void)
{
    const uint8_t *p = &_end;
    while (p <= &__stack && *p == EM_PAINT) ++p;
    return (uint16_t)(&__stack - p + 1);
}

/* ----- cycles: Timer1 at the CPU clock (prescaler 1) and an overflow count ----- */

static volatile uint16_t em_overflows;

ISR(TIMER1_OVF_vect)
{
    ++em_overflows;
}

static void em_timer_start(void)
{
    TCCR1A = 0;
    TCCR1B = 0;
    TCNT1 = 0;
    em_overflows = 0;
    TIFR1 = _BV(TOV1);
    TIMSK1 = _BV(TOIE1);
    sei();
    TCCR1B = _BV(CS10);
}

/* Reads the count while the timer runs (the usual way: a stopped Timer1 reads 0 on some simulators),
 * with interrupts off; an overflow not yet serviced shows in TOV1 and counts when the low half has
 * already wrapped. */
static uint32_t em_timer_stop(void)
{
    uint16_t low, high;
    cli();
    low = TCNT1;
    high = em_overflows;
    if ((TIFR1 & _BV(TOV1)) && low < 0x8000) ++high;
    TCCR1B = 0;
    TIMSK1 = 0;
    TIFR1 = _BV(TOV1);
    return ((uint32_t)high << 16) | low;
}

/* ----- the test digits: run-length coded in flash ----- */

/* Records of (background run, literal count, literals): most of an MNIST digit is background, so
 * the digits take a fraction of their 784 bytes of flash, which the model's weights mostly fill. */
static void em_unpack(uint8_t digit, int8_t *dst)
{
    const uint8_t *p = em_rle + pgm_read_word(em_rle_start + digit);
    uint16_t i = 0;
    while (i < EM_INPUT_BYTES) {
        uint8_t run = pgm_read_byte(p++);
        uint8_t literals = pgm_read_byte(p++);
        while (run--) dst[i++] = EM_BACKGROUND;
        while (literals--) dst[i++] = (int8_t)pgm_read_byte(p++);
    }
}

static void em_field(const char *name, uint32_t value)
{
    em_putc(' ');
    em_puts_P(name);
    em_putc('=');
    em_putu(value);
}

int main(void)
{
    int8_t scores[EM_CLASSES];
    uint8_t d, c, best, same, matches = 0;
    uint32_t cycles, total = 0;

    em_uart_init();
    for (d = 0; d < EM_DIGITS; ++d) {
        em_unpack(d, EM_FN(_input)());
        em_timer_start();
        EM_FN(_invoke)(scores);
        cycles = em_timer_stop();
        total += cycles;
        best = 0;
        same = 1;
        for (c = 0; c < EM_CLASSES; ++c) {
            if (scores[c] > scores[best]) best = c;
            if (scores[c] != (int8_t)pgm_read_byte(&em_golden[d][c])) same = 0;
        }
        matches += same;
        em_puts_P(PSTR("EDGEMNIST AVR"));
        em_field(PSTR("digit"), d);
        em_field(PSTR("label"), pgm_read_byte(em_labels + d));
        em_field(PSTR("predicted"), best);
        em_field(PSTR("cycles"), cycles);
        em_field(PSTR("match"), same);
        em_putc('\n');
    }
    em_puts_P(PSTR("EDGEMNIST AVR result"));
    em_field(PSTR("digits"), EM_DIGITS);
    em_field(PSTR("matches"), matches);
    em_field(PSTR("cycles_per_inference"), total / EM_DIGITS);
    em_field(PSTR("stack_high_water"), em_stack_high_water());
    em_puts_P(matches == EM_DIGITS ? PSTR(" PASS\n") : PSTR(" FAIL\n"));
    em_puts_P(PSTR("EDGEMNIST AVR end\n"));
    loop_until_bit_is_set(UCSR0A, UDRE0);
    cli();
    sleep_enable();
    for (;;) sleep_cpu();
}
