/* Model structure: parameter counts and names match the PyTorch reference, the practical's
 * block shape asserts, and a few SGD steps fit a fixed batch. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/model.h"
#include "tests/gradcheck.h"

START_TEST(param_counts_match_reference)
{
    /* python3 shared/reference/resnet_torch.py preact|original: 83882 / 83922 */
    ModelConfig cfg;
    model_config_default(&cfg);
    Model *m = model_create(&ops_cpu, &cfg, 1);
    ck_assert_uint_eq(model_num_trainable(m), 83882);
    ck_assert_int_eq(m->n_entries, 99);
    ck_assert_str_eq(m->entries[0].name, "model.input_net.0.weight");
    ck_assert_str_eq(m->entries[5].name, "model.blocks.0.net.0.num_batches_tracked");
    ck_assert_str_eq(m->entries[37].name, "model.blocks.2.downsample.0.weight");
    ck_assert_str_eq(m->entries[98].name, "model.output_net.2.bias");
    size_t total = 0;
    for (int i = 0; i < m->n_entries; i++) if (m->entries[i].kind == ENTRY_PARAM) total += m->entries[i].numel;
    ck_assert_uint_eq(total, m->n_params);
    model_free(m);
    cfg.block = BLOCK_ORIGINAL;
    m = model_create(&ops_cpu, &cfg, 1);
    ck_assert_uint_eq(model_num_trainable(m), 83922);
    ck_assert_str_eq(m->entries[6].name, "model.blocks.0.net.0.weight");
    model_free(m);
}
END_TEST

/* The practical: a PreAct block with random c_in in [16,64) keeps the shape; with
 * subsample and random c_out it gives (N, c_out, H/2, W/2). Checked on both block types. */
START_TEST(block_shapes)
{
    Rng rng;
    rng_seed(&rng, 1234 + _i, 1);
    for (int trial = 0; trial < 3; trial++) {
        int c_in = 16 + rng_int(&rng, 48), c_out = 16 + rng_int(&rng, 48), N = 2, H = 8;
        for (int sub = 0; sub <= 1; sub++) {
            ModelConfig cfg;
            model_config_default(&cfg);
            cfg.block = _i ? BLOCK_ORIGINAL : BLOCK_PREACT;
            cfg.in_h = cfg.in_w = H;
            cfg.n_stages = sub ? 2 : 1;
            cfg.blocks[0] = 1; cfg.blocks[1] = 1;
            cfg.channels[0] = c_in; cfg.channels[1] = c_out;
            Model *m = model_create(&ops_cpu, &cfg, N);
            model_init(m, &rng);
            float *x = malloc(sizeof(float) * N * 3 * H * H);
            fill_normal_f(x, N * 3 * H * H, 5);
            model_forward(m, x, N, 1);
            const Block *b = &m->blocks[m->n_blocks - 1];
            ck_assert_int_eq(b->Cin, c_in);
            ck_assert_int_eq(b->Cout, sub ? c_out : c_in);
            ck_assert_int_eq(b->Ho, sub ? H / 2 : H);
            ck_assert_int_eq(b->Wo, sub ? H / 2 : H);
            size_t n = (size_t)N * b->Cout * b->Ho * b->Wo;
            for (size_t i = 0; i < n; i++) ck_assert(isfinite(b->y[i]));
            free(x);
            model_free(m);
        }
    }
}
END_TEST

/* Part 3's MLP: 3072-512-256-10 has 1,707,274 parameters named as PyTorch's
 * nn.Sequential(Flatten, Linear, ReLU, Linear, ReLU, Linear) names them. */
START_TEST(mlp_params_and_names)
{
    ModelConfig cfg;
    model_config_mlp(&cfg);
    Model *m = model_create(&ops_cpu, &cfg, 2);
    ck_assert_uint_eq(model_num_trainable(m), 3072 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10);
    const char *names[] = {"model.1.weight", "model.1.bias", "model.3.weight", "model.3.bias",
                           "model.5.weight", "model.5.bias"};
    ck_assert_int_eq(m->n_entries, 6);
    for (int i = 0; i < 6; i++) ck_assert_str_eq(m->entries[i].name, names[i]);
    ck_assert_int_eq(m->entries[0].shape[0], 512);
    ck_assert_int_eq(m->entries[0].shape[1], 3072);
    model_free(m);
}
END_TEST

START_TEST(sgd_fits_a_batch)
{
    ModelConfig cfg;
    model_config_default(&cfg);
    cfg.block = _i == 1 ? BLOCK_ORIGINAL : BLOCK_PREACT;
    if (_i == 2) {
        model_config_mlp(&cfg);
        cfg.hidden[0] = 64; cfg.hidden[1] = 32;
    }
    cfg.in_h = cfg.in_w = 8;
    int N = 8;
    Model *m = model_create(&ops_cpu, &cfg, N);
    Rng rng;
    rng_seed(&rng, 42, 0);
    model_init(m, &rng);
    float *x = malloc(sizeof(float) * N * 3 * 64);
    int32_t y[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    fill_normal_f(x, N * 3 * 64, 3);
    double first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        model_forward(m, x, N, 1);
        double loss = model_loss(m, y, N, NULL);
        if (step == 0) first = loss;
        last = loss;
        model_backward(m, N);
        model_sgd_step(m, 0.05f, 0.9f, 1e-4f);
    }
    ck_assert_msg(last < 0.2 * first, "loss %g -> %g", first, last);
    if (_i != 2) ck_assert_int_eq(m->num_batches_tracked[0], 30);
    free(x);
    model_free(m);
}
END_TEST

Suite *suite_model(void)
{
    Suite *s = suite_create("model");
    TCase *t = tcase_create("model");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, param_counts_match_reference);
    tcase_add_loop_test(t, block_shapes, 0, 2);
    tcase_add_loop_test(t, sgd_fits_a_batch, 0, 3);   /* preact, original, MLP */
    tcase_add_test(t, mlp_params_and_names);
    suite_add_tcase(s, t);
    return s;
}
