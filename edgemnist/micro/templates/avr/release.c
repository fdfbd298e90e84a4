/* edgemnist's release firmware for an ATmega328P (bare avr-libc): what a product built on the
 * generated model needs and nothing more, to state the flash and RAM of the model and its runtime.
 *
 * Forever: read EM_INPUT_BYTES quantized int8 bytes from the serial port straight into
 * EM_NAME_input() (the input buffer inside the model's arena), run the model, send back the class
 * with the highest score as one digit character and a newline.
 *
 * Built with -DEM_NAME=<name> -DEM_HEADER="<name>.h" -DEM_INPUT_BYTES=.. -DEM_CLASSES=..
 */
#include <stdint.h>

#include EM_HEADER
#include "em_uart.h"

#define EM_CAT2(a, b) a##b
#define EM_CAT(a, b) EM_CAT2(a, b)
#define EM_FN(suffix) EM_CAT(EM_NAME, suffix)

int main(void)
{
    int8_t scores[EM_CLASSES];
    uint16_t i;
    uint8_t c, best;

    em_uart_init();
    for (;;) {
        int8_t *input = EM_FN(_input)();
        for (i = 0; i < EM_INPUT_BYTES; ++i) input[i] = (int8_t)em_getc();
        EM_FN(_invoke)(scores);
        best = 0;
        for (c = 1; c < EM_CLASSES; ++c)
            if (scores[c] > scores[best]) best = c;
        em_putc((char)('0' + best));
        em_putc('\n');
    }
}
