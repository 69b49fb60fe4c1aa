graph @weight_from_input(%w: f32[2,3], %x: f32[3]) -> (%linear: f32[2]) {
  %fc.scores = weight() {value = weight<f32[2,3] #d0cbd46b9ef75b25>} : f32[2,3] loc("fc")
  %supermask = supermask(%w, %fc.scores) {gain = 0.1, sparsity = 0.5} : f32[2,3] loc("fc")
  %linear = linear(%x, %supermask) : f32[2] loc("fc")
  return %linear
}
