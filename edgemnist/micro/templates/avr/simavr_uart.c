/* edgemnist's simavr runner: runs an AVR ELF cycle-accurately with libsimavr, copies every byte the
 * firmware sends on USART0 to stdout, and feeds the bytes of an input file to USART0's receiver.
 *
 * Usage: simavr_uart [-s FREE_RAM] MCU HZ MAX_CYCLES ELF [INPUT_FILE|- [MARKER]]
 *
 * With -s (a data address, such as the linker's _end: the first byte above .data and .bss) the free
 * RAM from there to the top is painted before the firmware starts, and at the end the stack's
 * high-water mark is printed on stderr ("stack_high_water N": the bytes from the deepest one written
 * to the top of RAM). The firmware needs no code of its own for it; C start-up code does not write
 * above .bss, and a firmware that allocates no heap writes there only through its stack.
 *
 * Exit status: 0 the firmware stopped (it slept with interrupts off) or printed MARKER once all the
 * input had been offered (so a prompt printed before the input does not count); 124 it ran
 * past MAX_CYCLES; 3 it crashed; 2 the MCU, the ELF or the input file could not be loaded. The last
 * lines on stderr are "cycles N" (simulated cycles since reset) and, with -s, "stack_high_water N".
 *
 * libsimavr prints its own messages on stdout: they are moved to stderr, so stdout carries the
 * firmware's bytes only. The UART's "print lines on the console" and "sleep while polling" modes are
 * turned off: the first would print every line twice, the second slows down a polling firmware.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_io.h>
#include <simavr/avr_uart.h>

DEFINE_FIFO(uint16_t, uart_fifo);

/* Bytes for the receiver are offered this often (cycles): more often than a byte arrives at the
 * fastest baud rate an AVR at 16 MHz runs, so the line is never idle while input is left. */
#define FEED_PERIOD 256
#define PAINT 0xC5

static FILE *uart_out;
static const char *marker;
static size_t marker_len;
static char tail[256];
static size_t tail_len;
static int marker_seen;

static unsigned char *input;
static size_t input_len, input_pos;
static avr_uart_t *uart;
static avr_irq_t *uart_in;

static void on_uart_byte(struct avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    fputc((int)(value & 0xFF), uart_out);
    if (!marker_len || marker_seen || input_pos < input_len) return; /* only after all input was offered */
    if (tail_len == sizeof tail) {
        memmove(tail, tail + 1, sizeof tail - 1);
        --tail_len;
    }
    tail[tail_len++] = (char)value;
    if (tail_len >= marker_len && memcmp(tail + tail_len - marker_len, marker, marker_len) == 0) marker_seen = 1;
}

/* Offers input while the UART's receive FIFO has room and its receiver is on (bytes sent to a
 * receiver that is off are lost, as on the chip); simavr delivers them one per byte time. */
static avr_cycle_count_t feed(struct avr_t *avr, avr_cycle_count_t when, void *param)
{
    (void)param;
    if (avr_regbit_get(avr, uart->rxen)) {
        while (input_pos < input_len && !uart_fifo_isfull(&uart->input)) avr_raise_irq(uart_in, input[input_pos++]);
    }
    return input_pos < input_len ? when + FEED_PERIOD : 0;
}

static void paint(avr_t *avr, unsigned long from)
{
    unsigned long a;
    for (a = from; a <= avr->ramend; ++a) avr->data[a] = PAINT;
}

static unsigned long stack_high_water(avr_t *avr, unsigned long from)
{
    unsigned long a = from;
    while (a <= avr->ramend && avr->data[a] == PAINT) ++a;
    return avr->ramend + 1 - a;
}

static avr_uart_t *find_uart(avr_t *avr)
{
    avr_io_t *io;
    for (io = avr->io_port; io; io = io->next)
        if (strcmp(io->kind, "uart") == 0 && ((avr_uart_t *)io)->name == '0') return (avr_uart_t *)io;
    return NULL;
}

static int read_input(const char *path)
{
    FILE *fh = fopen(path, "rb");
    long size;
    if (!fh) return -1;
    if (fseek(fh, 0, SEEK_END) || (size = ftell(fh)) < 0 || fseek(fh, 0, SEEK_SET)) {
        fclose(fh);
        return -1;
    }
    input = malloc((size_t)size + 1);
    input_len = input ? fread(input, 1, (size_t)size, fh) : 0;
    fclose(fh);
    return input && input_len == (size_t)size ? 0 : -1;
}

int main(int argc, char **argv)
{
    elf_firmware_t firmware;
    avr_t *avr;
    unsigned long long max_cycles;
    uint32_t flags = 0;
    unsigned long free_ram = 0;
    int state, status;

    if (argc > 2 && strcmp(argv[1], "-s") == 0) {
        free_ram = strtoul(argv[2], NULL, 0) & 0xFFFF; /* avr-gcc's data addresses carry 0x800000 */
        argv += 2;
        argc -= 2;
    }
    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: simavr_uart [-s FREE_RAM] MCU HZ MAX_CYCLES ELF [INPUT_FILE|- [MARKER]]\n");
        return 2;
    }
    uart_out = fdopen(dup(1), "wb");
    dup2(2, 1); /* libsimavr's own messages go to stderr */
    max_cycles = strtoull(argv[3], NULL, 10);
    if (argc > 5 && strcmp(argv[5], "-") != 0 && read_input(argv[5]) != 0) {
        fprintf(stderr, "%s: cannot read the input file\n", argv[5]);
        return 2;
    }
    if (argc > 6) {
        marker = argv[6];
        marker_len = strlen(marker) < sizeof tail ? strlen(marker) : sizeof tail;
    }
    memset(&firmware, 0, sizeof firmware);
    if (elf_read_firmware(argv[4], &firmware) != 0) {
        fprintf(stderr, "%s: not an AVR ELF simavr can load\n", argv[4]);
        return 2;
    }
    avr = avr_make_mcu_by_name(argv[1]);
    if (!avr) {
        fprintf(stderr, "%s: an MCU simavr does not know\n", argv[1]);
        return 2;
    }
    avr_init(avr);
    firmware.frequency = (uint32_t)strtoul(argv[2], NULL, 10);
    avr_load_firmware(avr, &firmware);
    avr->frequency = firmware.frequency;
    if (free_ram) paint(avr, free_ram);
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), on_uart_byte, NULL);
    uart = find_uart(avr);
    uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    if (input_len) {
        if (!uart || !uart_in) {
            fprintf(stderr, "%s: no USART0 to feed\n", argv[1]);
            return 2;
        }
        avr_cycle_timer_register(avr, FEED_PERIOD, feed, NULL);
    }
    for (;;) {
        state = avr_run(avr);
        if (state == cpu_Done || marker_seen) {
            status = 0;
            break;
        }
        if (state == cpu_Crashed) {
            status = 3;
            break;
        }
        if (avr->cycle > max_cycles) {
            status = 124;
            break;
        }
    }
    fflush(uart_out);
    fprintf(stderr, "\ncycles %llu\n", (unsigned long long)avr->cycle);
    if (free_ram) fprintf(stderr, "stack_high_water %lu\n", stack_high_water(avr, free_ram));
    avr_terminate(avr);
    return status;
}
