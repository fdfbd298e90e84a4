/* @EXAMPLE@: classify a handwritten digit sent over the serial port, on an Arduino Uno.
 *
 * Send 784 bytes at 115200 baud: the 28x28 image row by row, one byte per pixel (0-255, a white
 * digit on black, as MNIST). Each byte goes straight into the model's input buffer (inside its
 * arena: no second copy of the image in RAM), quantized by a table made from the model's input
 * scale and zero point. After the last byte the sketch runs the model and prints
 *   digit D score S
 * with S the winning class's int8 score (-128..127; higher is more certain).
 *
 * Written by edgemnist.micro.avr (write_arduino_library).
 */
#include <@NAME@.h>
#include <@NAME@_pixels.h>

void setup()
{
    Serial.begin(115200);
    Serial.println(F("@EXAMPLE@: send 784 pixel bytes (28x28, row by row, 0-255)"));
}

void loop()
{
    int8_t *input = @NAME@_input();
    int8_t scores[@UPPER@_CLASSES];
    uint8_t best = 0;

    for (uint16_t i = 0; i < @UPPER@_INPUT_BYTES; ++i) {
        while (Serial.available() == 0) {
        }
        input[i] = @NAME@_quantize_pixel((uint8_t)Serial.read());
    }
    @NAME@_invoke(scores);
    for (uint8_t c = 1; c < @UPPER@_CLASSES; ++c)
        if (scores[c] > scores[best]) best = c;
    Serial.print(F("digit "));
    Serial.print(best);
    Serial.print(F(" score "));
    Serial.println(scores[best]);
}
