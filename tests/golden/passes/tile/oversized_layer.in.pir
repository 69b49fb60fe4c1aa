graph @oversized_layer(%x: f32[64], %lif.membrane: f32[64], %lif.spike: f32[64]) -> (%linear: f32[8], %lif.membrane_out: f32[64], %lif.spike_out: f32[64]) {
  state %lif.membrane <- %lif.membrane_out
  state %lif.spike <- %lif.spike_out
  %lif.spike_out, %lif.membrane_out = lif(%x, %lif.membrane, %lif.spike) {keep = 0.5, reset = "zero", reset_timing = "before_leak", slope = 1.0, strict = true, threshold = 0.5} : f32[64], f32[64] loc("lif")
  %linear.row = reshape(%lif.spike_out) {shape = [1, 64]} : f32[1,64] loc("fc")
  %linear.mvm = crossbar(%linear.row) {col_map = weight<i64[0] #4b9af4b1e2313aba>, drive = "binary", encoding = "differential", formed = weight<f32[64,8] #cbb4feda3c409179>, g_neg_us = weight<f64[64,8] #78ccd0a7403cc772>, g_pos_us = weight<f64[64,8] #4cd1956e3ee1f646>, gain = 0.1, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "linear", mask = weight<bool[64,8] #3f83d5627db934c8>, mode = "as_formed", phase = -1, planes = 1, row_map = weight<i64[0] #4b9af4b1e2313aba>, tiles = [], us_per_unit = 1.0, weight_shape = [8, 64]} : f32[8,1] loc("fc")
  %linear = reshape(%linear.mvm) {shape = [8]} : f32[8] loc("fc")
  return %linear, %lif.membrane_out, %lif.spike_out
}
