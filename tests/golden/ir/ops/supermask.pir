graph @supermask(%x: f32[4]) -> (%y: f32[2]) {
  %w = weight() {value = weight<f32[2,4] = [6.0, -3.0, 2.0, 8.0, -1.0, 4.0, 5.0, -7.0]>} : f32[2,4]
  %s = weight() {value = weight<f32[2,4] = [0.9, -0.1, 0.3, -0.8, 0.2, 0.7, -0.05, 0.6]>} : f32[2,4]
  %m = supermask(%w, %s) {gain = 0.01, sparsity = 0.5} : f32[2,4] loc("fc.mask")
  %y = linear(%x, %m) : f32[2] loc("fc")
  return %y
}
