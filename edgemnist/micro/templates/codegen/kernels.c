/* edgemnist codegen kernels: int8 TFLite ops in plain C99, bit-exact with LiteRT's builtin kernels.
 *
 * Each block between "@kernel NAME" and "@end" is copied into a generated model only when one of
 * its layers uses it. The arithmetic is TFLite's own: accumulate in int32, add the bias, scale by
 * MultiplyByQuantizedMultiplier (double rounding), add the output zero point, clamp to the fused
 * activation's range. Weights, biases and multipliers are read through EM_R8/EM_R32 so that on AVR
 * they stay in flash (PROGMEM); everywhere else those are plain loads.
 *
 * Every bias here is "folded": bias - input_zero_point * sum(weights), computed by the generator,
 * so the inner loop multiplies raw int8 values. A tap that falls in the padding then reads the
 * input zero point (what TFLite's im2col fills padding with), which contributes exactly what the
 * folding subtracted. Accumulators are exact integer sums, so the kernels may add the products in
 * any order: the padding's taps are added as in_zp times the sum of their weights.
 *
 * A per-tensor multiplier and shift is stored once and read with a stride (mstep) of 0; per-channel
 * ones with a stride of 1.
 */

/* @kernel requant */
/* Two roundings, because LiteRT has two. Ops it runs as a matrix product through ruy (CONV_2D,
 * FULLY_CONNECTED) scale as ruy's x86 kernels do: a doubling high multiply that adds 2^30 and shifts
 * (ties up), then a right shift that also rounds ties up; its int8 DEPTHWISE_CONV_2D kernel rounds
 * the same way (a depthwise layer without activation tells: the host tests have one). MEAN uses
 * TFLite's MultiplyByQuantizedMultiplier: SaturatingRoundingDoublingHighMul, then
 * RoundingDivideByPOT (ties away from zero). They differ by one on rare negative values: the host
 * tests compare every score.
 *
 * The doubling high multiply is the same in both: SaturatingRoundingDoublingHighMul adds 2^30 to a
 * product v >= 0 and 1 - 2^30 to a negative one, then divides by 2^31 truncating toward zero, which
 * for v < 0 is floor((v + 1 - 2^30 + 2^31 - 1) / 2^31) = floor((v + 2^30) / 2^31), ruy's. Only the
 * saturation of INT32_MIN * INT32_MIN (TFLite: INT32_MAX; ruy's truncation: INT32_MIN) and the
 * final shift differ. A rounding right shift by k >= 1 is s = x >> (k - 1), then
 * (s >> 1) + (s & 1): the last bit shifted out decides, and nothing can overflow. */

/* (a * m + 2^30) >> 31, truncated to 32 bits. */
#if defined(__AVR__)
/* On AVR in assembly: avr-gcc multiplies 64-bit values with generic libgcc routines and shifts them
 * bit by bit. Here the unsigned product of the 32-bit patterns, column by column with the 8x8
 * multiply (mul), less m * 2^32 if a < 0 and a * 2^32 if m < 0; its lowest byte cannot carry and is
 * never formed. Called with avr-gcc's convention: a in r25-r22, m in r21-r18, the result in r25-r22;
 * the product's bytes 1..7 in r16, r27:r26, r31:r30, r15:r14, with r17 as a zero (r14-r17 saved). */
