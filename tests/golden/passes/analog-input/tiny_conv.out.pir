graph @tiny_conv(%x: f32[1,6,6], %lif0.membrane: f32[3,6,6], %lif0.spike: f32[3,6,6], %out.membrane: f32[5], %readout.sum: f32[5], %readout.count: f32[1]) -> (%readout_mean.mean: f32[5], %lif0.membrane_out: f32[3,6,6], %lif0.spike_out: f32[3,6,6], %out: f32[5], %readout_mean.sum_out: f32[5], %readout_mean.count_out: f32[1]) {
  meta input_encoding = "event_counts"
  meta readout = "mean"
  meta timesteps = 4
  state %lif0.membrane <- %lif0.membrane_out
  state %lif0.spike <- %lif0.spike_out
  state %out.membrane <- %out
  state %readout.sum <- %readout_mean.sum_out
  state %readout.count <- %readout_mean.count_out
  %conv0.rows = im2col(%x) {dilation = [1, 1], input_dilation = [1, 1], kernel = [3, 3], padding = [1, 1, 1, 1], stride = [1, 1]} : f32[36,9] loc("conv0")
  %conv0.mvm = crossbar(%conv0.rows) {col_map = weight<i64[0] #4b9af4b1e2313aba>, drive = "unset", encoding = "unset", formed = weight<f32[9,3] #47d962ab6ede171b>, g_neg_us = weight<f64[0,0] #9338158866a77558>, g_pos_us = weight<f64[0,0] #9338158866a77558>, gain = 0.05, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "conv2d", mask = weight<bool[9,3] #897cad21d1c071d5>, mode = "as_formed", phase = -1, planes = 0, row_map = weight<i64[0] #4b9af4b1e2313aba>, tiles = [], us_per_unit = 1.0, weight_shape = [3, 1, 3, 3]} : f32[3,36] loc("conv0")
  %conv0 = reshape(%conv0.mvm) {shape = [3, 6, 6]} : f32[3,6,6] loc("conv0")
  %lif0.spike_out, %lif0.membrane_out = lif(%conv0, %lif0.membrane, %lif0.spike) {keep = 0.2, reset = "zero", reset_timing = "before_leak", slope = 0.1, strict = true, threshold = 0.2} : f32[3,6,6], f32[3,6,6] loc("lif0")
  %avg_pool2d.sum = sum_pool2d(%lif0.spike_out) {kernel = [2, 2], padding = [0, 0], stride = [2, 2]} : f32[3,3,3] loc("pool0")
  %linear.row = reshape(%avg_pool2d.sum) {shape = [1, 27]} : f32[1,27] loc("fc")
  %linear.mvm = crossbar(%linear.row) {col_map = weight<i64[0] #4b9af4b1e2313aba>, drive = "unset", encoding = "unset", formed = weight<f32[27,5] #e08916f633fe4fe3>, g_neg_us = weight<f64[0,0] #9338158866a77558>, g_pos_us = weight<f64[0,0] #9338158866a77558>, gain = 0.05, groups = 1, input_quantum = 1.0, input_scale = 0.25, kind = "linear", mask = weight<bool[27,5] #0ef26338ec8f7f49>, mode = "as_formed", phase = -1, planes = 0, row_map = weight<i64[0] #4b9af4b1e2313aba>, tiles = [], us_per_unit = 1.0, weight_shape = [5, 27]} : f32[5,1] loc("fc")
  %linear = reshape(%linear.mvm) {shape = [5]} : f32[5] loc("fc")
  %out = integrator(%linear, %out.membrane) {keep = 1.0, slope = 0.1} : f32[5] loc("out")
  %readout_mean.mean, %readout_mean.sum_out, %readout_mean.count_out = readout_mean(%out, %readout.sum, %readout.count) : f32[5], f32[5], f32[1] loc("readout")
  return %readout_mean.mean, %lif0.membrane_out, %lif0.spike_out, %out, %readout_mean.sum_out, %readout_mean.count_out
}
