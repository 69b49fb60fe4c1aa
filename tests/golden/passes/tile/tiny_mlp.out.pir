graph @tiny_mlp(%x: f32[6], %lif0.membrane: f32[4], %lif0.spike: f32[4], %lif1.membrane: f32[3], %lif1.spike: f32[3], %readout.sum: f32[3], %readout.count: f32[1]) -> (%readout_mean.mean: f32[3], %lif0.membrane_out: f32[4], %lif0.spike_out: f32[4], %lif1.membrane_out: f32[3], %lif1.spike_out: f32[3], %readout_mean.sum_out: f32[3], %readout_mean.count_out: f32[1]) {
  meta input_encoding = "spikes"
  meta readout = "mean"
  meta timesteps = 4
  state %lif0.membrane <- %lif0.membrane_out
  state %lif0.spike <- %lif0.spike_out
  state %lif1.membrane <- %lif1.membrane_out
  state %lif1.spike <- %lif1.spike_out
  state %readout.sum <- %readout_mean.sum_out
  state %readout.count <- %readout_mean.count_out
  %linear.row = reshape(%x) {shape = [1, 6]} : f32[1,6] loc("fc0")
  %linear.mvm = crossbar(%linear.row) {col_map = weight<i64[3] #7b36b57ac44bbed5>, drive = "binary", encoding = "differential", formed = weight<f32[6,4] #b95ca0a3e552c591>, g_neg_us = weight<f64[6,4] #5cef000e29b5a130>, g_pos_us = weight<f64[6,4] #8f9bc517bc836a9a>, gain = 1.0, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "linear", mask = weight<bool[6,4] #1fb1770d410720ca>, mode = "programmed", phase = -1, planes = 1, row_map = weight<i64[5] #66efe7c875c77b6e>, tiles = [tile<rows 0:5, outputs 0:3>], us_per_unit = 64.0, weight_shape = [4, 6]} : f32[4,1] loc("fc0")
  %linear = reshape(%linear.mvm) {shape = [4]} : f32[4] loc("fc0")
  %batch_norm.scale = weight() {value = weight<f64[4] #d1aa7ce1b822d7a2>} : f64[4] loc("bn0")
  %batch_norm.shift = weight() {value = weight<f64[4] #27903a14c116d3fb>} : f64[4] loc("bn0")
  %batch_norm = affine(%linear, %batch_norm.scale, %batch_norm.shift) : f32[4] loc("bn0")
  %lif0.spike_out, %lif0.membrane_out = lif(%batch_norm, %lif0.membrane, %lif0.spike) {keep = 0.9, reset = "subtract", reset_timing = "after_leak", slope = 1.0, strict = true, threshold = 0.5} : f32[4], f32[4] loc("lif0")
  %linear_1.row = reshape(%lif0.spike_out) {shape = [1, 4]} : f32[1,4] loc("fc1")
  %linear_1.mvm = crossbar(%linear_1.row) {col_map = weight<i64[3] #7b36b57ac44bbed5>, drive = "binary", encoding = "differential", formed = weight<f32[4,3] #439f517007a4a816>, g_neg_us = weight<f64[4,3] #d48747274be20b57>, g_pos_us = weight<f64[4,3] #cf713081b7de29d7>, gain = 1.0, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "linear", mask = weight<bool[4,3] #1ac235e3adfcc3a6>, mode = "programmed", phase = -1, planes = 1, row_map = weight<i64[4] #4a871df19664c6cb>, tiles = [tile<rows 0:4, outputs 0:3>], us_per_unit = 64.0, weight_shape = [3, 4]} : f32[3,1] loc("fc1")
  %linear_1 = reshape(%linear_1.mvm) {shape = [3]} : f32[3] loc("fc1")
  %lif1.spike_out, %lif1.membrane_out = lif(%linear_1, %lif1.membrane, %lif1.spike) {keep = 0.9, reset = "zero", reset_timing = "before_leak", slope = 1.0, strict = true, threshold = 0.5} : f32[3], f32[3] loc("lif1")
  %readout_mean.mean, %readout_mean.sum_out, %readout_mean.count_out = readout_mean(%lif1.spike_out, %readout.sum, %readout.count) : f32[3], f32[3], f32[1] loc("readout")
  return %readout_mean.mean, %lif0.membrane_out, %lif0.spike_out, %lif1.membrane_out, %lif1.spike_out, %readout_mean.sum_out, %readout_mean.count_out
}
