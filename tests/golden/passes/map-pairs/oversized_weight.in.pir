graph @oversized_weight(%x: f32[3]) -> (%linear: f32[2]) {
  %linear.row = reshape(%x) {shape = [1, 3]} : f32[1,3] loc("fc")
  %linear.mvm = crossbar(%linear.row) {col_map = weight<i64[0] #4b9af4b1e2313aba>, drive = "bit_serial", encoding = "unset", formed = weight<f32[3,2] #f8d1da4dfae8f4dc>, gain = 0.1, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "linear", mask = weight<bool[3,2] #b9ed7d748cd72d44>, mode = "as_formed", phase = -1, planes = 8, row_map = weight<i64[0] #4b9af4b1e2313aba>, tiles = [], us_per_unit = 1.0, weight_shape = [2, 3]} : f32[2,1] loc("fc")
  %linear = reshape(%linear.mvm) {shape = [2]} : f32[2] loc("fc")
  return %linear
}
