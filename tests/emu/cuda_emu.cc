// The CUDA-on-CPU emulator: fiber scheduler and runtime API. See cuda_emu.h.
#include "tests/emu/cuda_emu.h"

#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <algorithm>
#include <cstdlib>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

// Switching fibers: swapcontext saves and restores the signal mask with a system call each
// way, which was about a quarter of the GPU tests' time (26 s of system time in 112 s). On
// x86-64 (without ASan, which must see the switches through its fiber hooks around
// swapcontext) a switch is instead the callee-saved registers, MXCSR and the x87 control word
// pushed on the old stack and popped from the new one (System V ABI: everything else is the
// caller's to save).
#if defined(__x86_64__) && !EMU_ASAN
#define EMU_FAST_SWITCH 1
// emu_switch(&save_sp, to_sp): saves this context's stack pointer in *save_sp, resumes to_sp's
asm(".text\n"
    ".p2align 4\n"
    ".type emu_switch, @function\n"
    "emu_switch:\n"
    "    pushq %rbp\n"
    "    pushq %rbx\n"
    "    pushq %r12\n"
    "    pushq %r13\n"
    "    pushq %r14\n"
    "    pushq %r15\n"
    "    subq $8, %rsp\n"
    "    stmxcsr (%rsp)\n"
    "    fnstcw 4(%rsp)\n"
    "    movq %rsp, (%rdi)\n"
    "    movq %rsi, %rsp\n"
    "    ldmxcsr (%rsp)\n"
    "    fldcw 4(%rsp)\n"
    "    addq $8, %rsp\n"
    "    popq %r15\n"
    "    popq %r14\n"
    "    popq %r13\n"
    "    popq %r12\n"
    "    popq %rbx\n"
    "    popq %rbp\n"
    "    ret\n"
    ".size emu_switch, . - emu_switch\n");
extern "C" void emu_switch(void **save_sp, void *to_sp);
#else
#define EMU_FAST_SWITCH 0
#endif

namespace emu {
uint3 *cur_tid;
uint3 block_idx;
dim3 block_dim, grid_dim;

namespace {
enum State { RUN, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };
struct Fiber {
#if EMU_FAST_SWITCH
    void *sp;
#else
    ucontext_t ctx;
#endif
    uint3 tid;
    State state;
    const char *bar_file;
    int bar_line;
    char *stack;
};
constexpr size_t kStack = 64 * 1024, kGuard = 4096;

#if EMU_FAST_SWITCH
void *sched_sp;
#else
ucontext_t sched_ctx;
#endif
std::vector<Fiber> fibers;
std::vector<char *> stack_pool;
std::vector<uint64_t> slots;
std::vector<float> xchg;   // warp_exchange: XCHG_FLOATS per thread of the block
std::vector<unsigned char> dyn_smem;
const std::function<void()> *body;
int cur;
uint64_t shuffle_state;   // 0: FIFO
unsigned long long fibers_run;
cudaError_t last_error = cudaSuccess;
#if EMU_ASAN
const void *sched_stack_bottom;
size_t sched_stack_size;
#endif

uint64_t graph_shuffle_state;   // 0: graph nodes in capture order

uint64_t next_random(uint64_t &state)
{
    uint64_t x = state;   // xorshift64*
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    state = x;
    return x * 0x2545F4914F6CDD1DULL;
}
uint64_t next_random() { return next_random(shuffle_state); }

char *get_stack(size_t i)
{
    while (stack_pool.size() <= i) {
        void *p = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) { fprintf(stderr, "emu: cannot map a fiber stack\n"); abort(); }
        mprotect(p, kGuard, PROT_NONE);   // stack overflow faults instead of corrupting
        stack_pool.push_back((char *)p + kGuard);
    }
#if EMU_ASAN
    __asan_unpoison_memory_region(stack_pool[i], kStack);   // reused: clear old frames' poison
#endif
    return stack_pool[i];
}

void switch_to_scheduler(bool dying)
{
    Fiber &f = fibers[cur];
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(dying ? nullptr : &fake, sched_stack_bottom, sched_stack_size);
    swapcontext(&f.ctx, &sched_ctx);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#elif EMU_FAST_SWITCH
    (void)dying;
    emu_switch(&f.sp, sched_sp);
#else
    (void)dying;
    swapcontext(&f.ctx, &sched_ctx);
#endif
}

void fiber_entry()
{
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &sched_stack_bottom, &sched_stack_size);
#endif
    (*body)();
    fibers[cur].state = DONE;
    switch_to_scheduler(true);
    abort();   // a finished fiber is never resumed
}

