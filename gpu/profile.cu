// Where a step's time goes on a card, kernel by kernel, without a profiler (bench/train_step
// --profile). While gpu::profiling is on, CUDA_CHECK_LAUNCH (cuda_compat.h), which follows
// every launch in gpu/, records an event on the launch's stream. A launch's time is the time
// between the event before it on its stream and its own: its run plus any gap before it (a
// wait for the other stream, or a host that fell behind). Launches are grouped by their
// source line. Eager launches only: events recorded inside a capture time nothing, so
// capture_begin refuses to run while profiling.
#include <algorithm>
#include <string.h>
#include <vector>
#include "gpu/cuda_compat.h"
#include "gpu/gpu.h"
#include "core/ops.h"

namespace gpu {
bool profiling;
namespace {
struct Mark { const char *file; int line; cudaStream_t s; cudaEvent_t before, after; };
std::vector<Mark> marks;
std::vector<std::pair<cudaStream_t, cudaEvent_t>> latest;   // each stream's last event
std::vector<cudaEvent_t> created;                            // all of them, destroyed at the end
cudaEvent_t new_event(cudaStream_t s)
{
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreate(&e));
    CUDA_CHECK(cudaEventRecord(e, s));
    created.push_back(e);
    return e;
}
}  // namespace

void profile_mark(const char *file, int line)
{
    cudaStream_t s = stream();
    cudaEvent_t e = new_event(s);
    auto it = std::find_if(latest.begin(), latest.end(), [s](const auto &p) { return p.first == s; });
    if (it == latest.end()) GPU_FAIL("profile_mark: a stream gpu_profile_begin did not start");
    marks.push_back({file, line, s, it->second, e});
    it->second = e;
}
}  // namespace gpu

extern "C" void gpu_profile_begin(void)
{
    using namespace gpu;
    CUDA_CHECK(cudaDeviceSynchronize());
    latest = {{main_stream(), new_event(main_stream())}, {side_stream(), new_event(side_stream())}};
    profiling = true;
}

// Stops profiling and prints one row per launch site: launches and milliseconds per step,
// its share of the main stream's summed time, and the site. Returns the number of launches.
extern "C" long gpu_profile_end(int steps, FILE *out)
{
    using namespace gpu;
    profiling = false;
    CUDA_CHECK(cudaDeviceSynchronize());
    struct Row { const char *file; int line; bool side; long n; double ms; };
    std::vector<Row> rows;
    double main_ms = 0;
    for (const Mark &m : marks) {
        float ms;
        CUDA_CHECK(cudaEventElapsedTime(&ms, m.before, m.after));
        bool side = m.s != main_stream();
        if (!side) main_ms += ms;
        auto it = std::find_if(rows.begin(), rows.end(), [&](const Row &r) {
            return r.line == m.line && r.side == side && !strcmp(r.file, m.file);
        });
        if (it == rows.end()) rows.push_back({m.file, m.line, side, 1, ms});
        else { it->n++; it->ms += ms; }
    }
    std::sort(rows.begin(), rows.end(), [](const Row &a, const Row &b) { return a.ms > b.ms; });
    fprintf(out, "%10s %10s %7s  %s\n", "launches", "ms/step", "share", "launch site (stream)");
    for (const Row &r : rows)
        fprintf(out, "%10.1f %10.3f %6.1f%%  %s:%d%s\n", (double)r.n / steps, r.ms / steps,
                r.side ? 0.0 : 100.0 * r.ms / main_ms, r.file, r.line, r.side ? " (side: overlaps the main stream)" : "");
    fprintf(out, "main stream: %.3f ms/step in %zu launches over %d steps\n", main_ms / steps, marks.size(), steps);
    long n = (long)marks.size();
    for (cudaEvent_t e : created) CUDA_CHECK(cudaEventDestroy(e));
    created.clear();
    marks.clear();
    latest.clear();
    return n;
}
