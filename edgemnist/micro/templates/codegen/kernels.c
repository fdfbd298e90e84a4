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
 * folding subtracted.
 */

/* @kernel requant */
/* Two roundings, because LiteRT has two. Ops it runs as a matrix product through ruy (CONV_2D,
 * FULLY_CONNECTED) scale as ruy's x86 kernels do: a doubling high multiply that adds 2^30 and shifts
 * (ties up), then a right shift that also rounds ties up. Its own kernels (DEPTHWISE_CONV_2D, MEAN)
 * use TFLite's MultiplyByQuantizedMultiplier: SaturatingRoundingDoublingHighMul (ties away from
 * zero, the division by 2^31 truncating toward zero), then RoundingDivideByPOT (ties away from
 * zero). They differ by one on rare negative values: the host tests compare every score. */
static int32_t em_requant_ruy(int32_t x, int32_t m, int8_t shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int64_t a = (int32_t)((uint32_t)x << left);
    const int64_t hi = (a * m + ((int64_t)1 << 30)) >> 31;
    if (right == 0) return (int32_t)hi;
    return (int32_t)((hi + ((int64_t)1 << (right - 1))) >> right);
}

static int32_t em_requant_double(int32_t x, int32_t m, int8_t shift)
{
    int32_t a, hi, mask, rem, thr;
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    a = (int32_t)((uint32_t)x << left);
    if (a == INT32_MIN && m == INT32_MIN) {
        hi = INT32_MAX;
    } else {
        int64_t v = (int64_t)a * (int64_t)m;
        int64_t q;
        v += v >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
        q = v >> 31;
        if (v < 0 && (v & (int64_t)0x7FFFFFFF)) q += 1;
        hi = (int32_t)q;
    }
    if (right == 0) return hi;
    mask = (int32_t)(((int64_t)1 << right) - 1);
    rem = hi & mask;
    thr = (mask >> 1) + (hi < 0 ? 1 : 0);
    return (hi >> right) + (rem > thr ? 1 : 0);
}

static int8_t em_clamp(int32_t v, int32_t lo, int32_t hi)
{
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int8_t)v;
}
/* @end */

/* @kernel conv */
/* CONV_2D (filter OHWI) with an optional fused max-pool: output pixel (py, px) of the pool takes the
 * largest accumulator over its window of convolution outputs, then requantizes once. Requantizing
 * and clamping are monotonic, so this equals pooling the requantized outputs. Without a pool the
 * pool window is 1x1. Processing order: output pixels in raster order, channels innermost (the
 * memory plan's in-place overlaps assume it). */
static void em_conv(const int8_t *in, int8_t *out, const int8_t *w, const int32_t *bias,
                    const int32_t *mult, const int8_t *shift, const int16_t *geo, int8_t in_zp,
                    int8_t out_zp, int8_t act_min, int8_t act_max)
{
    /* geo: ih iw ic oc kh kw sh sw dh dw ph pw coh cow poh pow pkh pkw psh psw pph ppw */
    const int ih = EM_R16(geo + 0), iw = EM_R16(geo + 1), ic = EM_R16(geo + 2), oc = EM_R16(geo + 3), kh = EM_R16(geo + 4), kw = EM_R16(geo + 5);
    const int sh = EM_R16(geo + 6), sw = EM_R16(geo + 7), dh = EM_R16(geo + 8), dw = EM_R16(geo + 9), ph = EM_R16(geo + 10), pw = EM_R16(geo + 11);
    const int coh = EM_R16(geo + 12), cow = EM_R16(geo + 13), poh = EM_R16(geo + 14), pow_ = EM_R16(geo + 15), pkh = EM_R16(geo + 16);
    const int pkw = EM_R16(geo + 17), psh = EM_R16(geo + 18), psw = EM_R16(geo + 19), pph = EM_R16(geo + 20), ppw = EM_R16(geo + 21);
    const size_t taps = (size_t)kh * kw * ic;
    int py, px, o, wy, wx, ky, kx, c;
    for (py = 0; py < poh; ++py) {
        for (px = 0; px < pow_; ++px) {
            for (o = 0; o < oc; ++o) {
                const int8_t *wo = w + (size_t)o * taps;
                int32_t best = INT32_MIN;
                for (wy = 0; wy < pkh; ++wy) {
                    const int cy = py * psh - pph + wy;
                    if (cy < 0 || cy >= coh) continue;
                    for (wx = 0; wx < pkw; ++wx) {
                        const int cx = px * psw - ppw + wx;
                        const int8_t *wp = wo;
                        int32_t acc;
                        if (cx < 0 || cx >= cow) continue;
                        acc = EM_R32(bias + o);
                        for (ky = 0; ky < kh; ++ky) {
                            const int iy = cy * sh - ph + ky * dh;
                            for (kx = 0; kx < kw; ++kx, wp += ic) {
                                const int ix = cx * sw - pw + kx * dw;
                                if (iy < 0 || iy >= ih || ix < 0 || ix >= iw) {
                                    for (c = 0; c < ic; ++c) acc += (int16_t)((int8_t)EM_R8(wp + c) * in_zp);
                                } else {
                                    const int8_t *xp = in + ((size_t)iy * iw + ix) * ic;
                                    for (c = 0; c < ic; ++c) acc += (int16_t)((int8_t)EM_R8(wp + c) * xp[c]);
                                }
                            }
                        }
                        if (acc > best) best = acc;
                    }
                }
                out[((size_t)py * pow_ + px) * oc + o] =
                    em_clamp(em_requant_ruy(best, EM_R32(mult + o), (int8_t)EM_R8(shift + o)) + out_zp, act_min, act_max);
            }
        }
    }
}
/* @end */

