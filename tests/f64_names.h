/* Force-included (-include) when cpu/ is compiled a second time with real = double for
 * the gradient checks: every operator gets the suffix _f64, so both builds link together. */
#define gemm_ref gemm_ref_f64
#define gemm gemm_f64
#define im2col im2col_f64
#define col2im col2im_f64
#define conv2d_forward conv2d_forward_f64
#define conv2d_backward_input conv2d_backward_input_f64
#define conv2d_backward_weight conv2d_backward_weight_f64
#define bias_forward bias_forward_f64
#define bias_backward bias_backward_f64
#define batchnorm_forward_train batchnorm_forward_train_f64
#define batchnorm_forward_eval batchnorm_forward_eval_f64
#define batchnorm_backward batchnorm_backward_f64
#define relu_forward relu_forward_f64
#define relu_backward relu_backward_f64
#define add_forward add_forward_f64
#define add_inplace add_inplace_f64
#define maxpool2d_forward maxpool2d_forward_f64
#define maxpool2d_backward maxpool2d_backward_f64
#define avgpool2d_forward avgpool2d_forward_f64
#define avgpool2d_backward avgpool2d_backward_f64
#define linear_forward linear_forward_f64
#define linear_backward linear_backward_f64
#define softmax_xent_forward softmax_xent_forward_f64
#define softmax_xent_backward softmax_xent_backward_f64
#define sgd_step sgd_step_f64
#define gemm_fast_available gemm_fast_available_f64
