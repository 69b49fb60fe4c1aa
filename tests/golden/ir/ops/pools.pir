graph @pools(%x: f32[2,5,5]) -> (%a: f32[2,2,2], %m: f32[2,3,3]) {
  %a = avg_pool2d(%x) {kernel = [2, 2], stride = [2, 2]} : f32[2,2,2] loc("avg")
  %m = max_pool2d(%x) {kernel = [3, 3], padding = [1, 1], stride = [2, 2]} : f32[2,3,3] loc("max")
  return %a, %m
}
