graph @tiny_deconv(%x: f32[2,2,2], %readout.acc: f32[1,4,4]) -> (%readout_exp_tanh.y: f32[1,4,4], %readout_exp_tanh.acc_out: f32[1,4,4]) {
  meta input_encoding = "spikes"
  meta readout = "exp_tanh"
  meta timesteps = 4
  state %readout.acc <- %readout_exp_tanh.acc_out
  %deconv0.weight = weight() {value = weight<f32[2,1,3,3] #4b193c8bf2b4e8ac>} : f32[2,1,3,3] loc("deconv0")
  %deconv0.scores = weight() {value = weight<f32[2,1,3,3] #da91494c3f2a98db>} : f32[2,1,3,3] loc("deconv0")
  %supermask = masked_weight() {formed = weight<f32[2,1,3,3] #4b193c8bf2b4e8ac>, gain = 0.05, mask = weight<bool[2,1,3,3] #2f9f61742ec1ee89>} : f32[2,1,3,3] loc("deconv0")
  %deconv0.rows = im2col(%x) {dilation = [1, 1], input_dilation = [2, 2], kernel = [3, 3], padding = [1, 1, 2, 2], stride = [1, 1]} : f32[16,18] loc("deconv0")
  %deconv0.mvm = crossbar(%deconv0.rows) {col_map = weight<i64[0] #4b9af4b1e2313aba>, drive = "unset", encoding = "unset", formed = weight<f32[18,1] #1e869f3f15c083b1>, g_neg_us = weight<f64[0,0] #9338158866a77558>, g_pos_us = weight<f64[0,0] #9338158866a77558>, gain = 0.05, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "conv_transpose2d", mask = weight<bool[18,1] #219957f8c60fd97f>, mode = "as_formed", phase = -1, planes = 0, row_map = weight<i64[0] #4b9af4b1e2313aba>, tiles = [], us_per_unit = 1.0, weight_shape = [2, 1, 3, 3]} : f32[1,16] loc("deconv0")
  %deconv0 = reshape(%deconv0.mvm) {shape = [1, 4, 4]} : f32[1,4,4] loc("deconv0")
  %readout_exp_tanh.y, %readout_exp_tanh.acc_out = readout_exp_tanh(%deconv0, %readout.acc) {decay = 0.8} : f32[1,4,4], f32[1,4,4] loc("readout")
  return %readout_exp_tanh.y, %readout_exp_tanh.acc_out
}