#if EMU_FAST_SWITCH
// A new fiber's stack as emu_switch leaves a suspended one: from the top (16-byte aligned),
// a zero return address for fiber_entry's frame, fiber_entry as the address emu_switch's
// ret takes, six zeroed callee-saved registers, and this thread's MXCSR and x87 control word
// (rounding and exception masks as the scheduler has them).
void *fresh_stack(char *stack)
{
    uintptr_t top = ((uintptr_t)stack + kStack) & ~(uintptr_t)15;
    uint64_t *p = (uint64_t *)top;
    *--p = 0;
    *--p = (uint64_t)(uintptr_t)&fiber_entry;
    for (int i = 0; i < 6; i++) *--p = 0;
    uint32_t mxcsr;
    uint16_t fpucw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fpucw));
    --p;
    memcpy(p, &mxcsr, 4);
    memcpy((char *)p + 4, &fpucw, 2);
    return p;
}
#endif

[[noreturn]] void fail(const char *msg)
{
    fprintf(stderr, "emu: %s (block %u,%u,%u)\n", msg, block_idx.x, block_idx.y, block_idx.z);
    abort();
}

void run_block(size_t n)
{
    fibers.resize(n);
    for (size_t i = 0; i < n; i++) {
        Fiber &f = fibers[i];
        f.tid = uint3{(unsigned)(i % block_dim.x), (unsigned)(i / block_dim.x % block_dim.y),
                      (unsigned)(i / (block_dim.x * block_dim.y))};
        f.state = RUN;
        f.stack = get_stack(i);
#if EMU_FAST_SWITCH
        f.sp = fresh_stack(f.stack);
#else
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_entry, 0);
#endif
    }
    // A fiber runs until it waits at a barrier or ends, so each phase (between barrier
    // releases) runs every runnable fiber once: the list is made once a phase, and each pick
    // (the first, or a random one) is taken out of it.
    std::vector<int> runnable;
    runnable.reserve(n);
    for (;;) {
        runnable.clear();
        size_t done = 0, at_block = 0;
        for (size_t i = 0; i < n; i++) {
            if (fibers[i].state == RUN) runnable.push_back((int)i);
            else if (fibers[i].state == DONE) done++;
            else if (fibers[i].state == AT_BLOCK_BARRIER) at_block++;
        }
        if (runnable.empty()) {
            if (done == n) return;
            bool released = false;
            // warp barriers: a warp whose live lanes all wait at the warp barrier continues
            for (size_t w = 0; w * 32 < n; w++) {
                size_t lo = w * 32, hi = lo + 32 < n ? lo + 32 : n, waiting = 0, live = 0;
                for (size_t i = lo; i < hi; i++) {
                    if (fibers[i].state != DONE) live++;
                    if (fibers[i].state == AT_WARP_BARRIER) waiting++;
                }
                if (live && waiting == live) {
                    for (size_t i = lo; i < hi; i++) if (fibers[i].state == AT_WARP_BARRIER) fibers[i].state = RUN;
                    released = true;
                }
            }
            if (released) continue;
            if (at_block + done == n) {
                const Fiber *first = nullptr;
                for (size_t i = 0; i < n; i++) {
                    Fiber &f = fibers[i];
                    if (f.state != AT_BLOCK_BARRIER) continue;
                    if (first && (f.bar_line != first->bar_line || strcmp(f.bar_file, first->bar_file))) {
                        char msg[512];
                        snprintf(msg, sizeof msg, "divergent __syncthreads: %s:%d and %s:%d in one phase",
                                 first->bar_file, first->bar_line, f.bar_file, f.bar_line);
                        fail(msg);
                    }
                    if (!first) first = &f;
                    f.state = RUN;
                }
                continue;
            }
            fail("deadlock: threads wait at __syncthreads while others wait at a warp barrier");
        }
        for (size_t left = runnable.size(), head = 0; left > 0; left--) {
            size_t r = shuffle_state ? head + next_random() % left : head;
            int pick = runnable[r];
            // take it out, keeping the others' order: the first stays at head, a random one is
            // replaced by the ones before it moving up (the order the whole-list rescan gave)
            for (size_t k = r; k > head; k--) runnable[k] = runnable[k - 1];
            head++;
            cur = pick;
            cur_tid = &fibers[pick].tid;
            fibers_run++;
#if EMU_ASAN
            void *fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, fibers[pick].stack, kStack);
            swapcontext(&sched_ctx, &fibers[pick].ctx);
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#elif EMU_FAST_SWITCH
            emu_switch(&sched_sp, fibers[pick].sp);
#else
            swapcontext(&sched_ctx, &fibers[pick].ctx);
#endif
            if (fibers[pick].state == RUN) fail("a fiber came back to the scheduler still running");
        }
    }
}
}  // namespace