int32_t em_mulhi_avr(int32_t a, int32_t m) __asm__(EM_SYM("em_mulhi"));
#define EM_COL(lo, hi, carries) "add " lo ", r0\n\tadc " hi ", r1\n\t" carries
__asm__(
    ".pushsection .text." EM_SYM("em_mulhi") ",\"ax\",@progbits\n"
    ".global " EM_SYM("em_mulhi") "\n"
    ".type " EM_SYM("em_mulhi") ", @function\n"
    EM_SYM("em_mulhi") ":\n\t"
    "push r14\n\tpush r15\n\tpush r16\n\tpush r17\n\t"
    "clr r17\n\t"
    "mul r22, r18\n\tmov r16, r1\n\t"  /* a0 b0: byte 1 */
    "mul r23, r19\n\tmovw r26, r0\n\t" /* a1 b1: bytes 2, 3 */
    "mul r24, r20\n\tmovw r30, r0\n\t" /* a2 b2: bytes 4, 5 */
    "mul r25, r21\n\tmovw r14, r0\n\t" /* a3 b3: bytes 6, 7 */
    "mul r22, r19\n\t" EM_COL("r16", "r26", "adc r27, r17\n\tadc r30, r17\n\tadc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t")
    "mul r23, r18\n\t" EM_COL("r16", "r26", "adc r27, r17\n\tadc r30, r17\n\tadc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t")
    "mul r22, r20\n\t" EM_COL("r26", "r27", "adc r30, r17\n\tadc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t")
    "mul r24, r18\n\t" EM_COL("r26", "r27", "adc r30, r17\n\tadc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t")
    "mul r22, r21\n\t" EM_COL("r27", "r30", "adc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t")
    "mul r25, r18\n\t" EM_COL("r27", "r30", "adc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t")
    "mul r23, r20\n\t" EM_COL("r27", "r30", "adc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t")
    "mul r24, r19\n\t" EM_COL("r27", "r30", "adc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t")
    "mul r23, r21\n\t" EM_COL("r30", "r31", "adc r14, r17\n\tadc r15, r17\n\t")
    "mul r25, r19\n\t" EM_COL("r30", "r31", "adc r14, r17\n\tadc r15, r17\n\t")
    "mul r24, r21\n\t" EM_COL("r31", "r14", "adc r15, r17\n\t")
    "mul r25, r20\n\t" EM_COL("r31", "r14", "adc r15, r17\n\t")
    "sbrs r25, 7\n\t"                  /* a < 0: the high half less m */
    "rjmp 1f\n\t"
    "sub r30, r18\n\tsbc r31, r19\n\tsbc r14, r20\n\tsbc r15, r21\n"
    "1:\tsbrs r21, 7\n\t"              /* m < 0: the high half less a */
    "rjmp 2f\n\t"
    "sub r30, r22\n\tsbc r31, r23\n\tsbc r14, r24\n\tsbc r15, r25\n"
    "2:\tldi r17, 0x40\n\t"            /* + 2^30 */
    "add r27, r17\n\t"
    "clr r17\n\t"                      /* (leaves the carry) */
    "adc r30, r17\n\tadc r31, r17\n\tadc r14, r17\n\tadc r15, r17\n\t"
    "lsl r27\n\t"                      /* bits 31..62 */
    "rol r30\n\trol r31\n\trol r14\n\trol r15\n\t"
    "movw r22, r30\n\t"
    "movw r24, r14\n\t"
    "clr r1\n\t"
    "pop r17\n\tpop r16\n\tpop r15\n\tpop r14\n\t"
    "ret\n"
    ".size " EM_SYM("em_mulhi") ", . - " EM_SYM("em_mulhi") "\n"
    ".popsection");
#undef EM_COL
#define em_mulhi em_mulhi_avr
#else
static int32_t em_mulhi(int32_t a, int32_t m)
{
    return (int32_t)(uint32_t)(((int64_t)a * m + ((int64_t)1 << 30)) >> 31);
}
#endif

/* x * m * 2^shift, rounded: away = 0 as ruy (CONV_2D, FULLY_CONNECTED, DEPTHWISE_CONV_2D), 1 as
 * MultiplyByQuantizedMultiplier (MEAN). */
static EM_NOINLINE int32_t em_requant(int32_t x, int32_t m, int8_t shift, uint8_t away)
{
    int32_t q;
    uint32_t u;
    if (shift > 0) x = (int32_t)((uint32_t)x << shift);
    q = away && x == INT32_MIN && m == INT32_MIN ? INT32_MAX : em_mulhi(x, m);
    if (shift >= 0) return q;
    if (away && q < 0) { /* ties away from zero: the magnitude rounds ties up (|INT32_MIN| fits) */
        u = (0u - (uint32_t)q) >> (-shift - 1);
        u = (u >> 1) + (u & 1);
        return -(int32_t)u;
    }
    q >>= -shift - 1;
    return (q >> 1) + (q & 1);
}

static int8_t em_clamp(int32_t v, int32_t lo, int32_t hi)
{
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)v;
}
/* @end */

/* @kernel dot */
/* acc + the products of int8 weights (flash) and int8 inputs (RAM) in `rows` runs of n: after each
 * run the weights skip wskip further and the inputs xskip (which may be negative: with n = 1 and
 * xskip = -1 every weight meets the same input). rows and n may be 0. */
