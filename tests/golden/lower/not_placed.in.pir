graph @small_conv_snn(%x: f32[1,4,4], %u0: f32[2,4,4], %s0: f32[2,4,4], %uo: f32[3], %sum: f32[3], %count: f32[1]) -> (%mean: f32[3], %u0.next: f32[2,4,4], %s0.next: f32[2,4,4], %uo.next: f32[3], %sum.next: f32[3], %count.next: f32[1]) {
  meta input_encoding = "event_counts"
  meta readout = "mean"
  meta timesteps = 4
  state %u0 <- %u0.next
  state %s0 <- %s0.next
  state %uo <- %uo.next
  state %sum <- %sum.next
  state %count <- %count.next
  %c0.rows = im2col(%x) {dilation = [1, 1], input_dilation = [1, 1], kernel = [3, 3], padding = [1, 1, 1, 1], stride = [1, 1]} : f32[16,9] loc("features.conv0")
  %c0.mvm = crossbar(%c0.rows) {col_map = weight<i64[2] #84ff25a85bbb70e7>, drive = "bit_serial", encoding = "differential", formed = weight<f32[9,2] #61a520aead6f02e7>, g_neg_us = weight<f64[9,2] #c055bd2699c3b245>, g_pos_us = weight<f64[9,2] #e6c646997f3a034b>, gain = 1.0, groups = 1, input_quantum = 1.0, input_scale = 1.0, kind = "conv2d", mask = weight<bool[9,2] #b112e0e5960ff627>, mode = "programmed", phase = -1, planes = 8, row_map = weight<i64[9] #62c6708afa842e0b>, tiles = [tile<rows 0:9, outputs 0:2>], us_per_unit = 128.0, weight_shape = [2, 1, 3, 3]} : f32[2,16] loc("features.conv0")
  %c0 = reshape(%c0.mvm) {shape = [2, 4, 4]} : f32[2,4,4] loc("features.conv0")
  %s0.next, %u0.next = lif(%c0, %u0, %s0) {keep = 0.2, reset = "zero", reset_timing = "before_leak", slope = 0.1, strict = true, threshold = 0.2} : f32[2,4,4], f32[2,4,4] loc("features.lif0")
  %p0.sum = sum_pool2d(%s0.next) {kernel = [2, 2], padding = [0, 0], stride = [2, 2]} : f32[2,2,2] loc("features.pool0")
  %y.row = reshape(%p0.sum) {shape = [1, 8]} : f32[1,8] loc("classifier.linear0")
  %y.mvm = crossbar(%y.row) {col_map = weight<i64[3] #7b36b57ac44bbed5>, drive = "bit_serial", encoding = "differential", formed = weight<f32[8,3] #db1e863ea8060091>, g_neg_us = weight<f64[8,3] #0df8f1c5942f341a>, g_pos_us = weight<f64[8,3] #f8342e4a4366ac3a>, gain = 1.0, groups = 1, input_quantum = 1.0, input_scale = 0.25, kind = "linear", mask = weight<bool[8,3] #309c51f41c80d61f>, mode = "programmed", phase = -1, planes = 3, row_map = weight<i64[8] #af9b4706917b2f41>, tiles = [tile<rows 0:8, outputs 0:3>], us_per_unit = 128.0, weight_shape = [3, 8]} : f32[3,1] loc("classifier.linear0")
  %y = reshape(%y.mvm) {shape = [3]} : f32[3] loc("classifier.linear0")
  %uo.next = integrator(%y, %uo) {keep = 1.0, slope = 0.1} : f32[3] loc("classifier.out")
  %mean, %sum.next, %count.next = readout_mean(%uo.next, %sum, %count) : f32[3], f32[3], f32[1] loc("readout")
  return %mean, %u0.next, %s0.next, %uo.next, %sum.next, %count.next
}