namespace {
emu_trace_fn trace_fn;
void *trace_arg;
int trace_execute = 1;
unsigned long long host_syncs;
}  // namespace

void launch(dim3 grid, dim3 block, size_t smem, const std::function<void()> &b)
{
    size_t n = (size_t)block.x * block.y * block.z;
    if (n == 0 || n > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (smem > 48 * 1024) {   // more needs cudaFuncSetAttribute on a real GPU; flag it here
        last_error = cudaErrorInvalidValue;
        return;
    }
    if (trace_fn && !trace_execute) return;   // reported by launch_on, which every launch goes through
    body = &b;
    block_dim = block;
    grid_dim = grid;
    slots.assign(n, 0);
    xchg.assign(n * XCHG_FLOATS, 0.f);
    dyn_smem.resize(smem > 0 ? smem : 1);
    // blocks in grid order, or (shuffle on) in a random order: a kernel whose result depends
    // on which block runs first or last shows up as a wrong result
    size_t nblocks = (size_t)grid.x * grid.y * grid.z;
    std::vector<size_t> order(nblocks);
    for (size_t i = 0; i < nblocks; i++) order[i] = i;
    if (shuffle_state)
        for (size_t i = nblocks; i > 1; i--) std::swap(order[i - 1], order[next_random() % i]);
    for (size_t i : order) {
        block_idx = uint3{(unsigned)(i % grid.x), (unsigned)(i / grid.x % grid.y), (unsigned)(i / grid.x / grid.y)};
        memset(dyn_smem.data(), 0xff, dyn_smem.size());   // NaN: unwritten shared memory shows
        run_block(n);
    }
    cur_tid = nullptr;
}

}  // namespace emu

struct emu_stream { int id; };
// A captured graph: nodes in capture order (a topological order) with the nodes each waits for.
struct emu_graph {
    std::vector<std::function<void()>> nodes;
    std::vector<std::vector<int>> deps;
};
struct emu_graph_exec { emu_graph g; };
// An event recorded during a capture stands for the recording stream's last nodes at that
// point (capture: which capture); outside a capture, for a time.
struct emu_event { double t; std::vector<int> deps; unsigned long long capture; };

