// CUDA on the CPU, for testing gpu/ without a GPU (C++17, g++).
//
// Every CUDA thread is a user-level fiber (on x86-64 switched by saving and restoring its
// callee-saved registers, no system call; under ASan or elsewhere, ucontext). The blocks of a launch run one after
// another on the calling OS thread; inside a block the scheduler runs one fiber at a time
// until it reaches __syncthreads() (or a warp-level barrier) or returns, and releases a
// barrier once every live thread of the block (or warp) has arrived. A barrier reached from
// two different source lines in one phase is reported as divergent.
// emu_set_shuffle(seed) makes the scheduler pick the next fiber at random (seeded): code
// between two barriers then runs in a different thread order, so a missing __syncthreads()
// shows up as a wrong result; the blocks of a launch then also run in a random order, so a
// kernel that depends on which block finishes last (a ticket counter) is tested both ways.
//   __shared__           static storage (blocks are sequential, so it is per block)
//   DYN_SHARED(T, name)  the launch's dynamic shared memory, filled with NaN bytes per block
//   cudaMalloc           host memory filled with NaN bytes (unwritten outputs show up)
//   warp shuffles        each lane writes a slot, warp barrier, reads its source lane, barrier
//   atomics              plain read-modify-write (fibers never run concurrently);
//                        __threadfence is empty (a block's writes are all done before the next runs)
// emu_set_trace reports every launch (bench/gpu_plan) and can skip running it.
// What this cannot catch: true data races between blocks, missing atomics, stream ordering,
// register/occupancy limits, timing. bench/gpu_check.sh runs the real thing.
#ifndef CONVNET_CUDA_EMU_H
#define CONVNET_CUDA_EMU_H

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__
#define __align__(n) __attribute__((aligned(n)))

struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

typedef int cudaError_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2,
       cudaErrorInvalidConfiguration = 9, cudaErrorInvalidDevice = 101, cudaErrorStreamCaptureUnsupported = 900,
       cudaErrorStreamCaptureUnjoined = 904, cudaErrorStreamCaptureIsolation = 905,
       cudaErrorStreamCaptureImplicit = 906,
       cudaErrorCapturedEvent = 907 };
enum { cudaEventDefault = 0, cudaEventDisableTiming = 2 };
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal, cudaStreamCaptureModeThreadLocal,
                             cudaStreamCaptureModeRelaxed };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                      cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
typedef struct emu_graph *cudaGraph_t;
typedef struct emu_graph_exec *cudaGraphExec_t;

namespace emu {
extern uint3 *cur_tid;
extern uint3 block_idx;
extern dim3 block_dim, grid_dim;
void launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);
// A launch on `stream`: run now, or recorded into the graph being captured on that stream
// (launching on another stream during a capture is an error, as on a GPU).
void launch_on(cudaStream_t stream, const char *name, dim3 grid, dim3 block, size_t smem,
               std::function<void()> body);
// Host work in stream order (what a library such as NCCL enqueues on a stream; see
// tests/emu/nccl/): run now, or recorded as a node of the graph being captured on `stream`.
// Returns cudaSuccess, or the capture's error for a stream outside the capture.
int host_work_on(cudaStream_t stream, std::function<void()> work);
void syncthreads(const char *file, int line);
void syncwarp();
void *dyn_shared();
uint64_t *warp_slots();   // one slot per thread of the block
// A warp-wide exchange of up to XCHG_FLOATS floats per lane (gpu/mma.cuh's emulated mma):
// every lane of the warp stores n floats, warp barrier, and gets the warp's 32 x XCHG_FLOATS
// block (lane l's floats at l * XCHG_FLOATS); warp_exchange_end() is the barrier after the reads.
// As mma.sync's .aligned demands, all 32 lanes must take part: a lane that has returned (or a
// block whose last warp is short) stops the program with a message.
constexpr int XCHG_FLOATS = 64;
const float *warp_exchange(const float *mine, int n);
void warp_exchange_end();
unsigned lane_id();

template <class K> struct Launcher {
    K k;
    const char *name;
    dim3 g, b;
    size_t s;
    cudaStream_t st;
    // arguments by value: a captured launch runs later, when the graph is launched
    template <class... A> void operator()(A... a) const { K kk = k; launch_on(st, name, g, b, s, [=] { kk(a...); }); }
};
template <class K> Launcher<K> make_launcher(K k, const char *name, dim3 g, dim3 b, size_t s, cudaStream_t st)
{
    return Launcher<K>{k, name, g, b, s, st};
}

template <class T> T shfl(T v, int src_lane_of_mine)
{
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t *slots = warp_slots();
    unsigned me = cur_tid->x + block_dim.x * (cur_tid->y + block_dim.y * cur_tid->z);
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    slots[me] = bits;
    syncwarp();
    unsigned base = me - lane_id();
    T out;
    memcpy(&out, &slots[base + (unsigned)src_lane_of_mine], sizeof(T));
    syncwarp();
    return out;
}
}  // namespace emu

