// The data transforms on the GPU: one gather kernel builds a normalized float batch straight
// from the uint8 dataset held in device memory, applying per image the same host-drawn
// AugParams as the CPU path (core/augment.c): flip -> RandomResizedCrop (bilinear, rounded to
// uint8 as PIL does) -> rotate (nearest, fill 0) -> pixel permutation -> normalize.
// One thread per output value: it walks the chain backwards (permutation, rotation, crop,
// flip) to the source pixels it needs. Double precision for the resampling coordinates, so
// the rounding to uint8 matches the CPU bit for bit.
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "core/augment.h"
#include "core/cifar.h"

namespace gpu {

// The normalization constants, passed by value from core/cifar.c's cifar_mean / cifar_std.
struct Norm { float scale[3], shift[3]; };   // out = v * scale[c] - shift[c]

// Pixel (y, x) of channel c after flip + crop/resize, as uint8 (before rotation/permutation).
__device__ int cropped_pixel(const uint8_t *img, const AugParams &p, int c, int y, int x)
{
    const int H = 32, W = 32;
    const uint8_t *plane = img + c * H * W;
#define SRC(yy, xx) plane[(yy) * W + (p.flip ? W - 1 - (xx) : (xx))]
    if (!p.h) return SRC(y, x);
    double fy = (y + 0.5) * ((double)p.h / H) - 0.5, fx = (x + 0.5) * ((double)p.w / W) - 0.5;
    fy = fy < 0 ? 0 : fy > p.h - 1 ? p.h - 1 : fy;
    fx = fx < 0 ? 0 : fx > p.w - 1 ? p.w - 1 : fx;
    int y0 = (int)fy, x0 = (int)fx, y1 = y0 + 1 < p.h ? y0 + 1 : y0, x1 = x0 + 1 < p.w ? x0 + 1 : x0;
    double wy = fy - y0, wx = fx - x0;   // multiples of 1/64: the sums below are exact, FMA or not
    double v = (1 - wy) * ((1 - wx) * SRC(p.top + y0, p.left + x0) + wx * SRC(p.top + y0, p.left + x1)) +
               wy * ((1 - wx) * SRC(p.top + y1, p.left + x0) + wx * SRC(p.top + y1, p.left + x1));
#undef SRC
    long r = (long)floor(v + 0.5);   // round half away from zero (v >= 0), as lround on the CPU
    return r < 0 ? 0 : r > 255 ? 255 : (int)r;
}

// step != NULL: batch *step of a device-resident epoch plan (idx and params advanced by
// *step * n), and labels_out[i] = labels[idx[i]] (the training graph's batch build)
__global__ void augment_kernel(float *out, const uint8_t *images, const int32_t *idx,
                               const AugParams *params, int n, double cs, double sn, int rotate,
                               const int32_t *perm, Norm norm, const int32_t *step,
                               const uint8_t *labels, int32_t *labels_out)
{
    const int H = 32, W = 32, HW = H * W;
    long total = (long)n * 3 * HW;
    if (step) {
        long base = (long)*step * n;
        idx += base;
        params += base;
        for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
            labels_out[i] = labels[idx[i]];
    }
    for (long e = blockIdx.x * (long)blockDim.x + threadIdx.x; e < total; e += (long)gridDim.x * blockDim.x) {
        int k = (int)(e % HW), c = (int)(e / HW % 3);
        long i = e / (3L * HW);
        if (perm) k = perm[k];                        // dst[c,k] = src[c,perm[k]]
        int y = k / W, x = k % W, v;
        const uint8_t *img = images + (long)idx[i] * 3 * HW;
        if (rotate) {                                 // inverse map, as core/augment.c rotate_u8
            // xi = cs xo - sn yo + W/2 - 1/2 (yi likewise), each operation rounded as the CPU
            // rounds it: nvcc would contract a product and a sum into one FMA, and at 45 degrees
            // (cs and sn one ulp apart) some xi are within an ulp of a .5 tie, so the nearest
            // pixel would differ from the CPU's (seen on an H200). xo, yo are exact.
            double xo = x + 0.5 - W / 2.0, yo = y + 0.5 - H / 2.0;
            double xi = __dadd_rn(__dadd_rn(__dadd_rn(__dmul_rn(cs, xo), -__dmul_rn(sn, yo)), W / 2.0), -0.5);
            double yi = __dadd_rn(__dadd_rn(__dadd_rn(__dmul_rn(sn, xo), __dmul_rn(cs, yo)), H / 2.0), -0.5);
            long ix = (long)rint(xi), iy = (long)rint(yi);
            v = ix >= 0 && ix < W && iy >= 0 && iy < H ? cropped_pixel(img, params[i], c, (int)iy, (int)ix) : 0;
        } else {
            v = cropped_pixel(img, params[i], c, y, x);
        }
        out[e] = v * norm.scale[c] - norm.shift[c];
    }
}

namespace {
void launch_augment(float *out, const uint8_t *images, const int32_t *idx, const AugParams *params, int n,
                    double rotate_deg, const int32_t *perm, const int32_t *step, const uint8_t *labels,
                    int32_t *labels_out)
{
    double a = fmod(rotate_deg, 360.0);
    if (a < 0) a += 360;
    double cs = a == 90 || a == 270 ? 0 : a == 180 ? -1 : a == 0 ? 1 : cos(a * M_PI / 180);
    double sn = a == 0 || a == 180 ? 0 : a == 90 ? 1 : a == 270 ? -1 : sin(a * M_PI / 180);
    Norm norm;   // the same float expressions as normalize_u8 on the CPU
    for (int c = 0; c < 3; c++) {
        norm.scale[c] = 1.0f / (255.0f * cifar_std[c]);
        norm.shift[c] = cifar_mean[c] / cifar_std[c];
    }
    LAUNCH(augment_kernel, grid_for((size_t)n * 3 * 1024, 256), 256, 0, gpu::stream())(out, images, idx, params, n,
        cs, sn, rotate_deg != 0 ? 1 : 0, perm, norm, step, labels, labels_out);
    CUDA_CHECK_LAUNCH();
}
}  // namespace

void augment_batch(float *out, const uint8_t *images, const int32_t *idx, const AugParams *params,
                   int n, double rotate_deg, const int32_t *perm)
{
    launch_augment(out, images, idx, params, n, rotate_deg, perm, nullptr, nullptr, nullptr);
}

void augment_plan(float *out, int32_t *labels_out, const uint8_t *images, const uint8_t *labels,
                  const int32_t *order, const AugParams *params, const int32_t *step, int n, const int32_t *perm)
{
    launch_augment(out, images, order, params, n, 0, perm, step, labels, labels_out);
}
}  // namespace gpu

extern "C" void gpu_augment_batch(float *out, const uint8_t *images, const int32_t *idx,
                                  const AugParams *params, int n, double rotate_deg, const int32_t *perm)
{
    gpu::augment_batch(out, images, idx, params, n, rotate_deg, perm);
}
