graph @analog_conv(%x: f32[1,3,3], %lif0.membrane: f32[2,3,3], %lif0.spike: f32[2,3,3]) -> (%lif0.spike_out: f32[2,3,3], %lif0.membrane_out: f32[2,3,3]) {
  meta input_encoding = "analog_repeat"
  meta input_offset = -1.0
  meta input_quantum = 0.0078125
  meta readout = "exp_tanh"
  meta timesteps = 4
  state %lif0.membrane <- %lif0.membrane_out
  state %lif0.spike <- %lif0.spike_out
  %x.offset = weight() {value = weight<f32[1] #d06680cf2f4a84f9>} : f32[1] loc("conv0")
  %x.shifted = add(%x, %x.offset) : f32[1,3,3] loc("conv0")
  %conv0.rows = im2col(%x.shifted) {dilation = [1, 1], input_dilation = [1, 1], kernel = [3, 3], padding = [1, 1, 1, 1], stride = [1, 1]} : f32[9,9] loc("conv0")
  %conv0.mvm.raw = crossbar(%conv0.rows) {col_map = weight<i64[0] #4b9af4b1e2313aba>, drive = "bit_serial", encoding = "unset", formed = weight<f32[9,2] #168c9f8e4f82dd13>, g_neg_us = weight<f64[0,0] #9338158866a77558>, g_pos_us = weight<f64[0,0] #9338158866a77558>, gain = 0.05, groups = 1, input_quantum = 0.0078125, input_scale = 1.0, kind = "conv2d", mask = weight<bool[9,2] #375a2e5b1d701e96>, mode = "as_formed", phase = -1, planes = 8, row_map = weight<i64[0] #4b9af4b1e2313aba>, tiles = [], us_per_unit = 1.0, weight_shape = [2, 1, 3, 3]} : f32[2,9] loc("conv0")
  %conv0.mvm.offset_fix = weight() {value = weight<f32[2,9] #4e3e8f4acf20ccfa>} : f32[2,9] loc("conv0")
  %conv0.mvm = add(%conv0.mvm.raw, %conv0.mvm.offset_fix) : f32[2,9] loc("conv0")
  %conv0 = reshape(%conv0.mvm) {shape = [2, 3, 3]} : f32[2,3,3] loc("conv0")
  %lif0.spike_out, %lif0.membrane_out = lif(%conv0, %lif0.membrane, %lif0.spike) {keep = 0.25, reset = "zero", reset_timing = "before_leak", slope = 1.0, strict = true, threshold = 0.2} : f32[2,3,3], f32[2,3,3] loc("lif0")
  return %lif0.spike_out, %lif0.membrane_out
}