#if defined(__AVR__)
/* In assembly: avr-gcc compiles the C loop to a libgcc 16x16->32 multiply per product and a flash
 * pointer computed anew for every load. Here each product is a post-incrementing flash load
 * (lpm Z+), the 8x8 signed multiply (muls) and the 16-bit product sign-extended into the sum, two
 * products for each count of the loop (an odd run starts with one). A routine of its own, called with avr-gcc's convention (arguments from r25 down: acc r22-r25, w
 * r21:r20, x r19:r18, rows r17:r16, n r15:r14, wskip r13:r12, xskip r11:r10; the sum returned in
 * r22-r25): the compiler sees an ordinary call, so it keeps nothing in the registers the routine
 * uses, and the routine saves the one call-saved pair it changes (r17:r16) and clears r1. Its
 * symbol is global (link-time optimization may put the caller in another object) and carries the
 * model's name (EM_SYM: two models can share a firmware). */
int32_t em_dot_avr(int32_t acc, const int8_t *w, const int8_t *x, uint16_t rows, uint16_t n, int16_t wskip,
                   int16_t xskip) __asm__(EM_SYM("em_dot"));
/* acc (r25:r22) += the next weight (Z+) times the next input (X+) */
#define EM_MAC "lpm r18, Z+\n\tld r19, X+\n\tmuls r18, r19\n\t" /* r1:r0 = w * x */ \
    "mov r18, r1\n\tlsl r18\n\tsbc r18, r18\n\t" /* 0xFF if the product is negative, else 0 */ \
    "add r22, r0\n\tadc r23, r1\n\tadc r24, r18\n\tadc r25, r18"
__asm__(
    ".pushsection .text." EM_SYM("em_dot") ",\"ax\",@progbits\n"
    ".global " EM_SYM("em_dot") "\n"
    ".type " EM_SYM("em_dot") ", @function\n"
    EM_SYM("em_dot") ":\n\t"
    "push r16\n\t"
    "push r17\n\t"
    "movw r30, r20\n\t"   /* Z: weights */
    "movw r26, r18\n\t"   /* X: inputs */
    "rjmp 4f\n"
    "3:\tmovw r20, r14\n\t"  /* r21:r20 counts a run's pairs of products */
    "lsr r21\n\t"
    "ror r20\n\t"
    "brcs 5f\n\t"           /* n odd: one product, then the pairs */
    "rjmp 2f\n"
    "1:\t" EM_MAC "\n"
    "5:\t" EM_MAC "\n"
    "2:\tsubi r20, 1\n\t"
    "sbci r21, 0\n\t"
    "brcc 1b\n\t"
    "add r30, r12\n\t"
    "adc r31, r13\n\t"
    "add r26, r10\n\t"
    "adc r27, r11\n"
    "4:\tsubi r16, 1\n\t"
    "sbci r17, 0\n\t"
    "brcc 3b\n\t"
    "clr r1\n\t"          /* muls wrote it; avr-gcc keeps it 0 */
    "pop r17\n\t"
    "pop r16\n\t"
    "ret\n"
    ".size " EM_SYM("em_dot") ", . - " EM_SYM("em_dot") "\n"
    ".popsection");
#undef EM_MAC
#define em_dot em_dot_avr
#else
static int32_t em_dot(int32_t acc, const int8_t *w, const int8_t *x, uint16_t rows, uint16_t n, int16_t wskip,
                      int16_t xskip)
{
    uint16_t k;
    while (rows--) {
        for (k = 0; k < n; ++k) acc += (int32_t)EM_R8(w + k) * x[k];
        if (rows) {
            w += (int)n + wskip;
            x += (int)n + xskip;
        }
    }
    return acc;
}
#endif
/* @end */

