graph @supermask(%x: f32[4]) -> (%y: f32[2]) {
  %w = weight() {value = weight<f32[2,4] #5e8211ac9baef25b>} : f32[2,4]
  %s = weight() {value = weight<f32[2,4] #e6e1ad520b39ad03>} : f32[2,4]
  %m = supermask(%w, %s) {gain = 0.01, sparsity = 0.5} : f32[2,4] loc("fc.mask")
  %y = linear(%x, %m) : f32[2] loc("fc")
  return %y
}