/* @kernel dwconv */
/* DEPTHWISE_CONV_2D (filter 1HWO, output channel o reads input channel o / depth_multiplier) with an
 * optional fused max-pool, as em_conv. */
static void em_dwconv(const int8_t *in, int8_t *out, const int8_t *w, const int32_t *bias,
                      const int32_t *mult, const int8_t *shift, const int16_t *geo, int8_t in_zp,
                      int8_t out_zp, int8_t act_min, int8_t act_max)
{
    /* geo: ih iw ic oc kh kw sh sw dh dw ph pw coh cow poh pow pkh pkw psh psw pph ppw */
    const int ih = EM_R16(geo + 0), iw = EM_R16(geo + 1), ic = EM_R16(geo + 2), oc = EM_R16(geo + 3), kh = EM_R16(geo + 4), kw = EM_R16(geo + 5);
    const int sh = EM_R16(geo + 6), sw = EM_R16(geo + 7), dh = EM_R16(geo + 8), dw = EM_R16(geo + 9), ph = EM_R16(geo + 10), pw = EM_R16(geo + 11);
    const int coh = EM_R16(geo + 12), cow = EM_R16(geo + 13), poh = EM_R16(geo + 14), pow_ = EM_R16(geo + 15), pkh = EM_R16(geo + 16);
    const int pkw = EM_R16(geo + 17), psh = EM_R16(geo + 18), psw = EM_R16(geo + 19), pph = EM_R16(geo + 20), ppw = EM_R16(geo + 21);
    const int mult_depth = oc / ic;
    int py, px, o, wy, wx, ky, kx;
    for (py = 0; py < poh; ++py) {
        for (px = 0; px < pow_; ++px) {
            for (o = 0; o < oc; ++o) {
                const int c = o / mult_depth;
                int32_t best = INT32_MIN;
                for (wy = 0; wy < pkh; ++wy) {
                    const int cy = py * psh - pph + wy;
                    if (cy < 0 || cy >= coh) continue;
                    for (wx = 0; wx < pkw; ++wx) {
                        const int cx = px * psw - ppw + wx;
                        int32_t acc;
                        if (cx < 0 || cx >= cow) continue;
                        acc = EM_R32(bias + o);
                        for (ky = 0; ky < kh; ++ky) {
                            const int iy = cy * sh - ph + ky * dh;
                            for (kx = 0; kx < kw; ++kx) {
                                const int ix = cx * sw - pw + kx * dw;
                                const int8_t wv = (int8_t)EM_R8(w + ((size_t)ky * kw + kx) * oc + o);
                                const int8_t xv = (iy < 0 || iy >= ih || ix < 0 || ix >= iw)
                                    ? in_zp : in[((size_t)iy * iw + ix) * ic + c];
                                acc += (int16_t)(wv * xv);
                            }
                        }
                        if (acc > best) best = acc;
                    }
                }
                out[((size_t)py * pow_ + px) * oc + o] =
                    em_clamp(em_requant_double(best, EM_R32(mult + o), (int8_t)EM_R8(shift + o)) + out_zp, act_min, act_max);
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
/* FULLY_CONNECTED (weights [out][in]); per-tensor multipliers are repeated per output. */
static void em_fc(const int8_t *in, int8_t *out, const int8_t *w, const int32_t *bias, const int32_t *mult,
                  const int8_t *shift, int n, int classes, int8_t out_zp, int8_t act_min, int8_t act_max)
{
    int o, i;
    for (o = 0; o < classes; ++o) {
        const int8_t *wo = w + (size_t)o * n;
        int32_t acc = EM_R32(bias + o);
        for (i = 0; i < n; ++i) acc += (int16_t)((int8_t)EM_R8(wo + i) * in[i]);
        out[o] = em_clamp(em_requant_ruy(acc, EM_R32(mult + o), (int8_t)EM_R8(shift + o)) + out_zp, act_min, act_max);
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
    /* geo: pixels ic pc classes */
    const int pixels = EM_R16(geo + 0), ic = EM_R16(geo + 1), pc = EM_R16(geo + 2), classes = EM_R16(geo + 3);
    const size_t n = (size_t)pixels * pc;
    int p, c, i, o;
    for (o = 0; o < classes; ++o) acc[o] = EM_R32(fc_bias + o);
    for (p = 0; p < pixels; ++p) {
        const int8_t *xp = in + (size_t)p * ic;
        for (c = 0; c < pc; ++c) {
            const int8_t *wp = pw_w + (size_t)c * ic;
            int32_t a = EM_R32(pw_bias + c);
            for (i = 0; i < ic; ++i) a += (int16_t)((int8_t)EM_R8(wp + i) * xp[i]);
            t[c] = em_clamp(em_requant_ruy(a, EM_R32(pw_mult + c), (int8_t)EM_R8(pw_shift + c)) + pw_zp, pw_min, pw_max);
        }
        for (o = 0; o < classes; ++o) {
            const int8_t *wo = fc_w + (size_t)o * n + (size_t)p * pc;
            int32_t a = 0;
            for (c = 0; c < pc; ++c) a += (int16_t)((int8_t)EM_R8(wo + c) * t[c]);
            acc[o] += a;
        }
    }
    for (o = 0; o < classes; ++o)
        out[o] = em_clamp(em_requant_ruy(acc[o], EM_R32(fc_mult + o), (int8_t)EM_R8(fc_shift + o)) + fc_zp, fc_min, fc_max);
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
        out[c] = em_clamp(em_requant_double(sum, m, shift) + out_zp, -128, 127);
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