/* @kernel conv */
/* CONV_2D (filter OHWI) and DEPTHWISE_CONV_2D (filter 1HWO: output channel o reads input channel
 * o / depth_multiplier), with an optional fused max-pool: output pixel (py, px) of the pool takes
 * the largest accumulator over its window of convolution outputs, then requantizes once.
 * Requantizing and clamping are monotonic, so this equals pooling the requantized outputs. Without
 * a pool the pool window is 1x1.
 *
 * Order: output pixels in raster order; in each, the pool window's convolution positions one after
 * another, every output channel's accumulator for each (the largest so far kept in best, int32 per
 * channel, when there are several); the pixel's outputs are written after its last position (the
 * memory plan's in-place overlaps assume no earlier write). The bounds of a position's window are
 * found once for all channels. A depthwise layer with one output channel per input channel takes
 * all channels' taps at once where the generator gave it room for their accumulators (acc). */

/* geo as the kernel reads it (the generator's order), then what follows from it. A tap is n weights
 * and n inputs side by side (CONV_2D: one pixel's ic channels; depthwise: one channel); the next
 * tap's weights start wtap further on, its inputs xtap; the next row's wrow and xrow. A tap's weights
 * one after another: wnext apart (0: contiguous, CONV_2D; depthwise: wtap - 1). run: a row's taps
 * are one run of weights and of inputs (CONV_2D without dilation across the width). A window whose
 * first tap is at row 0..ymax and column 0..xmax of the input lies wholly inside it.
 * The window being computed: rows ky0..ky1-1 and columns kx0..kx1-1 of it lie inside the input,
 * the rectangle's first weight is woff after the channel's first; inside: all of the window. */
struct em_conv_geo {
    int16_t ih, iw, ic, oc, kh, kw, sh, sw, dh, dw, ph, pw, coh, cow, poh, pow_, pkh, pkw, psh, psw, pph, ppw;
    int16_t depthwise, mstep;
    int16_t n, wtap, xtap, wrow, xrow, wnext, run, ymax, xmax;
    int16_t ky0, ky1, kx0, kx1, woff, inside;
};

/* acc + `taps` consecutive taps (in the filter's order) from w, each weight times the input zero
 * point *zp: every input read stays on zp. */
static int32_t em_pad(const struct em_conv_geo *g, const int8_t *w, int taps, const int8_t *zp, int32_t acc)
{
    return em_dot(acc, w, zp, (uint16_t)(taps * g->n), 1, g->wnext, -1);
}

/* acc + one output channel's window as g describes it: w at the channel's first weight, x at the
 * rectangle's first input. The rectangle goes through em_dot, all at once where rows are runs,
 * else row by row; every tap outside it reads the input zero point (em_pad). */
static EM_NOINLINE int32_t em_taps(const struct em_conv_geo *g, const int8_t *w, const int8_t *x, int32_t acc,
                                   const int8_t *zp)
{
    const int kh = g->kh, kw = g->kw, ky0 = g->ky0, ky1 = g->ky1, kx0 = g->kx0, kx1 = g->kx1, n = g->n;
    const int len = (kx1 - kx0) * n;
    int ky;
    if (!g->inside) {
        const int8_t *wr = w;
        for (ky = 0; ky < kh; ++ky, wr += g->wrow) { /* a row above or below the input, else its sides */
            const int outside = ky < ky0 || ky >= ky1, left = outside ? kw : kx0, right = outside ? 0 : kw - kx1;
            if (left) acc = em_pad(g, wr, left, zp, acc);
            if (right) acc = em_pad(g, wr + (size_t)kx1 * g->wtap, right, zp, acc);
        }
        if (len == 0) return acc;
    }
    w += g->woff;
    if (g->run) return em_dot(acc, w, x, (uint16_t)(ky1 - ky0), (uint16_t)len, (int16_t)(g->wrow - len), (int16_t)(g->xrow - len));
    for (ky = ky0; ky < ky1; ++ky, w += g->wrow, x += g->xrow)
        acc = em_dot(acc, w, x, (uint16_t)(kx1 - kx0), (uint16_t)n, (int16_t)(g->wtap - n), (int16_t)(g->xtap - n));
    return acc;
}

/* range[0]..range[1]-1: which of k taps, d apart from `start`, lie in 0..size-1. */
static EM_NOINLINE void em_range(int start, int k, int d, int size, int16_t *range)
{
    int k0 = 0;
    for (; k0 < k && start + k0 * d < 0; ++k0) {}
    for (; k > k0 && start + (k - 1) * d >= size; --k) {}
    range[0] = (int16_t)k0;
    range[1] = (int16_t)k;
}