extern "C" void emu_set_shuffle(unsigned long long seed);   // 0: deterministic FIFO order
// a graph launch runs its nodes in a random order that keeps their dependencies (0: capture order)
extern "C" void emu_set_graph_shuffle(unsigned long long seed);
extern "C" unsigned long long emu_fibers_run(void);          // statistics for tests
// bench/gpu_plan: every launch is reported to fn (kernel name as written at the launch,
// grid, block, dynamic shared bytes), a captured one when it is captured (not again when its
// graph runs); execute = 0 skips running the blocks (shapes only).
// fn = NULL switches tracing off.
typedef void (*emu_trace_fn)(void *arg, const char *kernel, unsigned gx, unsigned gy, unsigned gz,
                             unsigned bx, unsigned by, unsigned bz, size_t smem);
extern "C" void emu_set_trace(emu_trace_fn fn, void *arg, int execute);
// Calls after which the host waits for the device (blocking cudaMemcpy, cudaMemset and the
// *Synchronize calls), counted since the start.
extern "C" unsigned long long emu_host_syncs(void);
// graph launches since the start, the nodes of the last graph instantiated, and its depth:
// the most nodes on one chain of dependencies (what launch gaps add up along, when branches
// run side by side)
extern "C" unsigned long long emu_graph_launches(void);
extern "C" unsigned long long emu_last_graph_nodes(void);
extern "C" unsigned long long emu_last_graph_depth(void);

#define threadIdx (*emu::cur_tid)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define warpSize 32
#define __syncthreads() emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) emu::syncwarp()
#define LAUNCH(k, g, b, s, st) emu::make_launcher(k, #k, dim3(g), dim3(b), (size_t)(s), (st))
#define DYN_SHARED(type, name) type *name = (type *)emu::dyn_shared()

// Lane arithmetic follows the PTX rules for width-segmented shuffles.
template <class T> T __shfl_sync(unsigned, T v, int src, int width = 32)
{
    int lane = (int)emu::lane_id(), seg = lane - lane % width;
    return emu::shfl(v, seg + ((src % width) + width) % width);
}
template <class T> T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32)
{
    int lane = (int)emu::lane_id(), l = lane % width;
    return emu::shfl(v, l + (int)d < width ? lane + (int)d : lane);
}
template <class T> T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32)
{
    int lane = (int)emu::lane_id(), l = lane % width;
    return emu::shfl(v, l - (int)d >= 0 ? lane - (int)d : lane);
}
template <class T> T __shfl_xor_sync(unsigned, T v, int m, int width = 32)
{
    int lane = (int)emu::lane_id(), seg = lane - lane % width, l = lane % width;
    int src = l ^ m;
    return emu::shfl(v, src < width ? seg + src : lane);
}

static inline float atomicAdd(float *p, float v) { float o = *p; *p = o + v; return o; }
static inline int atomicAdd(int *p, int v) { int o = *p; *p = o + v; return o; }
static inline int atomicMax(int *p, int v) { int o = *p; if (v > o) *p = v; return o; }
static inline unsigned atomicAdd(unsigned *p, unsigned v) { unsigned o = *p; *p = o + v; return o; }
// blocks run one after another, so every write is seen by the blocks after it
static inline void __threadfence() {}
#define __expf(x) expf(x)   // macros: glibc already declares functions of these names
#define __logf(x) logf(x)
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
// Rounded arithmetic that nvcc never contracts into an FMA. The emulator is built twice: in ISO
// mode g++ contracts nothing, and with -ffp-contract=fast -mfma (make's emu-fma build) it fuses
// a product and a sum wherever it can, as nvcc does; there each of these results passes
// through an empty asm that needs it in a register, rounded, so no fusion crosses it.
// __fmaf_rn is one fused multiply-add.
#if defined(__x86_64__) || defined(__i386__)
#define EMU_ROUNDED(r) __asm__("" : "+x"(r))
#else
#define EMU_ROUNDED(r) __asm__("" : "+w"(r))
#endif
static inline float __fmul_rn(float a, float b) { float r = a * b; EMU_ROUNDED(r); return r; }
static inline float __fadd_rn(float a, float b) { float r = a + b; EMU_ROUNDED(r); return r; }
static inline float __fsub_rn(float a, float b) { float r = a - b; EMU_ROUNDED(r); return r; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dmul_rn(double a, double b) { double r = a * b; EMU_ROUNDED(r); return r; }
static inline double __dadd_rn(double a, double b) { double r = a + b; EMU_ROUNDED(r); return r; }
static inline float __fdividef(float a, float b) { return a / b; }
template <class T> static inline T __ldg(const T *p) { return *p; }
template <class T> static inline T __ldcg(const T *p) { return *p; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }

// ---- runtime API ----
cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
// streams, stream capture and graphs: a capture records the launches and async copies/sets of
// the origin stream and of the streams forked from it by events as graph nodes with their
// dependencies (nothing runs); a graph launch runs them in a dependency order (cuda_emu.cc)
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaMallocHost(void **p, size_t bytes);   // pinned host memory
cudaError_t cudaFreeHost(void *p);
template <class K> cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int) { return cudaSuccess; }

#endif
