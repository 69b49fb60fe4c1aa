graph @tiny_deconv(%x: f32[2,2,2], %readout.acc: f32[1,4,4]) -> (%readout_exp_tanh.y: f32[1,4,4], %readout_exp_tanh.acc_out: f32[1,4,4]) {
  meta input_encoding = "spikes"
  meta readout = "exp_tanh"
  meta timesteps = 4
  state %readout.acc <- %readout_exp_tanh.acc_out
  %deconv0.weight = weight() {value = weight<f32[2,1,3,3] #4b193c8bf2b4e8ac>} : f32[2,1,3,3] loc("deconv0")
  %deconv0.scores = weight() {value = weight<f32[2,1,3,3] #da91494c3f2a98db>} : f32[2,1,3,3] loc("deconv0")
  %supermask = masked_weight() {formed = weight<f32[2,1,3,3] #4b193c8bf2b4e8ac>, gain = 0.05, mask = weight<bool[2,1,3,3] #2f9f61742ec1ee89>} : f32[2,1,3,3] loc("deconv0")
  %deconv0 = conv_transpose2d(%x, %supermask) {dilation = [1, 1], groups = 1, output_padding = [1, 1], padding = [1, 1], stride = [2, 2]} : f32[1,4,4] loc("deconv0")
  %readout_exp_tanh.y, %readout_exp_tanh.acc_out = readout_exp_tanh(%deconv0, %readout.acc) {decay = 0.8} : f32[1,4,4], f32[1,4,4] loc("readout")
  return %readout_exp_tanh.y, %readout_exp_tanh.acc_out
}