namespace emu {
namespace {
// A capture starts on its origin stream; another stream joins it by waiting on an event
// recorded in it (the fork), and must be joined back into the origin (an event recorded on
// it, waited on by the origin) before the capture ends, as on a GPU.
cudaStream_t capturing;         // the origin stream of the capture, or nullptr
emu_graph *capture_graph;
bool capture_broken;
unsigned long long capture_id;
std::vector<std::pair<cudaStream_t, std::vector<int>>> frontier;   // captured streams: their last nodes
unsigned long long graph_launches, last_graph_nodes, last_graph_depth;

std::vector<int> *frontier_of(cudaStream_t st)
{
    for (auto &f : frontier)
        if (f.first == st) return &f.second;
    return nullptr;
}
// during a capture: record on a stream of the capture; any other stream is an error
bool record(cudaStream_t st, std::function<void()> node)
{
    if (!capturing) return false;
    std::vector<int> *f = frontier_of(st);
    if (!f) { capture_broken = true; last_error = cudaErrorStreamCaptureImplicit; return true; }
    capture_graph->nodes.push_back(std::move(node));
    capture_graph->deps.push_back(*f);
    *f = {(int)capture_graph->nodes.size() - 1};
    return true;
}
}  // namespace

void launch_on(cudaStream_t st, const char *name, dim3 grid, dim3 block, size_t smem, std::function<void()> b)
{
    // traced where it is issued: a captured launch now, not again when its graph runs
    if (trace_fn && (!capturing || frontier_of(st)))
        trace_fn(trace_arg, name, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
    if (capturing) {
        record(st, [grid, block, smem, b] { launch(grid, block, smem, b); });
        return;
    }
    launch(grid, block, smem, b);
}

int host_work_on(cudaStream_t st, std::function<void()> work)
{
    if (record(st, work)) return capture_broken ? cudaErrorStreamCaptureImplicit : cudaSuccess;
    work();
    return cudaSuccess;
}

void syncthreads(const char *file, int line)
{
    Fiber &f = fibers[cur];
    f.state = AT_BLOCK_BARRIER;
    f.bar_file = file;
    f.bar_line = line;
    switch_to_scheduler(false);
}

void syncwarp()
{
    fibers[cur].state = AT_WARP_BARRIER;
    switch_to_scheduler(false);
}

void *dyn_shared() { return dyn_smem.data(); }
uint64_t *warp_slots() { return slots.data(); }
const float *warp_exchange(const float *mine, int n)
{
    if (n > XCHG_FLOATS) { fprintf(stderr, "emu: warp_exchange of %d floats per lane (at most %d)\n", n, XCHG_FLOATS); abort(); }
    unsigned me = cur_tid->x + block_dim.x * (cur_tid->y + block_dim.y * cur_tid->z);
    memcpy(&xchg[(size_t)me * XCHG_FLOATS], mine, sizeof(float) * (size_t)n);
    syncwarp();
    // a warp-wide instruction (.aligned: mma.sync) needs all 32 lanes; one that has returned
    // or a warp cut short by the block size would leave stale fragments, so stop here
    size_t lo = me - me % 32, hi = lo + 32;
    if (hi > fibers.size()) {
        fprintf(stderr, "emu: warp_exchange in a warp of %zu threads (a warp-wide instruction needs 32)\n", fibers.size() - lo);
        abort();
    }
    for (size_t i = lo; i < hi; i++)
        if (fibers[i].state == DONE) {
            fprintf(stderr, "emu: warp_exchange with lane %zu of the warp already returned (a warp-wide instruction needs all 32)\n", i - lo);
            abort();
        }
    return &xchg[lo * XCHG_FLOATS];
}
void warp_exchange_end() { syncwarp(); }
unsigned lane_id()
{
    unsigned linear = cur_tid->x + block_dim.x * (cur_tid->y + block_dim.y * cur_tid->z);
    return linear % 32;
}
}  // namespace emu

extern "C" void emu_set_shuffle(unsigned long long seed) { emu::shuffle_state = seed ? seed * 2654435761ULL + 1 : 0; }
extern "C" void emu_set_graph_shuffle(unsigned long long seed) { emu::graph_shuffle_state = seed ? seed * 2654435761ULL + 1 : 0; }
extern "C" unsigned long long emu_fibers_run(void) { return emu::fibers_run; }
extern "C" void emu_set_trace(emu_trace_fn fn, void *arg, int execute)
{
    emu::trace_fn = fn;
    emu::trace_arg = arg;
    emu::trace_execute = fn ? execute : 1;
}
extern "C" unsigned long long emu_host_syncs(void) { return emu::host_syncs; }
extern "C" unsigned long long emu_graph_launches(void) { return emu::graph_launches; }
extern "C" unsigned long long emu_last_graph_nodes(void) { return emu::last_graph_nodes; }
extern "C" unsigned long long emu_last_graph_depth(void) { return emu::last_graph_depth; }

// a blocking call inside a capture: refused (and the capture is invalidated), as on a GPU
static bool refuse_in_capture()
{
    if (!emu::capturing) return false;
    emu::capture_broken = true;
    return true;
}

// ---- runtime API ----
cudaError_t cudaMalloc(void **p, size_t bytes)
{
    if (refuse_in_capture()) return cudaErrorStreamCaptureUnsupported;   // as in global capture mode
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes);   // all-ones bytes are NaN as float: a forgotten write shows
    return cudaSuccess;
}
cudaError_t cudaFree(void *p)
{
    if (refuse_in_capture()) return cudaErrorStreamCaptureUnsupported;
    free(p);
    return cudaSuccess;
}
static cudaError_t copy(void *d, const void *s, size_t n) { if (n) memmove(d, s, n); return cudaSuccess; }
cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind k)
{
    if (refuse_in_capture()) return cudaErrorStreamCaptureUnsupported;
    if (k != cudaMemcpyDeviceToDevice) emu::host_syncs++;
    return copy(d, s, n);
}
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t st)
{
    if (emu::record(st, [d, s, n] { copy(d, s, n); })) return emu::capture_broken ? cudaErrorStreamCaptureImplicit : cudaSuccess;
    return copy(d, s, n);
}
cudaError_t cudaMemset(void *p, int v, size_t n)
{
    if (refuse_in_capture()) return cudaErrorStreamCaptureUnsupported;
    emu::host_syncs++;
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st)
{
    if (emu::record(st, [p, v, n] { memset(p, v, n); })) return emu::capture_broken ? cudaErrorStreamCaptureImplicit : cudaSuccess;
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void)
{
    if (refuse_in_capture()) return cudaErrorStreamCaptureUnsupported;
    emu::host_syncs++;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t)
{
    if (refuse_in_capture()) return cudaErrorStreamCaptureUnsupported;
    emu::host_syncs++;
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s)
{
    static int next = 1;
    *s = new emu_stream{next++};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) { delete s; return cudaSuccess; }
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode)
{
    if (!s || emu::capturing) return cudaErrorInvalidValue;   // the legacy stream cannot be captured
    emu::capturing = s;
    emu::capture_graph = new emu_graph;
    emu::capture_broken = false;
    emu::capture_id++;
    emu::frontier = {{s, {}}};
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g)
{
    if (s != emu::capturing) return cudaErrorInvalidValue;
    emu::capturing = nullptr;
    emu_graph *gr = emu::capture_graph;
    // every node must be waited for by the origin's last nodes (other streams joined back)
    std::vector<char> reach(gr->nodes.size(), 0);
    for (int i : *emu::frontier_of(s)) reach[i] = 1;
    for (int i = (int)gr->nodes.size() - 1; i >= 0; i--)
        if (reach[i])
            for (int d : gr->deps[i]) reach[d] = 1;
    bool unjoined = false;
    for (char r : reach) unjoined |= !r;
    emu::frontier.clear();
    if (emu::capture_broken || unjoined) {
        delete gr;
        *g = nullptr;
        return unjoined && !emu::capture_broken ? cudaErrorStreamCaptureUnjoined : cudaErrorStreamCaptureUnsupported;
    }
    *g = gr;
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long)
{
    if (!g) return cudaErrorInvalidValue;
    *e = new emu_graph_exec{*g};
    emu::last_graph_nodes = g->nodes.size();
    // the longest chain of dependent nodes (capture order is topological)
    std::vector<unsigned long long> depth(g->nodes.size(), 1);
    emu::last_graph_depth = 0;
    for (size_t i = 0; i < g->nodes.size(); i++) {
        for (int d : g->deps[i]) depth[i] = std::max(depth[i], depth[d] + 1);
        emu::last_graph_depth = std::max(emu::last_graph_depth, depth[i]);
    }
    return cudaSuccess;
}
// The nodes run one at a time: in capture order, or (emu_set_graph_shuffle) in a random order
// that respects the dependencies, so a missing fork/join edge between streams shows up as a
// wrong result.
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t)
{
    if (emu::capturing) return cudaErrorStreamCaptureUnsupported;
    emu::graph_launches++;
    const emu_graph &g = e->g;
    if (!emu::graph_shuffle_state) {
        for (auto &node : g.nodes) node();
        return cudaSuccess;
    }
    size_t n = g.nodes.size();
    std::vector<int> waiting(n);
    std::vector<std::vector<int>> users(n);
    std::vector<int> ready;
    for (size_t i = 0; i < n; i++) {
        waiting[i] = (int)g.deps[i].size();
        for (int d : g.deps[i]) users[d].push_back((int)i);
        if (!waiting[i]) ready.push_back((int)i);
    }
    while (!ready.empty()) {
        size_t k = emu::next_random(emu::graph_shuffle_state) % ready.size();
        int i = ready[k];
        ready[k] = ready.back();
        ready.pop_back();
        g.nodes[i]();
        for (int u : users[i])
            if (!--waiting[u]) ready.push_back(u);
    }
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e)
{
    if (refuse_in_capture()) return cudaErrorStreamCaptureUnsupported;   // as on an H200, global mode
    delete e;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
cudaError_t cudaMallocHost(void **p, size_t bytes)
{
    *p = malloc(bytes ? bytes : 1);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaGetLastError(void) { cudaError_t e = emu::last_error; emu::last_error = cudaSuccess; return e; }
cudaError_t cudaPeekAtLastError(void) { return emu::last_error; }
const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureUnjoined: return "capture was not joined: a forked stream's work is not waited for by the origin stream";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorCapturedEvent: return "operation not permitted on an event last recorded in a capturing stream";
    default: return "unknown error";
    }
}
// A machine of EMU_DEVICES emulated GPUs; every process has its own (one per process in the
// data-parallel tests, tests/mpi/run.sh), so which one a process sets changes nothing else.
constexpr int EMU_DEVICES = 8;
cudaError_t cudaGetDeviceCount(int *n) { *n = EMU_DEVICES; return cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return d >= 0 && d < EMU_DEVICES ? cudaSuccess : cudaErrorInvalidDevice; }
static double host_ms() { timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6; }
cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = new emu_event{0, {}, 0}; return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    if (emu::capturing && emu::frontier_of(s)) {   // captured: the stream's last nodes
        e->deps = *emu::frontier_of(s);
        e->capture = emu::capture_id;
        return cudaSuccess;
    }
    if (emu::capturing) return cudaErrorStreamCaptureImplicit;   // a stream outside the capture
    e->t = host_ms();
    e->capture = 0;
    return cudaSuccess;
}
// Outside a capture every operation has already run (one device, in issue order): nothing to
// wait for. In a capture, an event of this capture makes s wait for its nodes (s joins the
// capture if it was not in it). An event whose last record was inside a capture (one that has
// ended, or another one) stands for nodes of a graph, not for work on a stream: CUDA refuses to
// wait on it eagerly, query it or synchronize with it (cudaErrorCapturedEvent), and so does this.
// The other way round, a captured stream may not wait on an event recorded outside the capture
// (cudaErrorStreamCaptureIsolation, and the capture is invalidated): the graph would depend on
// work outside it.
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned)
{
    if (e->capture && (!emu::capturing || e->capture != emu::capture_id)) return cudaErrorCapturedEvent;
    if (!emu::capturing) return cudaSuccess;
    if (!e->capture) {   // recorded outside the capture
        if (!emu::frontier_of(s)) return cudaSuccess;   // an eager wait of a stream outside the capture
        emu::capture_broken = true;
        return cudaErrorStreamCaptureIsolation;
    }
    std::vector<int> *f = emu::frontier_of(s);
    if (!f) {
        emu::frontier.push_back({s, e->deps});
        return cudaSuccess;
    }
    for (int d : e->deps)
        if (std::find(f->begin(), f->end(), d) == f->end()) f->push_back(d);
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    if (e->capture) return cudaErrorCapturedEvent;
    emu::host_syncs++;
    return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) { return e->capture ? cudaErrorCapturedEvent : cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) { *ms = (float)(b->t - a->t); return cudaSuccess; }