/* Bounds of the window whose first tap is at input row y0, column x0; returns its rectangle's first
 * input (channel 0) in `in`. */
static EM_NOINLINE const int8_t *em_bounds(struct em_conv_geo *g, const int8_t *in, int y0, int x0)
{
    g->inside = y0 >= 0 && y0 <= g->ymax && x0 >= 0 && x0 <= g->xmax;
    g->ky0 = g->kx0 = 0;
    g->ky1 = g->kh;
    g->kx1 = g->kw;
    if (!g->inside) {
        em_range(y0, g->kh, g->dh, g->ih, &g->ky0);
        em_range(x0, g->kw, g->dw, g->iw, &g->kx0);
        if (g->ky0 == g->ky1) g->kx1 = g->kx0; /* nothing inside */
    }
    g->woff = (int16_t)(g->ky0 * g->wrow + g->kx0 * g->wtap);
    if (g->kx0 == g->kx1) return in;
    return in + ((size_t)(y0 + g->ky0 * g->dh) * g->iw + (size_t)(x0 + g->kx0 * g->dw)) * g->ic;
}

/* acc[i] += w[i] * x[i * xstep] for i < n: one tap of n depthwise channels (xstep 1), or of the
 * padding (x at the input zero point, xstep 0). */
#if defined(__AVR__)
/* In assembly, as em_dot: acc r25:r24 (in Y), w r23:r22 (in Z), x r21:r20 (in X), n r19:r18,
 * xstep r17:r16; saves Y. */
void em_dotv_avr(int32_t *acc, const int8_t *w, const int8_t *x, uint16_t n, uint16_t xstep)
    __asm__(EM_SYM("em_dotv"));
__asm__(
    ".pushsection .text." EM_SYM("em_dotv") ",\"ax\",@progbits\n"
    ".global " EM_SYM("em_dotv") "\n"
    ".type " EM_SYM("em_dotv") ", @function\n"
    EM_SYM("em_dotv") ":\n\t"
    "push r28\n\t"
    "push r29\n\t"
    "movw r28, r24\n\t"
    "movw r30, r22\n\t"
    "movw r26, r20\n\t"
    "rjmp 2f\n"
    "1:\tlpm r20, Z+\n\t"
    "ld r21, X\n\t"
    "add r26, r16\n\t"
    "adc r27, r17\n\t"
    "muls r20, r21\n\t"
    "mov r20, r1\n\t"
    "lsl r20\n\t"
    "sbc r20, r20\n\t"
    "ld r22, Y\n\t"
    "ldd r23, Y+1\n\t"
    "ldd r24, Y+2\n\t"
    "ldd r25, Y+3\n\t"
    "add r22, r0\n\t"
    "adc r23, r1\n\t"
    "adc r24, r20\n\t"
    "adc r25, r20\n\t"
    "st Y+, r22\n\t"
    "st Y+, r23\n\t"
    "st Y+, r24\n\t"
    "st Y+, r25\n"
    "2:\tsubi r18, 1\n\t"
    "sbci r19, 0\n\t"
    "brcc 1b\n\t"
    "clr r1\n\t"
    "pop r29\n\t"
    "pop r28\n\t"
    "ret\n"
    ".size " EM_SYM("em_dotv") ", . - " EM_SYM("em_dotv") "\n"
    ".popsection");
#define em_dotv em_dotv_avr
#else
static void em_dotv(int32_t *acc, const int8_t *w, const int8_t *x, uint16_t n, uint16_t xstep)
{
    for (; n; --n, x += xstep) *acc++ += (int32_t)EM_R8(w++) * *x;
}
#endif

/* Depthwise with one output channel per input channel: all channels' accumulators (acc) for the
 * window whose first tap is at input row y0, column x0, tap by tap (a tap's weights for every
 * channel lie side by side, as do a pixel's inputs); a tap in the padding reads the input zero
 * point for every channel. */
