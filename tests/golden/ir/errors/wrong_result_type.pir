graph @wrong_result_type(%x: f32[2,8,8]) -> (%y: f32[2,4,4]) {
  %y = avg_pool2d(%x) {kernel = [2, 2], stride = [1, 1]} : f32[2,4,4] loc("pool")
  return %y
}
