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
  %fc0.weight = weight() {value = weight<f32[4,6] #ec53b78880c2f7ad>} : f32[4,6] loc("fc0")
  %linear = linear(%x, %fc0.weight) : f32[4] loc("fc0")
  %fc0.bias = weight() {value = weight<f32[4] #10b880faf2c758d9>} : f32[4] loc("fc0")
  %bn0.weight = weight() {value = weight<f32[4] #0005922fadb403e9>} : f32[4] loc("bn0")
  %bn0.bias = weight() {value = weight<f32[4] #1ec0a9389714e616>} : f32[4] loc("bn0")
  %bn0.running_mean = weight() {value = weight<f32[4] #dc5dd7cd97c26c6b>} : f32[4] loc("bn0")
  %bn0.running_var = weight() {value = weight<f32[4] #92ee481c4bb8c0c8>} : f32[4] loc("bn0")
  %batch_norm.scale = weight() {value = weight<f64[4] #d1aa7ce1b822d7a2>} : f64[4] loc("bn0")
  %batch_norm.shift = weight() {value = weight<f64[4] #27903a14c116d3fb>} : f64[4] loc("bn0")
  %batch_norm = affine(%linear, %batch_norm.scale, %batch_norm.shift) : f32[4] loc("bn0")
  %lif0.spike_out, %lif0.membrane_out = lif(%batch_norm, %lif0.membrane, %lif0.spike) {keep = 0.9, reset = "subtract", reset_timing = "after_leak", slope = 1.0, strict = true, threshold = 0.5} : f32[4], f32[4] loc("lif0")
  %fc1.weight = weight() {value = weight<f32[3,4] #8b923631d8882c08>} : f32[3,4] loc("fc1")
  %linear_1 = linear(%lif0.spike_out, %fc1.weight) : f32[3] loc("fc1")
  %lif1.spike_out, %lif1.membrane_out = lif(%linear_1, %lif1.membrane, %lif1.spike) {keep = 0.9, reset = "zero", reset_timing = "before_leak", slope = 1.0, strict = true, threshold = 0.5} : f32[3], f32[3] loc("lif1")
  %readout_mean.mean, %readout_mean.sum_out, %readout_mean.count_out = readout_mean(%lif1.spike_out, %readout.sum, %readout.count) : f32[3], f32[3], f32[1] loc("readout")
  return %readout_mean.mean, %lif0.membrane_out, %lif0.spike_out, %lif1.membrane_out, %lif1.spike_out, %readout_mean.sum_out, %readout_mean.count_out
}
