graph @conv_of_conv(%x: f32[1,4,4]) -> (%conv1: f32[1,2,2]) {
  %conv0.rows = im2col(%x) {dilation = [1, 1], input_dilation = [1, 1], kernel = [3, 3], padding = [0, 0, 0, 0], stride = [1, 1]} : f32[4,9] loc("conv0")
  %conv0.mvm = crossbar(%conv0.rows) {col_map = weight<i64[0] #4b9af4b1e2313aba>, drive = "unset", encoding = "unset", formed = weight<f32[9,2] #6c59d03d1c78cd96>, gain = 1.0, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "conv2d", mask = weight<bool[9,2] #b5a670ffa2688180>, mode = "programmed", phase = -1, planes = 0, row_map = weight<i64[0] #4b9af4b1e2313aba>, tiles = [], us_per_unit = 1.0, weight_shape = [2, 1, 3, 3]} : f32[2,4] loc("conv0")
  %conv0 = reshape(%conv0.mvm) {shape = [2, 2, 2]} : f32[2,2,2] loc("conv0")
  %add.scale = weight() {value = weight<f64[2] #cd6283f6ffa67b0e>} : f64[2] loc("conv0")
  %add.shift = weight() {value = weight<f64[2] #91f6fb29256a72b0>} : f64[2] loc("conv0")
  %add = affine(%conv0, %add.scale, %add.shift) : f32[2,2,2] loc("conv0")
  %conv1.rows = im2col(%add) {dilation = [1, 1], input_dilation = [1, 1], kernel = [1, 1], padding = [0, 0, 0, 0], stride = [1, 1]} : f32[4,2] loc("conv1")
  %conv1.mvm = crossbar(%conv1.rows) {col_map = weight<i64[0] #4b9af4b1e2313aba>, drive = "unset", encoding = "unset", formed = weight<f32[2,1] #ab1a0851d8ede4d4>, gain = 1.0, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "conv2d", mask = weight<bool[2,1] #bfb45d7a38ade74e>, mode = "programmed", phase = -1, planes = 0, row_map = weight<i64[0] #4b9af4b1e2313aba>, tiles = [], us_per_unit = 1.0, weight_shape = [1, 2, 1, 1]} : f32[1,4] loc("conv1")
  %conv1 = reshape(%conv1.mvm) {shape = [1, 2, 2]} : f32[1,2,2] loc("conv1")
  return %conv1
}