static EM_NOINLINE void em_vector(const struct em_conv_geo *g, const int8_t *w, const int8_t *in, int y0, int x0,
                                  const int32_t *bias, int32_t *acc, const int8_t *zp)
{
    const int oc = g->oc;
    int ky, kx, iy, ix;
    for (kx = 0; kx < oc; ++kx) acc[kx] = EM_R32(bias + kx);
    for (ky = 0, iy = y0; ky < g->kh; ++ky, iy += g->dh) {
        for (kx = 0, ix = x0; kx < g->kw; ++kx, ix += g->dw, w += oc) {
            if (iy < 0 || iy >= g->ih || ix < 0 || ix >= g->iw)
                em_dotv(acc, w, zp, (uint16_t)oc, 0);
            else
                em_dotv(acc, w, in + ((size_t)iy * g->iw + (size_t)ix) * oc, (uint16_t)oc, 1);
        }
    }
}

/* The geometry of the layer em_conv is computing (static: a stack frame that holds it is too large
 * for the AVR's short displacement loads). */
static struct em_conv_geo em_geo;

static void em_conv(const int8_t *in, int8_t *out, const int8_t *w, const int32_t *bias,
                    const int32_t *mult, const int8_t *shift, const int16_t *geo, int8_t in_zp,
                    int8_t out_zp, int8_t act_min, int8_t act_max, int32_t *best, int32_t *acc)
{
    /* geo: ih iw ic oc kh kw sh sw dh dw ph pw coh cow poh pow pkh pkw psh psw pph ppw depthwise mstep */
    struct em_conv_geo *g = &em_geo;
    int py, px, wy, wx, positions, o, k, per_input;
    int16_t wys[2], wxs[2]; /* the pool window's rows and columns inside the convolution's output */
    size_t wout;
    EM_RCOPY(g, geo, 24 * sizeof(int16_t));
    g->n = g->depthwise ? 1 : g->ic;
    g->wtap = g->depthwise ? g->oc : g->ic;
    g->xtap = (int16_t)(g->dw * g->ic);
    g->wrow = (int16_t)(g->kw * g->wtap);
    g->xrow = (int16_t)(g->dh * g->iw * g->ic);
    g->wnext = (int16_t)(g->n == g->wtap ? 0 : g->wtap - 1);
    g->run = g->n == g->wtap && g->n == g->xtap;
    g->ymax = (int16_t)(g->ih - 1 - (g->kh - 1) * g->dh);
    g->xmax = (int16_t)(g->iw - 1 - (g->kw - 1) * g->dw);
    per_input = g->depthwise ? g->oc / g->ic : 0; /* output channels per input channel */
    if (per_input != 1) acc = 0; /* acc: every channel at once (em_vector), where the generator gave room */
    wout = g->depthwise ? 1 : (size_t)g->kh * g->wrow;
    for (py = 0; py < g->poh; ++py) {
        const int cy = py * g->psh - g->pph; /* the pool window's first convolution row */
        em_range(cy, g->pkh, 1, g->coh, wys);
        for (px = 0; px < g->pow_; ++px) {
            const int cx = px * g->psw - g->ppw;
            em_range(cx, g->pkw, 1, g->cow, wxs);
            positions = (wys[1] - wys[0]) * (wxs[1] - wxs[0]); /* at least one: a pool's padding is less than its window */
            for (wy = wys[0]; wy < wys[1]; ++wy) {
                for (wx = wxs[0]; wx < wxs[1]; ++wx) {
                    const int y0 = (cy + wy) * g->sh - g->ph, x0 = (cx + wx) * g->sw - g->pw;
                    const int8_t *xr = in;
                    const int8_t *wo = w;
                    const int32_t *mp = mult;
                    const int8_t *sp = shift;
                    --positions;
                    if (acc)
                        em_vector(g, w, in, y0, x0, bias, acc, &in_zp);
                    else
                        xr = em_bounds(g, in, y0, x0);
                    for (o = 0, k = 0; o < g->oc; ++o) {
                        int32_t v = EM_R32(bias + o);
                        if (acc)
                            v = acc[o];
                        else if (g->inside && g->run)
                            v = em_dot(v, wo, xr, (uint16_t)g->kh, (uint16_t)g->wrow, 0, (int16_t)(g->xrow - g->wrow));
                        else
                            v = em_taps(g, wo, xr, v, &in_zp);
                        if (wy > wys[0] || wx > wxs[0]) { /* not the first position: the largest so far */
                            if (best[o] > v) v = best[o];
                        }
                        if (positions) {
                            best[o] = v;
                        } else {
                            v = em_requant(v, EM_R32(mp), (int8_t)EM_R8(sp), 0);
                            *out++ = em_clamp(v + out_zp, act_min, act_max);
                        }
                        wo += wout;
                        mp += g->mstep;
                        sp += g->mstep;
                        if (++k == per_input) {
                            k = 0;
                            ++xr;
                        }
                    }
                }
            }
        }
    }
}
/* @end */