// For the tests: an event recorded in a capture that has ended, then waited on, queried and
// synchronized eagerly (each must be refused with cudaErrorCapturedEvent), then recorded again
// outside the capture and waited on (must succeed). Returns 0 when all of that holds, else the
// number of the check that did not.
extern "C" int emu_captured_event_rules(void)
{
    cudaStream_t s;
    cudaEvent_t e;
    cudaGraph_t g;
    cudaStreamCreate(&s);
    cudaEventCreate(&e);
    int bad = 0;
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) != cudaSuccess) bad = 1;
    else if (cudaEventRecord(e, s) != cudaSuccess) bad = 2;
    else if (cudaStreamWaitEvent(s, e) != cudaSuccess) bad = 3;   // a join inside the live capture: allowed
    else if (cudaStreamEndCapture(s, &g) != cudaSuccess) bad = 4;
    else if (cudaStreamWaitEvent(s, e) != cudaErrorCapturedEvent) bad = 5;
    else if (cudaEventQuery(e) != cudaErrorCapturedEvent) bad = 6;
    else if (cudaEventSynchronize(e) != cudaErrorCapturedEvent) bad = 7;
    else if (cudaEventRecord(e, s) != cudaSuccess || cudaStreamWaitEvent(s, e) != cudaSuccess) bad = 8;
    if (bad == 0 || bad > 4) cudaGraphDestroy(g);
    // e now recorded outside any capture: a captured wait on it is refused, and so is the capture
    if (bad == 0) {
        if (cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) != cudaSuccess) bad = 9;
        else if (cudaStreamWaitEvent(s, e) != cudaErrorStreamCaptureIsolation) bad = 10;
        else if (cudaStreamEndCapture(s, &g) == cudaSuccess) bad = 11;
    }
    cudaEventDestroy(e);
    cudaStreamDestroy(s);
    return bad;
}
