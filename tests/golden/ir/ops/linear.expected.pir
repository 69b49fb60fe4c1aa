graph @linear(%x: f32[3]) -> (%y: f32[2]) {
  %w = weight() {value = weight<f32[2,3] #85814a010bbacef4>} : f32[2,3]
  %y = linear(%x, %w) : f32[2] loc("fc")
  return %y
}
