#include <stdlib.h>
#include <string.h>
#include "core/dist.h"
#include "core/gpustep.h"
#include "core/ops_fused.h"
#include "core/util.h"

GpuStep *gpustep_create(Model *m, DeviceData *dd, const LoaderConfig *lc, int use_graph)
{
    const Ops *o = m->ops;
    if (!o->augment_plan || !o->loss_accumulate) die("gpustep: the %s table has no device step", o->name);
    GpuStep *g = xcalloc(1, sizeof *g);
    g->m = m;
    g->dd = dd;
    g->batch = lc->batch;
    g->max_steps = lc->n / lc->batch;   /* drop_last */
    int hi;
    dist_slice(g->batch, &g->lo, &hi);  /* (one process: all the rows) */
    g->rows = hi - g->lo;
    g->use_graph = use_graph && o->capture_begin;
    const Dataset *ds = dd->host;
    g->labels = o->alloc((size_t)ds->n);
    o->upload(g->labels, ds->labels, (size_t)ds->n);
    size_t planned = (size_t)g->max_steps * g->batch, mine = (size_t)g->max_steps * g->rows;
    g->order = o->alloc(sizeof(int32_t) * (mine ? mine : 1));
    g->params = o->alloc(sizeof(AugParams) * (mine ? mine : 1));
    g->step = o->alloc(sizeof(int32_t));
    g->sums = o->alloc(2 * sizeof(double));
    g->host_order = xmalloc(sizeof(int) * (size_t)(lc->n > 0 ? lc->n : 1));   /* a whole epoch's order */
    g->host_params = xmalloc(sizeof(AugParams) * (planned ? planned : 1));
    g->host_rows = xmalloc(sizeof(int32_t) * (mine ? mine : 1));
    g->host_row_params = xmalloc(sizeof(AugParams) * (mine ? mine : 1));
    return g;
}

void gpustep_epoch(GpuStep *g, const LoaderConfig *lc, int epoch, int first, double loss_sum, long correct)
{
    const Ops *o = g->m->ops;
    _Static_assert(sizeof(int) == sizeof(int32_t), "the order is uploaded as int32");
    loader_order(lc, epoch, g->host_order);   /* the batches use its first max_steps * batch */
    for (int b = 0; b < g->max_steps; b++) loader_draw(lc, epoch, b, g->batch, g->host_params + (size_t)b * g->batch);
    for (int b = 0; b < g->max_steps; b++)   /* this process's rows of each batch */
        for (int i = 0; i < g->rows; i++) {
            size_t from = (size_t)b * g->batch + g->lo + i, to = (size_t)b * g->rows + i;
            g->host_rows[to] = g->host_order[from];
            g->host_row_params[to] = g->host_params[from];
        }
    size_t mine = (size_t)g->max_steps * g->rows;
    o->upload(g->order, g->host_rows, sizeof(int32_t) * mine);
    o->upload(g->params, g->host_row_params, sizeof(AugParams) * mine);
    int32_t s = first;
    /* the sums so far (a resumed run's) are the whole batch's: kept by rank 0 alone, as
     * gpustep_sums adds the processes' */
    double sums[2] = {dist_rank() == 0 ? loss_sum : 0, dist_rank() == 0 ? (double)correct : 0};
    o->upload(g->step, &s, sizeof s);
    o->upload(g->sums, sums, sizeof sums);
}

/* one step's work, issued op by op (run, or recorded into a graph) */
static void issue_step(GpuStep *g, float lr, float momentum, float wd, int first_step)
{
    Model *m = g->m;
    const Ops *o = m->ops;
    int n = g->rows;   /* (one process: the whole batch) */
    m->batch_share = (double)g->rows / g->batch;
    o->augment_plan(m->input, m->labels, g->dd->images, g->labels, g->order, g->params, g->step, n, g->dd->perm);
    model_forward_input(m, n, 1);
    o->softmax_xent_forward(m->losses, m->probs, m->correct, m->logits, m->labels, n, m->cfg.classes);
    const FusedOps *f = o->fused;   /* the sums beside the backward where the table has branches */
    if (f && f->branch_begin) f->branch_begin();   /* (joined by sgd_step) */
    o->loss_accumulate(g->sums, m->losses, m->correct, n, g->step);
    if (f && f->branch_end) f->branch_end();
    model_backward(m, n);
    if (o->sum_over_processes) o->sum_over_processes(m->grads, m->n_params);   /* (one process: nothing) */
    o->sgd_step(m->params, m->grads, m->momentum, m->n_params, lr, momentum, wd, first_step);
}

void gpustep_run(GpuStep *g, float lr, float momentum, float weight_decay)
{
    Model *m = g->m;
    const Ops *o = m->ops;
    /* the first step of a GpuStep runs uncaptured even when resumed (m->steps > 0): the
     * operators size their scratch buffers on first use, and cudaMalloc is refused inside a
     * capture */
    if (!g->use_graph || m->steps == 0 || !g->warm) {
        issue_step(g, lr, momentum, weight_decay, m->steps == 0);
        g->warm = 1;
    } else {
        /* lr, momentum and weight decay are kernel arguments of the graph, captured by value */
        if (!g->graph || g->graph_lr != lr || g->graph_momentum != momentum || g->graph_wd != weight_decay) {
            if (g->graph) o->graph_free(g->graph);
            /* the host side of the step (batchnorm's num_batches_tracked) must not count the
             * capture, which runs nothing; it is counted per launch below */
            int64_t *keep = xmalloc(sizeof(int64_t) * (m->n_bn ? m->n_bn : 1));
            memcpy(keep, m->num_batches_tracked, sizeof(int64_t) * m->n_bn);
            o->capture_begin();
            issue_step(g, lr, momentum, weight_decay, 0);
            g->graph = o->capture_end();
            memcpy(m->num_batches_tracked, keep, sizeof(int64_t) * m->n_bn);
            free(keep);
            g->graph_lr = lr;
            g->graph_momentum = momentum;
            g->graph_wd = weight_decay;
        }
        o->graph_launch(g->graph);
        for (int i = 0; i < m->n_bn; i++) m->num_batches_tracked[i]++;   /* each BN once per forward */
        g->launches++;
    }
    m->steps++;
}

void gpustep_sums(GpuStep *g, double *loss_sum, long *correct)
{
    double s[2];
    g->m->ops->download(s, g->sums, sizeof s);
    dist_sum(s, 2);   /* every process's (one process: nothing) */
    *loss_sum = s[0];
    *correct = (long)s[1];
}

void gpustep_free(GpuStep *g)
{
    if (!g) return;
    const Ops *o = g->m->ops;
    if (g->graph) o->graph_free(g->graph);
    o->free(g->labels); o->free(g->order); o->free(g->params); o->free(g->step); o->free(g->sums);
    free(g->host_order); free(g->host_params); free(g->host_row_params); free(g->host_rows);
    free(g);
}