/* @kernel pool */
/* MAX_POOL_2D and AVERAGE_POOL_2D (int8, same quantization in and out): only the window's taps
 * inside the input count; the average rounds half away from zero, as TFLite's. */
static void em_pool(const int8_t *in, int8_t *out, const int16_t *geo, int average, int8_t act_min,
                    int8_t act_max)
{
    /* geo: ih iw c oh ow kh kw sh sw ph pw */
    const int ih = EM_R16(geo + 0), iw = EM_R16(geo + 1), ch = EM_R16(geo + 2), oh = EM_R16(geo + 3), ow = EM_R16(geo + 4), kh = EM_R16(geo + 5);
    const int kw = EM_R16(geo + 6), sh = EM_R16(geo + 7), sw = EM_R16(geo + 8), ph = EM_R16(geo + 9), pw = EM_R16(geo + 10);
    int oy, ox, c, ky, kx;
    for (oy = 0; oy < oh; ++oy) {
        for (ox = 0; ox < ow; ++ox) {
            for (c = 0; c < ch; ++c) {
                int32_t acc = average ? 0 : -128;
                int32_t count = 0;
                for (ky = 0; ky < kh; ++ky) {
                    const int iy = oy * sh - ph + ky;
                    if (iy < 0 || iy >= ih) continue;
                    for (kx = 0; kx < kw; ++kx) {
                        const int ix = ox * sw - pw + kx;
                        int32_t v;
                        if (ix < 0 || ix >= iw) continue;
                        v = in[((size_t)iy * iw + ix) * ch + c];
                        if (average) acc += v; else if (v > acc) acc = v;
                        ++count;
                    }
                }
                if (average && count) acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                if (acc < act_min) acc = act_min;
                if (acc > act_max) acc = act_max;
                out[((size_t)oy * ow + ox) * ch + c] = (int8_t)acc;
            }
        }
    }
}
/* @end */

/* @kernel fc */
/* FULLY_CONNECTED (weights [out][in]). */
static void em_fc(const int8_t *in, int8_t *out, const int8_t *w, const int32_t *bias, const int32_t *mult,
                  const int8_t *shift, int mstep, int n, int classes, int8_t out_zp, int8_t act_min, int8_t act_max)
{
    int o;
    for (o = 0; o < classes; ++o, mult += mstep, shift += mstep) {
        const int32_t acc = em_dot(EM_R32(bias + o), w + (size_t)o * n, in, 1, (uint16_t)n, 0, 0);
        out[o] = em_clamp(em_requant(acc, EM_R32(mult), (int8_t)EM_R8(shift), 0) + out_zp, act_min, act_max);
    }
}
/* @end */

/* @kernel pwfc */
/* A 1x1 CONV_2D fused with the FULLY_CONNECTED that reads its flattened output: each pixel's
 * convolution outputs (t, one pixel's channels) go straight into the classifier's accumulators
 * (acc), so the convolution's whole output map never exists. The flattened index of (pixel p,
 * channel c) is p * pc + c, TFLite's NHWC order. */
