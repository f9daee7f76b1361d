/* Image transforms on uint8 CHW images (as torchvision applies them to PIL images), and
 * the float conversion that ends every pipeline. */
#ifndef CONVNET_AUGMENT_H
#define CONVNET_AUGMENT_H
#include <stdint.h>
#include "core/rng.h"

/* Mirror left-right: dst[c,y,x] = src[c,y,W-1-x]. dst may equal src. */
void hflip_u8(uint8_t *dst, const uint8_t *src, int C, int H, int W);

/* torchvision RandomResizedCrop.get_params: up to 10 tries of area fraction U(scale) and
 * log-uniform aspect ratio; w = round(sqrt(area*ratio)), h = round(sqrt(area/ratio)); accept
 * if it fits and pick the corner uniformly; else a centre crop clamped to the ratio range. */
void random_resized_crop_params(Rng *rng, int H, int W, double scale_lo, double scale_hi,
                                double ratio_lo, double ratio_hi, int *top, int *left,
                                int *h, int *w);
/* Crop [top, top+h) x [left, left+w) and resize to OH x OW, bilinear with half-pixel centres
 * and edge clamping (PIL's BILINEAR when enlarging), rounded to uint8. */
void resized_crop_u8(uint8_t *dst, int OH, int OW, const uint8_t *src, int C, int H, int W,
                     int top, int left, int h, int w);

/* torchvision rotate(img, angle): about the image centre, counter-clockwise for positive
 * angles, nearest neighbour, area outside the source filled with 0. dst != src. */
void rotate_u8(uint8_t *dst, const uint8_t *src, int C, int H, int W, double degrees);

/* Fixed pixel permutation, the same for every channel: dst[c,k] = src[c,perm[k]], k < HW. */
void permute_pixels_u8(uint8_t *dst, const uint8_t *src, const int *perm, int C, int HW);
void permutation_from_seed(int *perm, int n, uint64_t seed);
/* 0, or -1 with one line in err. A file that is not exactly "convnet-permutation <n>" and
 * a permutation of 0..n-1 is refused, and perm is then unchanged. */
int permutation_save(const char *path, const int *perm, int n, char *err, size_t errlen);
int permutation_load(const char *path, int *perm, int n, char *err, size_t errlen);
int permutation_parse(const char *text, size_t len, int *perm, int n, const char *path, char *err, size_t errlen);

/* The random choices for one image, drawn on the host so that the CPU path (augment_apply)
 * and the GPU kernel (gpu/augment.cu) produce the same pixels from the same draws. */
typedef struct AugParams {
    int flip;                   /* mirror left-right first */
    int top, left, h, w;        /* RandomResizedCrop box (h == 0: no crop) */
} AugParams;

void augment_draw(Rng *rng, int flip, int crop, AugParams *p);
/* flip -> crop+resize -> rotate (degrees, 0: none) -> permute (NULL: none) -> normalize:
 * src one uint8 CHW CIFAR image, dst 3x32x32 floats. */
void augment_apply(float *dst, const uint8_t *src, const AugParams *p, double rotate_deg, const int *perm);

/* ToTensor + Normalize: dst = (src/255 - mean[c]) / std[c], n images of C x HW. */
void normalize_u8(float *dst, const uint8_t *src, int n, int C, int HW, const float *mean,
                  const float *std);

#endif
