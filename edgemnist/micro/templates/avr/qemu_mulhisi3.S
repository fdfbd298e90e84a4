/* __mulhisi3 for the self-check that runs under QEMU: R25:R22 = R19:R18 * R27:R26, signed 16 x 16 ->
 * 32 bits, the register convention and arithmetic of libgcc's own (gcc calls it for an int8 x int8
 * product added to an int32; the generated kernels multiply in their own assembly instead, but other
 * code linked into a firmware may still call it).
 *
 * Why: QEMU's AVR translator (7.2) loops forever on a skip instruction (SBRS, SBRC, CPSE, ...) whose
 * skipped instruction is a RET, and libgcc's __mulhisi3 ends in SBRS + RET. This one skips an RJMP
 * instead, which QEMU translates correctly. The chip and simavr run libgcc's: only the ELF built for
 * QEMU links this file (edgemnist.micro.avr). */
    .text
    .global __mulhisi3
    .type __mulhisi3, @function
__mulhisi3:
    call __umulhisi3       /* the unsigned product (libgcc's; -mrelax shortens the call) */
    sbrs r19, 7            /* R19:R18 negative: subtract R27:R26 from the high word */
    rjmp 1f
    sub r24, r26
    sbc r25, r27
1:  sbrs r27, 7            /* R27:R26 negative: subtract R19:R18 from the high word */
    rjmp 2f
    sub r24, r18
    sbc r25, r19
2:  ret
    .size __mulhisi3, . - __mulhisi3