static void em_pwfc(const int8_t *in, int8_t *out, const int16_t *geo, const int8_t *pw_w,
                    const int32_t *pw_bias, const int32_t *pw_mult, const int8_t *pw_shift, int8_t pw_zp,
                    int8_t pw_min, int8_t pw_max, const int8_t *fc_w, const int32_t *fc_bias,
                    const int32_t *fc_mult, const int8_t *fc_shift, int8_t fc_zp, int8_t fc_min,
                    int8_t fc_max, int8_t *t, int32_t *acc)
{
    /* geo: pixels ic pc classes pw_mstep fc_mstep */
    const int pixels = EM_R16(geo + 0), ic = EM_R16(geo + 1), pc = EM_R16(geo + 2), classes = EM_R16(geo + 3);
    const int pw_mstep = EM_R16(geo + 4), fc_mstep = EM_R16(geo + 5);
    const size_t n = (size_t)pixels * pc;
    int p, c, o;
    for (o = 0; o < classes; ++o) acc[o] = EM_R32(fc_bias + o);
    for (p = 0; p < pixels; ++p) {
        const int8_t *xp = in + (size_t)p * ic;
        const int32_t *mp = pw_mult;
        const int8_t *sp = pw_shift;
        for (c = 0; c < pc; ++c, mp += pw_mstep, sp += pw_mstep) {
            const int32_t a = em_dot(EM_R32(pw_bias + c), pw_w + (size_t)c * ic, xp, 1, (uint16_t)ic, 0, 0);
            t[c] = em_clamp(em_requant(a, EM_R32(mp), (int8_t)EM_R8(sp), 0) + pw_zp, pw_min, pw_max);
        }
        for (o = 0; o < classes; ++o) acc[o] = em_dot(acc[o], fc_w + (size_t)o * n + (size_t)p * pc, t, 1, (uint16_t)pc, 0, 0);
    }
    for (o = 0; o < classes; ++o, fc_mult += fc_mstep, fc_shift += fc_mstep)
        out[o] = em_clamp(em_requant(acc[o], EM_R32(fc_mult), (int8_t)EM_R8(fc_shift), 0) + fc_zp, fc_min, fc_max);
}
/* @end */

/* @kernel mean */
/* MEAN over height and width (int8): TFLite's integer QuantizedMeanOrSum. The sum of the raw values
 * less zero_point * pixels, scaled by the input/output multiplier divided by the pixel count (the
 * generator folds the division into the multiplier, as TFLite's Prepare does). */
static void em_mean(const int8_t *in, int8_t *out, int pixels, int ch, int32_t zp_sum, int32_t m, int8_t shift,
                    int32_t out_zp)
{
    int c, p;
    for (c = 0; c < ch; ++c) {
        int32_t sum = -zp_sum;
        for (p = 0; p < pixels; ++p) sum += in[(size_t)p * ch + c];
        out[c] = em_clamp(em_requant(sum, m, shift, 1) + out_zp, -128, 127);
    }
}
/* @end */

/* @kernel softmax */
/* SOFTMAX int8 -> int8 as LiteRT's optimized kernel computes it: a table of expf(-input_scale * beta
 * * d) for d = 255 - i (made by the generator with the same expf), a float sum, and a rounded
 * float quotient. */
static void em_softmax(const int8_t *in, int8_t *out, int n, const float *table, float out_scale, int32_t out_zp)
{
    int j, max_val = -128;
    float sum = 0.0f, inv;
    for (j = 0; j < n; ++j) if (in[j] > max_val) max_val = in[j];
    for (j = 0; j < n; ++j) sum += EM_RF(table + 255 - max_val + in[j]);
    inv = 1.0f / (sum * out_scale);
    for (j = 0; j < n; ++j) {
        const float prob = EM_RF(table + 255 - max_val + in[j]) * inv;
        int32_t q = (int32_t)roundf(prob) + out_zp;
        if (q > 127) q = 127;
        if (q < -128) q = -128;
        out[j] = (int8_t)q;
    }
}
/* @end */

/* @kernel transpose */
/* TRANSPOSE of a 4-D int8 tensor: out[i0][i1][i2][i3] = in at the permuted index (strides given
 * by the generator, in elements of the input). */
static void em_transpose(const int8_t *in, int8_t *out, const int16_t *geo)
{
    /* geo: out dims d0..d3, input strides for each output axis s0..s3 */
    const int n0 = EM_R16(geo + 0), n1 = EM_R16(geo + 1), n2 = EM_R16(geo + 2), n3 = EM_R16(geo + 3);
    const size_t s0 = (size_t)EM_R16(geo + 4), s1 = (size_t)EM_R16(geo + 5);
    const size_t s2 = (size_t)EM_R16(geo + 6), s3 = (size_t)EM_R16(geo + 7);
    int a, b, c, d;
    size_t k = 0;
    for (a = 0; a < n0; ++a)
        for (b = 0; b < n1; ++b)
            for (c = 0; c < n2; ++c)
                for (d = 0; d < n3; ++d)
                    out[k++] = in[a * s0 + b * s1 + c * s2 + d * s3];
}
/* @end */
