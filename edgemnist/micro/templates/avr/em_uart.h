/* USART0 by polling, for edgemnist's ATmega328P firmware: 8 data bits, no parity, 1 stop bit.
 * No interrupt and no buffer: the firmware has nothing else to do while a byte goes out, and the
 * RAM a buffer would take belongs to the model. The double-speed mode (U2X0) is on because its
 * divider comes closer to the standard baud rates at 16 MHz (the Arduino core does the same). */
#ifndef EM_UART_H
#define EM_UART_H

#include <avr/io.h>
#include <avr/pgmspace.h>
#include <stdint.h>

#ifndef EM_BAUD
#define EM_BAUD 115200UL
#endif
#define EM_UBRR ((F_CPU + 4UL * EM_BAUD) / (8UL * EM_BAUD) - 1) /* rounded to the nearest divider */

static inline void em_uart_init(void)
{
    UCSR0A = _BV(U2X0); /* before the divider: a simulator computes the baud rate when UBRR0L is written */
    UBRR0H = (uint8_t)(EM_UBRR >> 8);
    UBRR0L = (uint8_t)(EM_UBRR & 0xFF);
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
    UCSR0B = _BV(TXEN0) | _BV(RXEN0);
}

static inline void em_putc(char c)
{
    loop_until_bit_is_set(UCSR0A, UDRE0);
    UDR0 = (uint8_t)c;
}

static inline uint8_t em_getc(void)
{
    loop_until_bit_is_set(UCSR0A, RXC0);
    return UDR0;
}

/* A string kept in flash (PSTR), so that no text is copied into RAM at start-up. */
static inline void em_puts_P(const char *s)
{
    char c;
    while ((c = (char)pgm_read_byte(s++)) != 0) em_putc(c);
}

/* Decimal, without printf: the smallest code that prints a number. */
static inline void em_putu(uint32_t v)
{
    char digits[10];
    uint8_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) em_putc(digits[--n]);
}


#endif /* EM_UART_H */
